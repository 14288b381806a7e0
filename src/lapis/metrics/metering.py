"""Metering: the one observer behind /metrics, the metrics rollups and usage.

app.py wires it (only when LAPIS_METRICS is on):

    start:    app[METERING] = await Metering.start(services, settings)   usage journals replayed, observer
                                                                          added, writers running
              app[BEFORE_DONE] = app[METERING].stream_done              a stream's usage is journalled before
                                                                          its [DONE] (lapis.dataplane.streaming)
    stop:     await app[METERING].close()                                 rollups flushed, usage written
    routes:   GET /metrics -> metrics_endpoint

`observe()` is the observer (lapis.observe.record). Usage is journalled at
once, per request (it must be in the journal before the answer's last byte,
lapis.usage.meter). The counters are not: the record joins a list that is
counted every DRAIN_S (and before every scrape, rollup flush and close),
one label tuple per record into the live counters and the minute's rollup
cell. Counting many records at a time, with the same few functions hot,
costs about half of counting each one between two requests (measured in the
server: observing is a per-request cost issue 6 caps at 10% of throughput).
Requests no account was found for belong to no resource and are skipped.

Other parts of Lapis add their own numbers to /metrics with
`app[METERING].hub.register(collect)` (lapis.metrics.exposition).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Iterator

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from lapis.catalog import PROVISIONED_SKUS
from lapis.errors import catalogue as errors
from lapis.metrics import health
from lapis.metrics.exposition import MetricsHub
from lapis.metrics.live import LiveMetrics
from lapis.metrics.rollup import Rollups
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
DRAIN_S = 0.05  # how long a record waits to be counted, at most (scrapes count what waits first)


class Metering:
    def __init__(self, services: Any, settings: Settings):
        self.services = services
        self.settings = settings
        self.store = MeteringStore(services.store.db)
        self.live = LiveMetrics(limit_of=self._tokens_per_minute, resource_of=self._resource_id)
        self.rollups = Rollups(self.store, before_flush=self.drain)
        self.usage = UsageMeter(self.store, PriceBook(services.catalogue), Journal(settings.home / "usage"))
        self.hub = MetricsHub()
        self.hub.register(self._collect_live)
        self.hub.register(lambda: health.limiter_metrics(services))
        self.hub.register(lambda: health.backend_metrics(services))
        self.hub.register(lambda: health.balancer_metrics(services))
        self.hub.register(lambda: health.sink_metrics(services))
        self.hub.register(self._own_metrics)
        self._tasks: list[asyncio.Task[None]] = []
        self._usage_task: asyncio.Task[None] | None = None
        self._waiting: list[RequestRecord] = []  # observed, not yet counted (drain)
        self._drain_at: asyncio.TimerHandle | None = None

    @classmethod
    async def start(cls, services: Any, settings: Settings) -> "Metering":
        metering = cls(services, settings)
        await metering.usage.open()  # before serving: what a crashed (or stopped) process journalled
        services.observers.add(metering.observe)
        loop = asyncio.get_running_loop()
        metering._usage_task = loop.create_task(metering.usage.run())
        metering._tasks = [loop.create_task(metering.rollups.run(settings.metrics_flush_s)),
                           loop.create_task(metering._retention())]
        return metering

    def observe(self, r: RequestRecord) -> None:
        if not r.account_id:
            return
        if r.prompt_tokens or r.completion_tokens:
            self.usage.observe(r)
        self._waiting.append(r)
        if self._drain_at is None:
            self._drain_at = asyncio.get_running_loop().call_later(DRAIN_S, self.drain)

    def drain(self) -> None:
        """Count the records that wait (see the module docstring)."""
        if self._drain_at is not None:
            self._drain_at.cancel()
            self._drain_at = None
        waiting, self._waiting = self._waiting, []
        live, rollups = self.live, self.rollups
        for r in waiting:
            key = (r.account_id, r.account_name, r.deployment, r.model, r.model_version,
                   r.served_region or r.location, r.status, r.streaming, r.operation_name)
            prompt, generated, cached = r.prompt_tokens, r.completion_tokens, r.cached_tokens
            live.observe(key, prompt, generated, cached, r.ttfb_ms, r.duration_ms)
            minute = int(r.time // 60)
            rollups.observe(minute, key, prompt, generated, cached, r.ttfb_ms, r.duration_ms)
            if (prompt or generated) and r.sku in PROVISIONED_SKUS:
                live.observe_provisioned(r.account_id, r.deployment, minute, prompt + generated)

    def _collect_live(self) -> Iterator[Metric]:
        self.drain()
        return self.live.collect()

    def stream_done(self, request: web.Request, used: tuple[int, int]) -> None:
        """streaming's BEFORE_DONE hook: the stream's usage row, journalled before the
        client can see [DONE] (the record the middleware emits afterwards is skipped)."""
        try:
            state_of(request).usage = (*used, 0)
            record = record_for(request, 200, "", True, asyncio.get_running_loop().time())
            self.usage.observe(record, early=True)
        except Exception:  # noqa: BLE001 - observing must never fail a request; the final record follows
            log.exception("metering a stream before [DONE] failed")

    async def close(self) -> None:
        """Stop the timers, then write what memory still holds (before the store closes)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.rollups.flush()  # counts what waits first
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

    def _resource_id(self, account_id: str) -> str:
        entry = self.services.directory.by_id.get(account_id)
        return entry.arm_id if entry is not None else account_id  # a deleted account: its internal id

    def _tokens_per_minute(self, account_id: str, deployment: str) -> int:
        entry = self.services.directory.by_id.get(account_id)
        dep = entry.deployment(deployment) if entry is not None else None
        return dep.limits.tokens if dep is not None else 0

    def _own_metrics(self) -> Iterator[Metric]:
        u, r = self.usage, self.rollups
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
            yield CounterMetricFamily("lapis_usage_journal_writes", "Usage journal lines written", value=journal.seq)
            yield CounterMetricFamily("lapis_usage_journal_failures", "Usage journal lines that could not be written",
                                      value=journal.failures)
            yield CounterMetricFamily("lapis_usage_journal_segments_deleted", "Usage journal segments deleted once "
                                      "committed", value=journal.deleted)
        yield CounterMetricFamily("lapis_usage_replayed", "Usage journal lines replayed at start-up", value=u.replayed)
        yield CounterMetricFamily("lapis_usage_recovered", "Replayed lines above their segment's mark (not stored yet)",
                                  value=u.recovered)
        yield CounterMetricFamily("lapis_usage_replay_torn", "Torn usage journal lines skipped at replay",
                                  value=u.torn)
        yield GaugeMetricFamily("lapis_rollup_cells", "Metric rollup cells not yet flushed", value=len(r.cells))
        yield CounterMetricFamily("lapis_rollup_flushes", "Rollup flushes committed", value=r.flushes)
        yield CounterMetricFamily("lapis_rollup_flush_failures", "Rollup flushes the store refused (retried)",
                                  value=r.failures)


METERING = web.AppKey("metering", Metering)


async def metrics_endpoint(request: web.Request) -> web.Response:
    """GET /metrics: Prometheus text exposition (lapis.metrics.exposition)."""
    metering = request.app.get(METERING)
    if metering is None:
        raise errors.resource_not_found()
    return metering.hub.response()
