"""Diagnostics: the settings in force, their sinks, and the observer that feeds them.

`observe(record)` is a data-plane observer (lapis.observe.record): it looks up
the account's routes (one per diagnostic setting) and offers the request, once
per category it falls in and unshaped (lapis.diagnostics.pending.Pending), to
each sink's bounded queue. It never waits: a full queue is a counted drop
(lapis.diagnostics.queue). Each sink's queue task shapes what it takes, in
the form its sink writes, once for every sink it went to: the request path
only decides where a record goes.

Which category a data-plane request falls in:
    RequestResponse  every request
    Audit            a denial: 401 or 403 (429 is a capacity answer, not an access decision)
    Trace            a failure of the service: 5xx

Residency: a route carries the region of its setting's account, and a record
reaches a route only when the record's account is the setting's account and
the regions agree (lapis.diagnostics.settings explains the rest).

Prompt and response text: a route whose setting asks (lapisIncludeContent)
gets the RequestResponse record with the request's text in its properties
(lapis.diagnostics.content); the others never see it. `wants_content(account
id)` tells the data plane whether to keep text at all: one set lookup,
rebuilt with the routes.

Settings change through the ARM routes (which call `reload()`), and on other
replicas through PostgreSQL NOTIFY on `lapis_diagnostics`. A reload keeps the
queue of every sink whose setting and destination did not change.

With an observer process (`relay`, lapis.observe.relay) the sinks live there,
in a Diagnostics of their own; this one then keeps no queues. It still knows
which accounts have settings (`wants_content`, and which records and
management writes to relay), relays management writes, makes the observer
reload with it, and reports the observer's sink counters.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from lapis.diagnostics import content, pending
from lapis.diagnostics.eventhubs import EventHubSink
from lapis.diagnostics.files import ArchiveSink, TableFiles, WorkspaceSink
from lapis.diagnostics.metrics import MinuteMetrics
from lapis.diagnostics.otlp import OtlpSink
from lapis.diagnostics.pending import DATA_ACTIONS, Pending  # noqa: F401 - DATA_ACTIONS: the audit recorder's
from lapis.diagnostics.queue import SinkQueue
from lapis.diagnostics.settings import DiagnosticSetting, Destination
from lapis.diagnostics.shaping import management_audit_log, now
from lapis.diagnostics.stencils import Stencils
from lapis.diagnostics.store import CHANGED_CHANNEL, SettingsStore
from lapis.diagnostics.webhook import WebhookSink
from lapis.observe.record import RequestRecord

log = logging.getLogger("lapis.diagnostics")
DENIALS = (401, 403)
METRIC_FLUSH_SECONDS = 10.0
LINGER = 0.05  # seconds a sink waits for a whole batch: fewer, larger writes (lapis.diagnostics.queue)
PREPARE = {"workspace": pending.for_workspace, "eventhub": pending.for_event_hub}  # else pending.records


@dataclass(slots=True)
class Route:
    """One diagnostic setting in force: its region, what it wants, and its sinks' queues."""

    setting: str
    location: str
    categories: frozenset[str]
    metrics: bool
    queues: list[SinkQueue]
    content: bool = False  # its RequestResponse records carry the request's text


def categories_of(record: RequestRecord) -> tuple[str, ...]:
    if record.status in DENIALS:
        return ("RequestResponse", "Audit")
    if record.status >= 500:
        return ("RequestResponse", "Trace")
    return ("RequestResponse",)


