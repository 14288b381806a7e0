"""Start and stop the audit recorder and the diagnostics dispatcher (called by create_app).

Order: the recorder first (management events can arrive as soon as the app
serves), then the dispatcher, which loads the settings and starts each sink.
Stopping gives every queue a short grace period to deliver what it holds.

With an observer process (lapis.observe.relay) the sinks run there: the
dispatcher here is given the relay, and the observer process builds its own
with `make_diagnostics`.
"""

from __future__ import annotations

from typing import Any

from lapis.audit.recorder import AuditRecorder
from lapis.diagnostics.dispatcher import Diagnostics


def make_diagnostics(services: Any, relay: Any = None) -> Diagnostics:
    settings = services.settings
    return Diagnostics(
        services, capacity=settings.diagnostics_queue, max_backoff=settings.diagnostics_max_backoff,
        file_bytes=settings.workspace_file_bytes, file_keep=settings.workspace_files,
        eventhubs_url=settings.eventhubs_url or settings.redis_url, relay=relay)


async def start(services: Any, relay: Any = None) -> None:
    settings = services.settings
    services.audit = AuditRecorder(services, capacity=settings.diagnostics_queue,
                                   max_backoff=settings.diagnostics_max_backoff)
    services.audit.start()
    services.diagnostics = make_diagnostics(services, relay)
    await services.diagnostics.start()


async def stop(services: Any) -> None:
    if getattr(services, "diagnostics", None) is not None:
        await services.diagnostics.stop()
    if getattr(services, "audit", None) is not None:
        await services.audit.stop()
