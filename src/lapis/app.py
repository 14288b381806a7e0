"""create_app(): builds the server and shows its middleware order, top to bottom.

    1. azure_envelope  gives every request an id and stamps it on the answer
                       (apim-request-id / x-request-id, lapis.tracing; a stream
                       stamps its own before sending);
                       ApiError -> its exact body; anything else -> Azure's 500
                       with the request id (never a stack trace on the wire)
    2. routes          the data plane, /healthz, /lapis/admin/*, identity, then
                       ARM (case-insensitive catch-all under /subscriptions)
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
from typing import Awaitable, Callable

from aiohttp import web

from lapis.observe.capture import record_for
from lapis.tracing import request_id, stamp
from lapis.requestkeys import STATE, RequestState, state_of
from lapis.auth.rbac import Authorizer
from lapis.auth.store import AssignmentStore
from lapis.backends.base import UpstreamError
from lapis.backends.simulator import SimulatorBackend
from lapis.budgets import wiring as budgets_wiring
from lapis.catalog import load_catalogue
from lapis.dataplane.admission import Gate
from lapis.dataplane.directory import Directory
from lapis.dataplane.routes import DataPlane, add_routes
from lapis.dataplane.streaming import BEFORE_DONE
from lapis.diagnostics import wiring as diagnostics_wiring
from lapis.errors import ApiError
from lapis.errors import catalogue as errors
from lapis.identity import routes as identity_routes
from lapis.keyvault import routes as keyvault_routes
from lapis.management import admin, metadata, serving_routes, tenancy
from lapis.management.routes import ArmApp, arm_error_response
from lapis.management import budgets as budget_routes, costs, insights
from lapis.network.private_endpoints import PrivateEndpoints
from lapis.network.store import EndpointStore
from lapis.metrics.metering import METERING, Metering, metrics_endpoint
from lapis.observe.relay import Relay
from lapis.services import Services
from lapis.serving.plans import open_serving
from lapis.ratelimit import UnlimitedLimiter, open_limiter
from lapis.settings import Settings
from lapis.store.sql import SqlStore

log = logging.getLogger("lapis")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SERVICES = web.AppKey("services", Services)
BACKGROUND = web.AppKey("background", list)
RELAY = web.AppKey("relay", Relay)
RESYNC_SECONDS = 30.0  # safety net behind NOTIFY: a replica whose listener dropped catches up


async def _resync(services: Services) -> None:
    """Rebuild the directory from PostgreSQL now and then (several replicas)."""
    while True:
        await asyncio.sleep(RESYNC_SECONDS)
        try:
            await services.load_directory()
        except Exception:  # noqa: BLE001 - keep serving from the last good view
            log.exception("directory resync failed")


def _is_arm(request: web.Request) -> bool:
    path = request.path.lower()
    return path.startswith("/subscriptions") or path.startswith("/providers") or path.startswith("/lapis/admin")


def _render(request: web.Request, error: ApiError) -> web.Response:
    state = state_of(request)
    state.error_code = error.code
    state.stamped = False  # headers a handler made before failing are not this answer's
    if _is_arm(request):
        return arm_error_response(error)
    response = web.Response(body=error.body, status=error.status, content_type="application/json")
    response.headers.update(error.headers)
    if state.region:
        response.headers["x-ms-region"] = state.region
    return response


def azure_envelope(max_body_bytes: int):  # noqa: ANN201 - an aiohttp middleware
    """The one middleware: a request id for every request, and Azure's error
    bodies for whatever the handlers raise (one layer, because each layer
    costs on every request of the hot path)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        state = request[STATE] = RequestState(request_id())
        observers = observed(request)
        loop = asyncio.get_running_loop()
        if observers:
            state.started = loop.time()
        response = await _answer(request, handler, max_body_bytes)
        if not response.prepared:
            stamp(request, response)
        if observers:
            streaming = not isinstance(response, web.Response)
            observers.emit(record_for(request, response.status, state.error_code, streaming, loop.time()))
        return response

    def observed(request: web.Request):  # noqa: ANN202
        """The observers, for a data-plane request when anyone listens; else None."""
        if "/openai/" not in request.path:
            return None
        services = request.app.get(SERVICES)
        return services.observers if services is not None and services.observers.any else None

    return middleware


async def _answer(request: web.Request, handler: Handler, max_body_bytes: int) -> web.StreamResponse:
    """Run the handler; whatever it raises becomes Azure's error response."""
    try:
        return await handler(request)
    except ApiError as error:
        return _render(request, error)
    except UpstreamError as failure:  # the balancer had no member left to try
        request_id = state_of(request).request_id
        log.warning("engine failed (request %s): %r", request_id, failure)
        return _render(request, errors.to_api_error(failure, request_id))
    except web.HTTPRequestEntityTooLarge:
        return _render(request, errors.request_too_large(max_body_bytes))
    except web.HTTPException as exc:
        if exc.status in (404, 405):
            if _is_arm(request):
                return _render(request, errors.arm_no_route(request.method, request.path))
            return _render(request, errors.resource_not_found())
        stamp(request, exc)  # aiohttp answers it, with the request id too
        raise
    except Exception:  # noqa: BLE001 - the one place a bug becomes Azure's 500
        request_id = state_of(request).request_id
        log.exception("unhandled error (request %s)", request_id)
        return _render(request, errors.internal_error(request_id))