class Diagnostics:
    def __init__(self, services: Any, capacity: int = 10_000, max_backoff: float = 5.0,
                 file_bytes: int = 64 * 1024 * 1024, file_keep: int = 4, eventhubs_url: str = "",
                 relay: Any = None):
        self.services = services
        self.relay = relay  # lapis.observe.relay.Relay: the sinks run in the observer process
        self.store = SettingsStore(services.store.db)
        self.capacity = capacity
        self.max_backoff = max_backoff
        self.file_bytes = file_bytes
        self.file_keep = file_keep
        self.eventhubs_url = eventhubs_url or "redis://127.0.0.1:6379/0"
        self.home: Path = services.settings.home
        self.routes: dict[str, list[Route]] = {}  # account id -> its settings in force
        self.content_accounts: frozenset[str] = frozenset()  # accounts a setting keeps text for
        self.routed: frozenset[str] = frozenset()  # accounts with a setting (relay mode)
        self.keyring = getattr(services.store, "keyring", None)  # seals and opens that text
        self.opener = content.Opener(self.keyring)
        self.queues: dict[str, SinkQueue] = {}  # sink identity -> its queue
        self.metrics = MinuteMetrics()
        self.stencils = Stencils()  # the JSON of requests alike, made once (lapis.diagnostics.stencils)
        self._tables: dict[Path, TableFiles] = {}
        self._redis: Any = None
        self._http: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task] = set()
        self._reload_lock = asyncio.Lock()

    # -- life cycle --------------------------------------------------------------

    async def start(self) -> None:
        self.opener.loop = asyncio.get_running_loop()
        await self.reload()
        await self.store.db.listen(CHANGED_CHANNEL, lambda _account: self._spawn(self.reload()))
        if self.relay is None:
            self._spawn(self._flush_metrics_forever())
            self.services.observers.add(self.observe)
        elif not self.services.settings.metrics:  # else metering relays every record (lapis.metrics.metering)
            self.services.observers.add(self.forward)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        self.flush_metrics(None)
        await asyncio.gather(*(q.close() for q in self.queues.values()), return_exceptions=True)
        self.queues.clear()
        self.routes = {}
        if self._http is not None:
            await self._http.close()
        if self._redis is not None:
            await self._redis.aclose()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def reload(self) -> None:
        """Rebuild the routes from the store, keeping the queues of unchanged sinks."""
        async with self._reload_lock:
            settings = await self.store.all()
            self.content_accounts = frozenset(s.account_id for s in settings if s.includes_content())
            self.routed = frozenset(s.account_id for s in settings)
            if self.relay is not None:
                await self.relay.reload()
                return
            routes: dict[str, list[Route]] = {}
            wanted: dict[str, SinkQueue] = {}
            for setting in settings:
                queues = []
                for destination in setting.destinations():
                    identity = f"{setting.account_id}/{setting.name.lower()}/{destination.key}"
                    queue = self.queues.get(identity) or wanted.get(identity) or self._queue(setting, destination)
                    wanted[identity] = queue
                    queues.append(queue)
                routes.setdefault(setting.account_id, []).append(
                    Route(setting.name, setting.location, setting.log_categories(), setting.metrics_enabled(), queues,
                          setting.includes_content()))
            retired = [q for identity, q in self.queues.items() if identity not in wanted]
            self.queues, self.routes = wanted, routes
        for queue in retired:
            self._spawn(queue.close())

    # -- sinks -------------------------------------------------------------------

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession()
        return self._http

    def _broker(self) -> Any:
        if self._redis is None:
            import redis.asyncio as aioredis

            self._redis = aioredis.from_url(self.eventhubs_url, socket_timeout=5, socket_connect_timeout=3)
        return self._redis

    def workspace_files(self, subscription: str, group: str, workspace: str) -> TableFiles:
        folder = self.home / "workspaces" / subscription.lower() / group.lower() / workspace.lower()
        files = self._tables.get(folder)
        if files is None:
            files = self._tables[folder] = TableFiles(folder, self.file_bytes, self.file_keep, self.opener)
        return files

    def _queue(self, setting: DiagnosticSetting, destination: Destination) -> SinkQueue:
        parts = setting.resource_id.split("/")
        name = f"{parts[4] if len(parts) > 4 else ''}/{parts[-1]}/{setting.name}/{destination.kind}"
        sink: Any
        if destination.kind == "workspace":
            sink = WorkspaceSink(name, self.workspace_files(*destination.path), self.keyring)
        elif destination.kind == "storage":
            sink = ArchiveSink(name, self.home / "storage" / destination.path[0], self.keyring)
        elif destination.kind == "eventhub":
            sink = EventHubSink(name, self._broker(), destination.path[0], destination.path[1])
        elif destination.kind == "webhook":
            sink = WebhookSink(name, destination.url, self._session)
        else:
            sink = OtlpSink(name, destination.url, self._session)
        queue = SinkQueue(sink, self.capacity, max_backoff=self.max_backoff,
                          prepare=PREPARE.get(destination.kind, pending.records), linger=LINGER)
        queue.start()
        return queue

    def counters(self) -> dict[str, dict[str, int]]:
        """Sink name -> queued, delivered, dropped, failed (for the metrics exporter)."""
        out = {q.name: q.counters() for q in self.queues.values()}
        if self.relay is not None:
            out.update(self.relay.state.get("sinks", {}))
        audit = getattr(self.services, "audit", None)
        if audit is not None:
            out[audit.name] = audit.counters()
        return out

    # -- feeding -----------------------------------------------------------------

    def wants_content(self, account_id: str) -> bool:
        """Whether a setting of the account keeps prompt and response text (the data plane asks)."""
        return account_id in self.content_accounts

    def observe(self, record: RequestRecord) -> None:
        """A data-plane observer: queue, never wait (the sinks' tasks shape: lapis.diagnostics.pending)."""
        routes = self.routes.get(record.account_id)
        if not routes:
            return
        made: dict[str, Pending] = {}
        wants_metrics = False
        for route in routes:
            if route.location != record.location:  # residency: never another region's sink
                continue
            wants_metrics = wants_metrics or route.metrics
            for category in categories_of(record):
                if category not in route.categories:
                    continue
                with_text = route.content and category == "RequestResponse" and record.content is not None
                name = category + "+content" if with_text else category
                item = made.get(name)
                if item is None:
                    item = made[name] = Pending(record, category, with_text, self.stencils)
                for queue in route.queues:
                    queue.offer(item)
        if wants_metrics:
            self.metrics.add(record)

    def forward(self, record: RequestRecord) -> None:
        """Relay mode, metrics off: relay the records of accounts with a setting."""
        if record.account_id in self.routed:
            self.relay.observe(record)

    def management(self, event: dict[str, Any], status: int, account_id: str, account_arm_id: str,
                   location: str) -> None:
        """A management write on an account, for its settings' Audit category."""
        if self.relay is not None:
            if account_id in self.routed:
                self.relay.management(event, status, account_id, account_arm_id, location)
            return
        item = None
        for route in self.routes.get(account_id, ()):
            if route.location != location or "Audit" not in route.categories:
                continue
            item = item or management_audit_log(event, status, account_arm_id, location)
            for queue in route.queues:
                queue.offer(item)

    def flush_metrics(self, before: float | None) -> int:
        """Queue the finished minutes' metric records (all of them when `before` is None); how many."""
        count = 0
        for bucket, records in self.metrics.take(before):
            for route in self.routes.get(bucket.account_id, ()):
                if route.metrics and route.location == bucket.location:
                    for record in records:
                        for queue in route.queues:
                            queue.offer(record)
                            count += 1
        return count

    async def _flush_metrics_forever(self) -> None:
        while True:
            await asyncio.sleep(METRIC_FLUSH_SECONDS)
            self.flush_metrics(now())
