"""AllMetrics: per account and minute, the metrics of its data-plane requests.

Azure exports platform metrics through diagnostic settings as one record per
metric and minute (timeGrain PT1M) holding count, total, minimum, maximum and
average. Lapis keeps those five numbers per (account, minute, metric) as the
requests end, and hands the finished minutes to the sinks once a minute.

    AzureOpenAIRequests       1 per request
    ProcessedPromptTokens     prompt tokens
    GeneratedTokens           completion tokens
    TokenTransaction          prompt + completion tokens
    AzureOpenAITimeToResponse milliseconds to the first byte
    AzureOpenAITTLTInMS       milliseconds to the last byte
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lapis.diagnostics.shaping import metric_record
from lapis.observe.record import RequestRecord

NAMES = ("AzureOpenAIRequests", "ProcessedPromptTokens", "GeneratedTokens", "TokenTransaction",
         "AzureOpenAITimeToResponse", "AzureOpenAITTLTInMS")


@dataclass(slots=True)
class Bucket:
    account_id: str
    resource_id: str
    location: str
    minute: float
    values: dict[str, list[float]] = field(default_factory=dict)  # name -> [count, total, min, max]

    def add(self, name: str, value: float) -> None:
        agg = self.values.get(name)
        if agg is None:
            self.values[name] = [1, value, value, value]
            return
        agg[0] += 1
        agg[1] += value
        agg[2] = min(agg[2], value)
        agg[3] = max(agg[3], value)


def _fold(agg: list[float], value: float) -> None:
    agg[0] += 1
    agg[1] += value
    if value < agg[2]:
        agg[2] = value
    if value > agg[3]:
        agg[3] = value


class MinuteMetrics:
    def __init__(self) -> None:
        self.buckets: dict[tuple[str, float], Bucket] = {}  # (account id, minute number) -> its bucket

    def add(self, record: RequestRecord) -> None:
        key = (record.account_id, record.time // 60)
        bucket = self.buckets.get(key)
        prompt, completion = float(record.prompt_tokens), float(record.completion_tokens)
        if bucket is None:
            bucket = self.buckets[key] = Bucket(record.account_id, record.account_arm_id, record.location,
                                                float(int(key[1]) * 60))
            for name, value in zip(NAMES, (1.0, prompt, completion, prompt + completion, record.ttfb_ms,
                                           record.duration_ms)):
                bucket.add(name, value)
            return
        requests, prompts, completions, tokens, first, last = bucket.values.values()  # NAMES' order, as added
        requests[0] += 1
        requests[1] += 1.0  # its minimum and maximum stay 1
        _fold(prompts, prompt)
        _fold(completions, completion)
        _fold(tokens, prompt + completion)
        _fold(first, record.ttfb_ms)
        _fold(last, record.duration_ms)

    def take(self, before: float | None = None) -> list[tuple[Bucket, list[dict[str, Any]]]]:
        """Remove and return the minutes that started before `before` (all when None), as records."""
        done = [k for k, b in self.buckets.items() if before is None or b.minute + 60 <= before]
        out = []
        for key in sorted(done, key=lambda k: k[1]):
            bucket = self.buckets.pop(key)
            out.append((bucket, [metric_record(bucket.resource_id, bucket.minute, name, int(a[0]), a[1], a[2], a[3])
                                 for name, a in bucket.values.items()]))
        return out
