"""Counting: the live counters behind /metrics and the per-minute rollups, fed by records.

Where it runs (LAPIS_OBSERVER, lapis.observe.relay):
    process  in the observer process, fed the records the server relays (the default)
    inline   in the serving process, fed by lapis.metrics.metering.Metering

`observe()` only appends the record to a list; the list is counted every
DRAIN_S (and before every scrape, rollup flush and close), one label tuple
per record into the live counters and the minute's rollup cell. Counting
many records at a time, with the same few functions hot, costs about half
of counting each one between two requests. Requests no account was found
for belong to no resource and are skipped.

What a scrape shows about an account comes from its records, not from a
directory: the ARM id (account names repeat across resource groups) and,
for provisioned deployments, the tokens per minute that utilization is
measured against (the latest record's). So Counting needs nothing but the
records and the store its rollups go to.
"""

from __future__ import annotations

import asyncio
from typing import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from lapis.catalog import PROVISIONED_SKUS
from lapis.metrics.live import LiveMetrics
from lapis.metrics.rollup import Rollups
from lapis.observe.record import RequestRecord
from lapis.store.metering import MeteringStore

DRAIN_S = 0.05  # how long a record waits to be counted, at most (scrapes count what waits first)


class Counting:
    def __init__(self, store: MeteringStore):
        self.arm_ids: dict[str, str] = {}  # account id -> ARM id, from its records
        self.limits: dict[tuple[str, str], int] = {}  # provisioned (account id, deployment) -> tokens per minute
        self.live = LiveMetrics(limit_of=lambda account, deployment: self.limits.get((account, deployment), 0),
                                resource_of=lambda account: self.arm_ids.get(account, account))
        self.rollups = Rollups(store, before_flush=self.drain)
        self._waiting: list[RequestRecord] = []  # observed, not yet counted
        self._drain_at: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self, flush_s: float) -> None:
        self._task = asyncio.get_running_loop().create_task(self.rollups.run(flush_s))

    def observe(self, r: RequestRecord) -> None:
        if not r.account_id:
            return
        self._waiting.append(r)
        if self._drain_at is None:
            self._drain_at = asyncio.get_running_loop().call_later(DRAIN_S, self.drain)

    def drain(self) -> None:
        """Count the records that wait (see the module docstring)."""
        if self._drain_at is not None:
            self._drain_at.cancel()
            self._drain_at = None
        waiting, self._waiting = self._waiting, []
        live, rollups, arm_ids = self.live, self.rollups, self.arm_ids
        for r in waiting:
            key = (r.account_id, r.account_name, r.deployment, r.model, r.model_version,
                   r.served_region or r.location, r.status, r.streaming, r.operation_name)
            prompt, generated, cached = r.prompt_tokens, r.completion_tokens, r.cached_tokens
            live.observe(key, prompt, generated, cached, r.ttfb_ms, r.duration_ms)
            minute = int(r.time // 60)
            rollups.observe(minute, key, prompt, generated, cached, r.ttfb_ms, r.duration_ms)
            if r.account_arm_id:
                arm_ids[r.account_id] = r.account_arm_id
            if r.sku in PROVISIONED_SKUS and r.deployment:
                self.limits[(r.account_id, r.deployment)] = r.tokens_per_minute
                if prompt or generated:
                    live.observe_provisioned(r.account_id, r.deployment, minute, prompt + generated)

    def collect(self) -> Iterator[Metric]:
        """The live families and the rollups' own numbers (a MetricsHub collect function)."""
        self.drain()
        yield from self.live.collect()
        r = self.rollups
        yield GaugeMetricFamily("lapis_rollup_cells", "Metric rollup cells not yet flushed", value=len(r.cells))
        yield CounterMetricFamily("lapis_rollup_flushes", "Rollup flushes committed", value=r.flushes)
        yield CounterMetricFamily("lapis_rollup_flush_failures", "Rollup flushes the store refused (retried)",
                                  value=r.failures)

    async def close(self) -> None:
        """Stop the flush timer and write what memory holds (before the store closes)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.rollups.flush()  # counts what waits first
