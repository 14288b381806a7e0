"""Usage totals of an ARM scope over a time range: the question a budget asks.

    totals = await usage_totals(services.store, "/subscriptions/{sub}/resourceGroups/rg1",
                                datetime(2026, 7, 1, tzinfo=timezone.utc), datetime.now(timezone.utc))
    totals.cost            # USD, float
    totals.cost_nano       # exact, integer nano-USD
    totals.prompt_tokens, totals.cached_tokens, totals.completion_tokens, totals.requests

Scopes: a subscription, a resource group in it, or an account
(`.../providers/Microsoft.CognitiveServices/accounts/{name}`), in any case.
`start` is inclusive, `end` exclusive; naive datetimes are UTC. The totals are
what is committed: answers sent in the last few tens of milliseconds (one
writer batch, lapis.usage.meter) may not be in them yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from lapis.store.metering import MeteringStore, UsageScope
from lapis.usage.pricing import CURRENCY, usd

_ACCOUNT_PATH = ["providers", "microsoft.cognitiveservices", "accounts"]


@dataclass(frozen=True, slots=True)
class UsageTotals:
    requests: int
    prompt_tokens: int  # includes the cached ones, as OpenAI's usage counts them
    cached_tokens: int
    completion_tokens: int
    cost_nano: int
    currency: str = CURRENCY

    @property
    def cost(self) -> float:
        return usd(self.cost_nano)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def parse_scope(scope: str) -> UsageScope:
    """A UsageScope from an ARM scope; ValueError for anything else."""
    parts = [p for p in scope.strip().split("/") if p]
    lowered = [p.lower() for p in parts]
    if len(parts) < 2 or lowered[0] != "subscriptions":
        raise ValueError(f"'{scope}' is not a subscription, resource group or account scope")
    if len(parts) == 2:
        return UsageScope(parts[1])
    if len(parts) >= 4 and lowered[2] == "resourcegroups":
        if len(parts) == 4:
            return UsageScope(parts[1], parts[3])
        if len(parts) == 8 and lowered[4:7] == _ACCOUNT_PATH:
            return UsageScope(parts[1], parts[3], "/" + "/".join(parts))
    raise ValueError(f"'{scope}' is not a subscription, resource group or account scope")


def to_ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)


async def usage_totals(store: Any, scope: str | UsageScope, start: datetime, end: datetime) -> UsageTotals:
    """Totals of the metered requests in `scope` with start <= time < end.
    `store` is the SqlStore (services.store) or its Database."""
    metering = MeteringStore(getattr(store, "db", store))
    where = scope if isinstance(scope, UsageScope) else parse_scope(scope)
    row = await metering.usage_totals(where, to_ms(start), to_ms(end))
    return UsageTotals(
        requests=int(row.get("requests", 0)), prompt_tokens=int(row.get("prompt_tokens", 0)),
        cached_tokens=int(row.get("cached_tokens", 0)), completion_tokens=int(row.get("completion_tokens", 0)),
        cost_nano=int(row.get("cost_input_nano", 0)) + int(row.get("cost_cached_nano", 0))
        + int(row.get("cost_output_nano", 0)),
    )