async def _fallback(request: web.Request, arm: ArmApp) -> web.StreamResponse:
    """Whatever no fixed route took: ARM paths (matched case-insensitively), or a 404."""
    if _is_arm(request):
        return await arm.handle(request)
    raise errors.resource_not_found()


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def write_server_file(settings: Settings, admin_token: str, ca: object = None) -> None:
    settings.home.mkdir(parents=True, exist_ok=True)
    path = settings.server_file
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"url": settings.base_url, "admin_token": admin_token, "pid": os.getpid(),
                   "ca": str(ca) if ca else None}, handle)
    os.replace(tmp, path)


async def build_services(settings: Settings) -> Services:
    store = await SqlStore.open(settings.database_url, settings.kek_file)  # secrets sealed under this KEK
    admin_token = await store.setting("admin_token", "lapis-admin-" + secrets.token_urlsafe(32))
    services = Services(
        settings=settings, store=store, catalogue=load_catalogue(), directory=Directory(),
        backend=SimulatorBackend(ttft_ms=settings.sim_ttft_ms, token_ms=settings.sim_token_ms),
        admin_token=admin_token,
        gate=Gate(open_limiter(settings.redis_url or None, failure_mode=settings.ratelimit_failure)
                  if settings.ratelimit else UnlimitedLimiter()),
    )
    await tenancy.ensure_default_subscription(services)
    await services.load_directory()
    await services.follow_other_replicas()
    services.authorizer = Authorizer(AssignmentStore(store.db))
    await services.authorizer.follow(store.db)
    services.serving = await open_serving(services)
    services.private_endpoints = PrivateEndpoints(EndpointStore(store.db))  # listeners open in lapis.server
    return services


def create_app(settings: Settings, services: Services | None = None) -> web.Application:
    app = web.Application(middlewares=[azure_envelope(settings.max_body_bytes)], client_max_size=settings.max_body_bytes)

    async def start(app: web.Application) -> None:
        built = services or await build_services(settings)
        app[SERVICES] = built
        plane.services = built
        arm.services = built
        relay = Relay(settings) if settings.observer_process else None  # metrics and sinks run in another process
        if relay is not None:
            await relay.start()
            app[RELAY] = relay
        if settings.metrics:  # /metrics, rollups, usage (lapis.metrics.metering)
            app[METERING] = await Metering.start(built, settings, relay)
            app[BEFORE_DONE] = app[METERING].stream_done  # a stream's usage is journalled before its [DONE]
        await diagnostics_wiring.start(built, relay)  # the Activity Log and diagnostic settings' sinks
        await budgets_wiring.start(built, app.get(METERING))  # budget evaluator and hard caps (lapis.budgets)
        if settings.demo:
            from lapis import demo

            await demo.seed(built)
        app[BACKGROUND] = []
        if built.store.db.dialect == "postgresql":
            app[BACKGROUND].append(asyncio.get_running_loop().create_task(_resync(built)))

    async def stop(app: web.Application) -> None:
        if METERING in app:
            await app[METERING].close()  # rollups flushed and usage written before the store closes
        for task in app[BACKGROUND]:
            task.cancel()
        await diagnostics_wiring.stop(app[SERVICES])  # gives log sinks a moment to deliver
        if RELAY in app:
            await app[RELAY].close()  # the last records relayed; the observer flushes, delivers and exits
        await budgets_wiring.stop(app[SERVICES])
        await app[SERVICES].gate.close()
        await app[SERVICES].serving.close()
        await app[SERVICES].store.close()

    plane = DataPlane(services)  # type: ignore[arg-type]  # filled in at start-up
    arm = ArmApp(services)  # type: ignore[arg-type]
    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    add_routes(app, plane)  # the hot path first: the router tries resources in order
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_endpoint)
    insights.add_routes(arm.router)
    costs.add_routes(arm.router)
    budget_routes.add_routes(arm.router)  # Microsoft.Consumption/budgets
    admin.add_routes(app, lambda: app[SERVICES])
    serving_routes.add_routes(app, lambda: app[SERVICES])
    identity_routes.add_routes(app, lambda: app[SERVICES])
    metadata.add_routes(app, lambda: app[SERVICES])
    keyvault_routes.add_routes(app, lambda: app[SERVICES])  # Lapis's key vault: /vaults/{vault}/keys/...

    async def fallback(request: web.Request) -> web.StreamResponse:
        return await _fallback(request, arm)

    app.router.add_route("*", "/{tail:.*}", fallback)
    return app
