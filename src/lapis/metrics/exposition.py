"""The /metrics endpoint: one private prometheus_client registry per app.

Anything with numbers to show registers a collect function, a callable that
yields prometheus_client metric families when /metrics is scraped (never on
the hot path):

    hub.register(lambda: [CounterMetricFamily("lapis_sink_dropped", "...", value=sink.dropped)])

`lapis.metrics.health` holds the ones Lapis registers itself (rate limiter,
backend, balancer, the metering queues). Each app has its own registry (not
prometheus_client's global one), so two servers in one process never share
counters. A collect function that raises is logged and skipped: one broken
collector does not blank the page.

/metrics needs no credential, as Prometheus exporters usually do (Lapis's
choice); it shows account and deployment names, never keys or callers, and
it listens where Lapis listens (127.0.0.1 unless LAPIS_HOST says otherwise).
"""

from __future__ import annotations

import logging
from typing import Callable, Iterable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric

log = logging.getLogger("lapis.metrics")

Collect = Callable[[], Iterable[Metric]]


class _Collector:
    """prometheus_client's collector protocol around a plain function."""

    def __init__(self, collect: Collect):
        self._collect = collect

    def collect(self) -> Iterable[Metric]:
        try:
            return list(self._collect())
        except Exception:  # noqa: BLE001 - one broken collector must not blank /metrics
            log.exception("metrics collector %r failed", self._collect)
            return []


class MetricsHub:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)

    def register(self, collect: Collect) -> None:
        """Show what `collect()` yields on every scrape of /metrics."""
        self.registry.register(_Collector(collect))

    def render(self) -> bytes:
        return generate_latest(self.registry)

