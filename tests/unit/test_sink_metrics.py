"""Log sinks' queues on /metrics (lapis.metrics.health.sink_metrics)."""

from __future__ import annotations

from types import SimpleNamespace

from prometheus_client.core import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from lapis.metrics import health


class Counters:
    def counters(self) -> dict[str, dict[str, int]]:
        return {"rg/acct/logs/webhook": {"queued": 3, "delivered": 10, "dropped": 4, "failed": 2},
                "activity-log": {"queued": 0, "delivered": 7, "dropped": 0, "failed": 0}}


class Collector:
    def __init__(self, services) -> None:
        self.services = services

    def collect(self):
        return health.sink_metrics(self.services)


def scrape(services) -> dict[tuple[str, str], float]:
    registry = CollectorRegistry()
    registry.register(Collector(services))
    text = generate_latest(registry).decode()
    return {(s.name, s.labels.get("sink", "")): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_each_sink_shows_its_depth_deliveries_drops_and_failures() -> None:
    samples = scrape(SimpleNamespace(diagnostics=Counters()))
    assert samples[("lapis_sink_queue_depth", "rg/acct/logs/webhook")] == 3
    assert samples[("lapis_sink_delivered_total", "rg/acct/logs/webhook")] == 10
    assert samples[("lapis_sink_dropped_total", "rg/acct/logs/webhook")] == 4
    assert samples[("lapis_sink_failed_total", "rg/acct/logs/webhook")] == 2
    assert samples[("lapis_sink_delivered_total", "activity-log")] == 7


def test_no_diagnostics_yet_gives_no_samples() -> None:
    assert scrape(SimpleNamespace(diagnostics=None)) == {}
