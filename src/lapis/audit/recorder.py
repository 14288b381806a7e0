"""AuditRecorder: who did what, when, from where, and how it ended.

Two feeds, one bounded queue into the activity_log table:

    around(request, handler)  wraps ArmApp's dispatch (lapis.management.routes): every
                              management write (PUT, PATCH, DELETE, POST) and every
                              denied ARM request (401, 403, any method) becomes an event
    observe(record)           a data-plane observer: every denied data-plane request
                              (401, 403) becomes an event; 429s are capacity answers, not
                              access decisions, and stay in the RequestResponse logs

Recording never delays an answer: events go on a bounded queue (SinkQueue)
whose writer inserts them in batches, retrying while the database is away;
when the queue is full the event is dropped, counted and logged. Events about
an account also go to the Audit category of that account's diagnostic
settings (lapis.diagnostics.dispatcher.Diagnostics.management).
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any, Awaitable, Callable

from aiohttp import web

from lapis.audit import events
from lapis.audit.store import ActivityLogStore
from lapis.auth.actions import arm_permission
from lapis.dataplane.network import client_address, parse_networks
from lapis.diagnostics.dispatcher import DATA_ACTIONS
from lapis.diagnostics.queue import SinkQueue
from lapis.errors import ApiError
from lapis.observe.record import RequestRecord
from lapis.requestkeys import state_of

log = logging.getLogger("lapis.audit")
ARM_CALLER = web.RequestKey("arm_caller", object)  # lapis.management.routes.Caller, once authenticated
WRITES = ("PUT", "PATCH", "DELETE", "POST")
DENIALS = (401, 403)
_ACCOUNT = re.compile(r"^(/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.CognitiveServices"
                      r"/accounts/[^/]+)", re.IGNORECASE)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ActivityLogSink:
    """The queue's sink: the activity_log table; fills in each subscription's tenant."""

    name = "activity-log"

    def __init__(self, services: Any):
        self.services = services
        self.store = ActivityLogStore(services.store.db)
        self._tenants: dict[str, str] = {}

    async def deliver(self, records: list[dict[str, Any]]) -> None:
        for event in records:
            sub = event["subscriptionId"]
            if sub and not event["tenantId"]:
                if sub.lower() not in self._tenants:
                    found = await self.services.store.subscription(sub)
                    self._tenants[sub.lower()] = found.tenant_id if found else ""
                event["tenantId"] = self._tenants[sub.lower()]
        await self.store.add(records)

    async def close(self) -> None:
        return None


class AuditRecorder:
    name = "activity-log"

    def __init__(self, services: Any, capacity: int = 10_000, max_backoff: float = 5.0):
        self.services = services
        self.sink = ActivityLogSink(services)
        self.queue = SinkQueue(self.sink, capacity, max_backoff=max_backoff)
        self.trusted = parse_networks(services.settings.trusted_proxies)

    @property
    def store(self) -> ActivityLogStore:
        return self.sink.store

    def start(self) -> None:
        self.queue.start()
        self.services.observers.add(self.observe)

    async def stop(self) -> None:
        await self.queue.close(grace=5.0)

    def counters(self) -> dict[str, int]:
        return self.queue.counters()

    async def flushed(self, timeout: float) -> bool:
        """Let the writer catch up (at most `timeout` seconds): reads that follow writes see them."""
        return await self.queue.flushed(timeout)

    # -- management plane ----------------------------------------------------------

    async def around(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Run ArmApp's dispatch; record the outcome when it is a write or a denial."""
        status, error = 500, None
        writing = request.method.upper() in WRITES
        account = self._account(request.path) if writing else None  # before: a DELETE removes it
        try:
            response = await handler(request)
            status = response.status
            return response
        except ApiError as failure:
            status, error = failure.status, failure
            raise
        except web.HTTPException as failure:  # e.g. a body over the size limit: the middleware answers it
            status = failure.status
            raise
        finally:
            if writing or status in DENIALS:
                try:
                    self.management(request, status, error, account or self._account(request.path))
                except Exception:  # noqa: BLE001 - auditing never fails the request it audits
                    log.exception("could not record an audit event for %s %s", request.method, request.path)

    def _account(self, path: str) -> Any:
        match = _ACCOUNT.match(path)
        return self.services.directory.by_arm_id(match.group(1)) if match else None

    def management(self, request: web.Request, status: int, error: ApiError | None, account: Any) -> None:
        method, path = request.method.upper(), request.path
        permission = arm_permission(method, path)
        action = permission.action if permission else f"{method} {path}"
        scope = permission.scope if permission else path.rstrip("/")
        caller = request.get(ARM_CALLER)
        request_id = state_of(request).request_id
        event = events.event(
            action=action, localized_action=None, scope=scope, resource_id=scope, category="Administrative",
            caller=getattr(caller, "name", ""), oid=getattr(caller, "oid", ""), status=status, method=method,
            client_ip=client_address(request.remote, request.headers.get("X-Forwarded-For"), self.trusted) or "",
            client_request_id=request.headers.get("x-ms-client-request-id", ""),
            correlation_id=request.headers.get("x-ms-correlation-request-id", request_id), request_id=request_id,
            when=time.time(), error_body=error.body if error is not None else None)
        self.queue.offer(event)
        diagnostics = getattr(self.services, "diagnostics", None)
        if account is not None and diagnostics is not None:
            diagnostics.management(event, status, account.id, account.arm_id, account.location)

    # -- data plane ----------------------------------------------------------------

    def observe(self, record: RequestRecord) -> None:
        if record.status not in DENIALS:
            return
        method = "GET" if record.operation == "models" else "POST"
        self.queue.offer(events.denial_event(record, DATA_ACTIONS.get(record.operation, ""), method, record.time))
