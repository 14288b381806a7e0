"""What a deployment is allowed: its windows and counts, from the catalogue.

One function serves both planes, so the limits ARM shows in a deployment's
`properties.rateLimits` are the ones the data plane enforces (§5.1, §6.4):

    Standard-type SKUs   tokens = capacity x 1000 per 60 s;
                         requests = the model's RPM for those tokens, counted
                         per 10 s as RPM / 6 (= capacity for 6-RPM-per-1K models).
                         Below 6 RPM (o-series at low capacity) the request
                         window is the full minute, so the ratio still holds.
    Provisioned SKUs     tokens = capacity (PTU) x the model's tokensPerPTU per
                         60 s; requests are not what limits PTU (one per 10
                         tokens of throughput per 10 s keeps them out of the way).
"""

from __future__ import annotations

from lapis.catalog import PROVISIONED_SKUS, ModelSpec
from lapis.ratelimit.base import Limits


def is_provisioned(sku: str) -> bool:
    return sku in PROVISIONED_SKUS


def limits_for(model: ModelSpec, sku: str, capacity: int) -> Limits:
    if is_provisioned(sku):
        tokens = capacity * model.tokens_per_ptu
        return Limits(tokens=tokens, requests=max(1, tokens // 60))
    tokens = capacity * 1000
    rpm = model.rpm_for(tokens)
    if rpm >= 6:
        return Limits(tokens=tokens, requests=rpm // 6, request_window_s=10)
    return Limits(tokens=tokens, requests=max(rpm, 0), request_window_s=60)


def requests_per_minute(limits: Limits) -> int:
    """The RPM figure Azure's x-ratelimit-limit-requests header shows."""
    return limits.requests * (60 // limits.request_window_s)
