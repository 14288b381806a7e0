"""Per-minute rollups: what the metrics query API (Azure Monitor's shape) reads.

Each request adds into one in-memory cell per (minute, dimension set); every
few seconds (LAPIS_METRICS_FLUSH_SECONDS) and at shutdown `flush()` takes all
cells and adds them into the store in one transaction (lapis.store.metering:
sums added, minimum and maximum kept, so replicas and successive flushes of
one minute add up). Never a write per request.

A flush that fails puts its cells back (merged with what arrived meanwhile)
for the next one, so a database outage delays metrics but loses none while
the process lives. What a crash loses is at most one flush interval of
metrics; usage, which is billed, is kept exactly by lapis.usage.meter instead.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Callable

from lapis.store.metering import MeteringStore

log = logging.getLogger("lapis.metrics")

# Cell layout, the order of lapis.store.metering.ROLLUP_VALUES.
REQUESTS, PROMPT, GENERATED, CACHED = 0, 1, 2, 3
TTFB_SUM, TTFB_MIN, TTFB_MAX, TTLT_SUM, TTLT_MIN, TTLT_MAX = 4, 5, 6, 7, 8, 9
TPS_SUM, TPS_COUNT, TBT_SUM, TBT_COUNT = 10, 11, 12, 13
_MINS = (TTFB_MIN, TTLT_MIN)
_MAXS = (TTFB_MAX, TTLT_MAX)


def speeds(generated: int, streaming: bool, ttfb: float, ttlt: float) -> tuple[float | None, float | None]:
    """(tokens per second, ms between tokens) of one request, None where it has none.
    Generation time is last byte minus first byte for a stream, the whole
    request otherwise (the answer arrives in one piece)."""
    if generated <= 0:
        return None, None
    generating = ttlt - ttfb if streaming else ttlt
    if generating <= 0:
        return None, None
    tps = generated * 1000.0 / generating
    tbt = generating / (generated - 1) if streaming and generated > 1 else None
    return tps, tbt


class Rollups:
    def __init__(self, store: MeteringStore, before_flush: Callable[[], None] | None = None):
        self.store = store
        self.before_flush = before_flush  # counts what the observer has not counted yet (Metering.drain)
        # (minute, live key) -> cell; the live key is lapis.metrics.live's label tuple
        self.cells: dict[tuple, list[float]] = {}
        self.flushes = 0
        self.failures = 0
        self._lock = asyncio.Lock()

    def observe(self, minute: int, key: tuple, prompt: int, generated: int, cached: int, ttfb: float,
                ttlt: float) -> None:
        cell_key = (minute, key)
        c = self.cells.get(cell_key)
        if c is None:
            c = self.cells[cell_key] = [0, 0, 0, 0, 0.0, math.inf, 0.0, 0.0, math.inf, 0.0, 0.0, 0, 0.0, 0]
        c[REQUESTS] += 1
        c[PROMPT] += prompt
        c[GENERATED] += generated
        c[CACHED] += cached
        c[TTFB_SUM] += ttfb
        if ttfb < c[TTFB_MIN]:
            c[TTFB_MIN] = ttfb
        if ttfb > c[TTFB_MAX]:
            c[TTFB_MAX] = ttfb
        c[TTLT_SUM] += ttlt
        if ttlt < c[TTLT_MIN]:
            c[TTLT_MIN] = ttlt
        if ttlt > c[TTLT_MAX]:
            c[TTLT_MAX] = ttlt
        if generated:
            tps, tbt = speeds(generated, key[7], ttfb, ttlt)
            if tps is not None:
                c[TPS_SUM] += tps
                c[TPS_COUNT] += 1
            if tbt is not None:
                c[TBT_SUM] += tbt
                c[TBT_COUNT] += 1

    def _merge(self, cell_key: tuple, values: list[float]) -> None:
        c = self.cells.get(cell_key)
        if c is None:
            self.cells[cell_key] = values
            return
        for i, value in enumerate(values):
            if i in _MINS:
                c[i] = min(c[i], value)
            elif i in _MAXS:
                c[i] = max(c[i], value)
            else:
                c[i] += value

    async def flush(self) -> bool:
        """Write every cell in one transaction; False (cells kept) when the store failed."""
        if self.before_flush is not None:
            self.before_flush()
        async with self._lock:
            if not self.cells:
                return True
            cells, self.cells = self.cells, {}
            rows = [(key[0], minute, key[2], key[3], key[4], key[5], int(key[6]), int(key[7]), key[8], *values)
                    for (minute, key), values in cells.items()]
            try:
                await self.store.add_rollups(rows)
            except Exception:  # noqa: BLE001 - keep the cells for the next flush
                self.failures += 1
                log.exception("writing %d metric rollups failed; kept for the next flush", len(rows))
                for cell_key, values in cells.items():
                    self._merge(cell_key, values)
                return False
            self.flushes += 1
            return True

    async def run(self, interval_s: float) -> None:
        """Flush every `interval_s` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            await self.flush()
