"""Metering: the one observer behind /metrics, the metrics rollups and usage.

app.py wires it (only when LAPIS_METRICS is on):

    start:    app[METERING] = await Metering.start(services, settings)   usage journals replayed, observer
                                                                          added, writers running
              app[BEFORE_DONE] = app[METERING].stream_done              a stream's usage is journalled before
                                                                          its [DONE] (lapis.dataplane.streaming)
    stop:     await app[METERING].close()                                 rollups flushed, usage written
    routes:   GET /metrics -> metrics_endpoint

`observe()` is the observer (lapis.observe.record). Usage is journalled at
once, per request, here in the serving process (it must be in the journal
before the answer's last byte, lapis.usage.meter). The counters are not:
the record goes on to lapis.metrics.counting, in the observer process
through the relay (`relay`, lapis.observe.relay, the default), or here
(LAPIS_OBSERVER=inline). A scrape of /metrics first has the relay send what
waits and fetch the observer's numbers, so it shows every request answered
before it. Requests no account was found for belong to no resource and are
skipped.

Other parts of Lapis add their own numbers to /metrics with
`app[METERING].hub.register(collect)` (lapis.metrics.exposition).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Iterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from lapis.errors import catalogue as errors
from lapis.metrics import health
from lapis.metrics.counting import Counting
from lapis.metrics.exposition import MetricsHub
from lapis.observe.capture import record_for
from lapis.observe.record import RequestRecord
from lapis.requestkeys import state_of
from lapis.settings import Settings
from lapis.store.metering import MeteringStore
from lapis.usage.journal import Journal
from lapis.usage.meter import UsageMeter
from lapis.usage.pricing import PriceBook

log = logging.getLogger("lapis.metrics")

RETENTION_EVERY_S = 3600.0


class Metering:
    def __init__(self, services: Any, settings: Settings, relay: Any = None):
        self.services = services
        self.settings = settings
        self.store = MeteringStore(services.store.db)
        self.relay = relay  # lapis.observe.relay.Relay: usage and counting run in the observer process
        self.counting: Counting | None = None
        self.usage: UsageMeter | None = None
        self.hub = MetricsHub()
        if relay is None:
            self.counting = Counting(self.store)
            self.usage = UsageMeter(self.store, PriceBook(services.catalogue), Journal(settings.home / "usage"))
            self.hub.register(self.counting.collect)
            self.hub.register(lambda: usage_metrics(self.usage))  # type: ignore[arg-type]
        else:
            self.hub.register(relay.collect)
        self.hub.register(lambda: health.limiter_metrics(services))
        self.hub.register(lambda: health.backend_metrics(services))
        self.hub.register(lambda: health.balancer_metrics(services))
        self.hub.register(lambda: health.sink_metrics(services))
        self._tasks: list[asyncio.Task[None]] = []
        self._usage_task: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, services: Any, settings: Settings, relay: Any = None) -> "Metering":
        metering = cls(services, settings, relay)
        loop = asyncio.get_running_loop()
        if metering.usage is not None:
            await metering.usage.open()  # before serving: what a crashed (or stopped) process journalled
            metering._usage_task = loop.create_task(metering.usage.run())
        if metering.counting is not None:
            metering.counting.start(settings.metrics_flush_s)
        services.observers.add(metering.observe if relay is None else relay.observe)
        metering._tasks = [loop.create_task(metering._retention())]
        return metering

    def observe(self, r: RequestRecord) -> None:
        """The inline mode's observer (the relay's is lapis.observe.relay.Relay.observe)."""
        if not r.account_id:
            return
        if r.prompt_tokens or r.completion_tokens:
            self.usage.observe(r)  # type: ignore[union-attr]
        self.counting.observe(r)  # type: ignore[union-attr]

    async def render(self) -> bytes:
        """The /metrics page: this process's numbers, then the observer's (fetched now)."""
        if self.relay is None:
            return self.hub.render()
        await self.relay.refresh()
        return self.hub.render() + self.relay.state.get("text", b"")

    def stream_done(self, request: web.Request, used: tuple[int, int]) -> None:
        """streaming's BEFORE_DONE hook: the stream's usage row, journalled before the
        client can see [DONE] (the record the middleware emits afterwards is skipped)."""
        try:
            state_of(request).usage = (*used, 0)
            record = record_for(request, 200, "", True, asyncio.get_running_loop().time())
            if self.usage is not None:
                self.usage.observe(record, early=True)
            else:
                self.relay.early(record)
        except Exception:  # noqa: BLE001 - observing must never fail a request; the final record follows
            log.exception("metering a stream before [DONE] failed")

    async def close(self) -> None:
        """Stop the timers, then write what memory still holds (before the store closes)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.counting is not None:
            await self.counting.close()  # rollups flushed
        if self.usage is not None:
            await self.usage.close(self._usage_task)

    async def _retention(self) -> None:
        """Remove rollups and usage older than their retention, at start and hourly."""
        while True:
            now = time.time()
            try:
                await self.store.prune(int(now // 60) - self.settings.metrics_retention_days * 1440,
                                       int((now - self.settings.usage_retention_days * 86400) * 1000))
            except Exception:  # noqa: BLE001 - try again next time
                log.exception("removing old metrics and usage failed")
            await asyncio.sleep(RETENTION_EVERY_S)


def usage_metrics(u: UsageMeter) -> Iterator[Metric]:
    """Usage metering's own numbers (a MetricsHub collect function; the observer process's too)."""
    yield GaugeMetricFamily("lapis_usage_queue_depth", "Metered requests not yet written", value=u.pending)
    yield CounterMetricFamily("lapis_usage_batches", "Usage batches committed", value=u.batches)
    yield CounterMetricFamily("lapis_usage_records_written", "Metered requests written", value=u.written)
    yield CounterMetricFamily("lapis_usage_duplicates", "Metered requests of a failed batch found committed "
                              "after all (not written again)", value=u.duplicates)
    yield CounterMetricFamily("lapis_usage_write_failures", "Usage batches the store refused (retried)",
                              value=u.failures)
    yield CounterMetricFamily("lapis_usage_dropped", "Metered requests lost: neither journalled nor queued",
                              value=u.dropped)
    yield CounterMetricFamily("lapis_usage_deferred", "Metered requests left to the journal (queue full): "
                              "replayed at the next start", value=u.deferred)
    journal = u.journal
    if journal is not None:
        yield CounterMetricFamily("lapis_usage_journal_writes", "Usage journal lines written",
                                  value=journal.written)
        yield CounterMetricFamily("lapis_usage_journal_failures", "Usage journal lines that could not be written",
                                  value=journal.failures)
        yield CounterMetricFamily("lapis_usage_journal_segments_deleted", "Usage journal segments deleted once "
                                  "committed", value=journal.deleted)
    yield CounterMetricFamily("lapis_usage_replayed", "Usage journal lines replayed at start-up", value=u.replayed)
    yield CounterMetricFamily("lapis_usage_recovered", "Replayed lines above their segment's mark (not stored yet)",
                              value=u.recovered)
    yield CounterMetricFamily("lapis_usage_replay_torn", "Torn usage journal lines skipped at replay",
                              value=u.torn)


METERING = web.AppKey("metering", Metering)


async def metrics_endpoint(request: web.Request) -> web.Response:
    """GET /metrics: Prometheus text exposition (lapis.metrics.exposition)."""
    metering = request.app.get(METERING)
    if metering is None:
        raise errors.resource_not_found()
    return web.Response(body=await metering.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})
