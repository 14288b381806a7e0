"""Metering: the one observer behind /metrics, the metrics rollups and usage.

app.py wires it (only when LAPIS_METRICS is on):

    start:    app[METERING] = Metering.start(services, settings)   observer added, writers running
    prepare:  hold_until_metered                                    non-streamed answers wait for their usage row
    stop:     await app[METERING].close()                           rollups flushed, usage written
    routes:   GET /metrics -> metrics_endpoint

`observe()` is the observer (lapis.observe.record): per request it builds one
label tuple and hands it to the live counters, the minute's rollup cell and,
when tokens were used, the usage meter; each of those is a few additions.
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
from lapis.observe.record import RequestRecord
from lapis.requestkeys import REQUEST_ID
from lapis.settings import Settings
from lapis.store.metering import MeteringStore
from lapis.usage.meter import UsageMeter
from lapis.usage.pricing import PriceBook

log = logging.getLogger("lapis.metrics")

RETENTION_EVERY_S = 3600.0


class Metering:
    def __init__(self, services: Any, settings: Settings):
        self.services = services
        self.settings = settings
        self.store = MeteringStore(services.store.db)
        self.live = LiveMetrics(limit_of=self._tokens_per_minute, resource_of=self._resource_id)
        self.rollups = Rollups(self.store)
        self.usage = UsageMeter(self.store, PriceBook(services.catalogue))
        self.hub = MetricsHub()
        self.hub.register(self.live.collect)
        self.hub.register(lambda: health.limiter_metrics(services))
        self.hub.register(lambda: health.backend_metrics(services))
        self.hub.register(lambda: health.balancer_metrics(services))
        self.hub.register(self._own_metrics)
        self._tasks: list[asyncio.Task[None]] = []
        self._usage_task: asyncio.Task[None] | None = None

    @classmethod
    def start(cls, services: Any, settings: Settings) -> "Metering":
        metering = cls(services, settings)
        services.observers.add(metering.observe)
        loop = asyncio.get_running_loop()
        metering._usage_task = loop.create_task(metering.usage.run())
        metering._tasks = [loop.create_task(metering.rollups.run(settings.metrics_flush_s)),
                           loop.create_task(metering._retention())]
        return metering

    def observe(self, r: RequestRecord) -> None:
        if not r.account_id:
            return
        key = (r.account_id, r.account_name, r.deployment, r.model, r.model_version, r.served_region or r.location,
               r.status, r.streaming, r.operation_name)
        prompt, generated, cached = r.prompt_tokens, r.completion_tokens, r.cached_tokens
        self.live.observe(key, prompt, generated, cached, r.ttfb_ms, r.duration_ms)
        minute = int(r.time // 60)
        self.rollups.observe(minute, key, prompt, generated, cached, r.ttfb_ms, r.duration_ms)
        if prompt or generated:
            if r.sku in PROVISIONED_SKUS:
                self.live.observe_provisioned(r.account_id, r.deployment, minute, prompt + generated)
            self.usage.observe(r)

    async def close(self) -> None:
        """Stop the timers, then write what memory still holds (before the store closes)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.rollups.flush()
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
        yield CounterMetricFamily("lapis_usage_duplicates", "Metered requests already stored (idempotent retries)",
                                  value=u.duplicates)
        yield CounterMetricFamily("lapis_usage_write_failures", "Usage batches the store refused (retried)",
                                  value=u.failures)
        yield CounterMetricFamily("lapis_usage_dropped", "Metered requests dropped: the queue was full",
                                  value=u.dropped)
        yield GaugeMetricFamily("lapis_rollup_cells", "Metric rollup cells not yet flushed", value=len(r.cells))
        yield CounterMetricFamily("lapis_rollup_flushes", "Rollup flushes committed", value=r.flushes)
        yield CounterMetricFamily("lapis_rollup_flush_failures", "Rollup flushes the store refused (retried)",
                                  value=r.failures)


METERING = web.AppKey("metering", Metering)


async def hold_until_metered(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: a non-streamed answer that used tokens goes out
    once its usage row is committed (see lapis.usage.meter)."""
    metering = request.app.get(METERING)
    if metering is None:
        return
    waiter = metering.usage.waiter(request.get(REQUEST_ID))
    if waiter is not None:
        await waiter


async def metrics_endpoint(request: web.Request) -> web.Response:
    """GET /metrics: Prometheus text exposition (lapis.metrics.exposition)."""
    metering = request.app.get(METERING)
    if metering is None:
        raise errors.resource_not_found()
    return metering.hub.response()
