"""Live counters and histograms behind /metrics, kept cheap on the hot path.

`observe()` runs once per data-plane request (from lapis.metrics.metering):
one dict lookup by the label tuple and a few additions into a flat list; the
latency histograms are two `bisect` calls. The Prometheus objects are built
only when /metrics is scraped (`collect()`, a prometheus_client custom
collector). Measured on this project's machine: prometheus_client's own
`Counter.labels(...).inc()` and `Histogram.observe()` for the same six
series cost 10.8 us a request (3.0 us with the children cached), this
0.6 us.

Names are Azure's (§10.1), as Prometheus counters (`AzureOpenAIRequests_total`)
and histograms in milliseconds (`AzureOpenAITimeToResponse_bucket{le=...}`);
labels are the dimensions: account, deployment, model_name, model_version,
region, status_code, stream_type, api_name, and resource_id (the account's ARM
id, looked up when scraped: account names repeat across resource groups). Requests no account was found for
(a wrong key, an unknown endpoint) belong to no resource and are not counted.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from typing import Any, Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

# Milliseconds: from a cached answer to a long generation.
BUCKETS_MS = (5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0, 60000.0,
              120000.0)
LABELS = ["resource_id", "account", "deployment", "model_name", "model_version", "region", "status_code", "stream_type",
          "api_name"]
_NB = len(BUCKETS_MS) + 1  # the last bucket is +Inf
_TTFB = 6
_TTLT = _TTFB + _NB
_WIDTH = _TTLT + _NB

# Key: (account_id, account_name, deployment, model, model_version, region, status, streaming, operation_name)
Key = tuple


class LiveMetrics:
    """Cumulative counts per label set since the process started."""

    def __init__(self, limit_of: Callable[[str, str], int] | None = None,
                 resource_of: Callable[[str], str] | None = None, clock: Callable[[], float] = time.time):
        self.series: dict[Key, list[float]] = {}
        # Provisioned deployments: (account_id, deployment) -> [minute, tokens in it, tokens the minute before]
        self.ptu: dict[tuple[str, str], list[int]] = {}
        self._limit_of = limit_of  # (account_id, deployment) -> tokens per minute, for utilization
        self._resource_of = resource_of or (lambda account_id: account_id)  # account_id -> ARM id
        self._clock = clock

    def observe(self, key: Key, prompt: int, generated: int, cached: int, ttfb: float, ttlt: float) -> None:
        s = self.series.get(key)
        if s is None:
            s = self.series[key] = [0] * _WIDTH
        s[0] += 1
        s[1] += prompt
        s[2] += generated
        s[3] += cached
        s[4] += ttfb
        s[5] += ttlt
        s[_TTFB + bisect_left(BUCKETS_MS, ttfb)] += 1
        s[_TTLT + bisect_left(BUCKETS_MS, ttlt)] += 1

    def observe_provisioned(self, account_id: str, deployment: str, minute: int, tokens: int) -> None:
        slot = self.ptu.get((account_id, deployment))
        if slot is None:
            slot = self.ptu[(account_id, deployment)] = [minute, 0, 0]
        if slot[0] != minute:
            slot[2] = slot[1] if slot[0] == minute - 1 else 0
            slot[0], slot[1] = minute, 0
        slot[1] += tokens

    # -- scrape ---------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        families = {
            "requests": CounterMetricFamily("AzureOpenAIRequests", "Azure OpenAI Requests", labels=LABELS),
            "prompt": CounterMetricFamily("ProcessedPromptTokens", "Processed Prompt Tokens", labels=LABELS),
            "generated": CounterMetricFamily("GeneratedTokens", "Generated Completion Tokens", labels=LABELS),
            "transaction": CounterMetricFamily("TokenTransaction", "Processed Inference Tokens (prompt + "
                                               "generated)", labels=LABELS),
            "active": CounterMetricFamily("ActiveTokens", "Active Tokens (prompt + generated - cached)",
                                          labels=LABELS),
            "cached": CounterMetricFamily("lapis_cached_prompt_tokens", "Prompt tokens served from the cache",
                                          labels=LABELS),
        }
        ttfb = HistogramMetricFamily("AzureOpenAITimeToResponse", "Time to Response (first byte), milliseconds",
                                     labels=LABELS)
        ttlt = HistogramMetricFamily("AzureOpenAITTLTInMS", "Time to Last Byte, milliseconds", labels=LABELS)
        for key, s in list(self.series.items()):
            labels = [self._resource_of(key[0]), *_labels(key)]
            requests, prompt, generated, cached = s[0], s[1], s[2], s[3]
            families["requests"].add_metric(labels, requests)
            families["prompt"].add_metric(labels, prompt)
            families["generated"].add_metric(labels, generated)
            families["transaction"].add_metric(labels, prompt + generated)
            families["active"].add_metric(labels, prompt + generated - cached)
            families["cached"].add_metric(labels, cached)
            ttfb.add_metric(labels, _buckets(s, _TTFB), s[4])
            ttlt.add_metric(labels, _buckets(s, _TTLT), s[5])
        yield from families.values()
        yield ttfb
        yield ttlt
        yield self._utilization()

    def _utilization(self) -> Metric:
        """Per provisioned deployment: tokens in the last whole minute over its
        tokens per minute, in percent (Azure's is per minute too)."""
        gauge = GaugeMetricFamily("AzureOpenAIProvisionedManagedUtilizationV2",
                                  "Provisioned-managed Utilization V2, percent of the last whole minute",
                                  labels=["resource_id", "deployment"])
        minute = int(self._clock() // 60)
        for (account_id, deployment), (seen, now_tokens, before) in list(self.ptu.items()):
            last = now_tokens if seen == minute - 1 else before if seen == minute else 0
            limit = self._limit_of(account_id, deployment) if self._limit_of else 0
            gauge.add_metric([self._resource_of(account_id), deployment], 100.0 * last / limit if limit else 0.0)
        return gauge


def _labels(key: Key) -> list[str]:
    _id, account, deployment, model, version, region, status, streaming, operation = key
    return [account, deployment, model, version, region, str(status),
            "Streaming" if streaming else "Non-Streaming", operation]


def _buckets(s: list[Any], start: int) -> list[tuple[str, float]]:
    out, running = [], 0
    for i, bound in enumerate(BUCKETS_MS):
        running += s[start + i]
        out.append((repr(bound), running))
    out.append(("+Inf", running + s[start + len(BUCKETS_MS)]))
    return out
