"""Lapis's own health on /metrics: what the existing counters already know.

Read at scrape time from the objects that keep them (nothing here runs per
request):

    lapis_ratelimit_decisions_total{decision}   Gate.admitted / Gate.denied
    lapis_ratelimit_store_failures_total        the limiter's `failures` (Redis unreachable)
    lapis_backend_tokens_generated_total        BackendStats of the default backend
    lapis_backend_active_streams
    lapis_backend_streams_cancelled_total
    lapis_balancer_*                            BalancerStats, when a balancer serves
                                                (attempts, failovers, retries, skipped
                                                open members, failures by kind, breaker
                                                transitions)
    lapis_usage_* / lapis_rollup_*              the metering queues (lapis.metrics.metering)
    lapis_sink_queue_depth{sink}                each log sink's queue now (lapis.diagnostics),
    lapis_sink_{delivered,dropped,failed}_total   and what it delivered, dropped when full,
                                                and failed to deliver (attempts)

More collectors register through MetricsHub.register (lapis.metrics.exposition).
"""

from __future__ import annotations

from typing import Any, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric


def limiter_metrics(services: Any) -> Iterator[Metric]:
    gate = services.gate
    decisions = CounterMetricFamily("lapis_ratelimit_decisions", "Rate-limit admissions, by decision",
                                    labels=["decision"])
    decisions.add_metric(["admitted"], gate.admitted)
    decisions.add_metric(["denied"], gate.denied)
    yield decisions
    yield CounterMetricFamily("lapis_ratelimit_store_failures", "Admissions the limit store could not answer",
                              value=getattr(gate.limiter, "failures", 0))


def backend_metrics(services: Any) -> Iterator[Metric]:
    stats = getattr(services.backend, "stats", None)
    if stats is None:
        return
    yield CounterMetricFamily("lapis_backend_tokens_generated", "Completion tokens the default backend generated",
                              value=stats.tokens_generated)
    yield GaugeMetricFamily("lapis_backend_active_streams", "Streams the default backend is generating now",
                            value=stats.active_streams)
    yield CounterMetricFamily("lapis_backend_streams_cancelled", "Streams cancelled because the client left",
                              value=stats.streams_cancelled)


def balancer_metrics(services: Any) -> Iterator[Metric]:
    """BalancerStats (lapis.serving.balancer) of the serving view, when there is one."""
    stats = getattr(getattr(services.serving, "balancer", None), "stats", None)
    if stats is None:
        return
    for name, text in (("attempts", "Calls made to pool members"),
                       ("failovers", "Calls made to another member right after a failure"),
                       ("retries", "Rounds over the members started after a wait"),
                       ("skipped_open", "Members skipped because their breaker was open")):
        yield CounterMetricFamily(f"lapis_balancer_{name}", text, value=getattr(stats, name, 0))
    failures = CounterMetricFamily("lapis_balancer_failures", "Failed member calls, by kind", labels=["kind"])
    for kind, count in sorted(dict(getattr(stats, "failures", {})).items()):
        failures.add_metric([kind], count)
    yield failures
    breaker = CounterMetricFamily("lapis_breaker_transitions", "Circuit breaker transitions seen by this process",
                                  labels=["transition"])
    for transition, count in sorted(dict(getattr(stats, "breaker", {})).items()):
        breaker.add_metric([transition], count)
    yield breaker


def sink_metrics(services: Any) -> Iterator[Metric]:
    """The log sinks' queues (lapis.diagnostics: one per destination, plus the activity log)."""
    diagnostics = getattr(services, "diagnostics", None)
    counters = diagnostics.counters() if diagnostics is not None else {}
    depth = GaugeMetricFamily("lapis_sink_queue_depth", "Records waiting in a log sink's queue", labels=["sink"])
    totals = {name: CounterMetricFamily(f"lapis_sink_{name}", text, labels=["sink"]) for name, text in (
        ("delivered", "Records a log sink delivered"),
        ("dropped", "Records a log sink dropped because its queue was full"),
        ("failed", "Delivery attempts of a log sink that failed"))}
    for sink, values in sorted(counters.items()):
        depth.add_metric([sink], values.get("queued", 0))
        for name, family in totals.items():
            family.add_metric([sink], values.get(name, 0))
    yield depth
    yield from totals.values()
