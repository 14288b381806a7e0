"""Cost Management's Query - Usage over the metered requests (lapis.usage.meter).

Body, as Azure takes it (QueryDefinition, 2023-03-01):

    {"type": "Usage" | "ActualCost" | "AmortizedCost",
     "timeframe": "MonthToDate" | "BillingMonthToDate" | "TheLastMonth" | "TheLastBillingMonth"
                  | "WeekToDate" | "Custom",
     "timePeriod": {"from": ISO 8601, "to": ISO 8601},        (Custom only; `to` is inclusive)
     "dataset": {"granularity": "None" | "Daily" | "Monthly",
                 "aggregation": {"alias": {"name": COLUMN, "function": "Sum"}, ...},
                 "grouping": [{"type": "Dimension" | "TagKey", "name": ...}],   (at most 2)
                 "filter": {"and"|"or": [...]} | {"not": {...}}
                           | {"dimensions"|"tags": {"name", "operator": "In", "values": [...]}}}}

Answer: a Query resource whose properties hold `columns` ({name, type}) and
`rows`, in Azure's column order: the aggregations, then UsageDate (Daily,
yyyymmdd as a Number) or BillingMonth (Monthly, a Datetime string), then the
groupings (a TagKey grouping is two columns, TagKey and TagValue; untagged
usage has "" in both), then Currency. Rows are sorted by date, then group.

Columns: PreTaxCost, Cost, CostUSD and PreTaxCostUSD are the cost in USD
(Lapis bills in USD only); UsageQuantity is in thousands of tokens, the unit
Azure's token meters use. Lapis's own columns: InputTokens (prompt tokens,
the cached ones included, as OpenAI's usage counts them), CachedInputTokens,
OutputTokens, TotalTokens.

Each metered request is three meters, Azure-style: "{model}-{version} Input
Tokens", "... Cached Input Tokens", "... Output Tokens" (Lapis's names).
Dimensions: ResourceGroup / ResourceGroupName, ResourceId, ResourceLocation,
ResourceType, SubscriptionId, ServiceName, MeterCategory, MeterSubCategory,
Meter, ChargeType, PricingModel, and Lapis's own DeploymentName, ModelName,
ModelVersion, Sku and Caller (the key name or principal that called).
Values compare without regard to case; ResourceGroup and ResourceId are
lower-cased, as Cost Management shows them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from lapis.errors import catalogue as errors
from lapis.errors.base import ApiError
from lapis.store.metering import MeteringStore, UsageScope
from lapis.usage.pricing import CURRENCY, NANO_PER_USD
from lapis.usage.totals import to_ms

TIMEFRAMES = ("MonthToDate", "BillingMonthToDate", "TheLastMonth", "TheLastBillingMonth", "WeekToDate", "Custom")
GRANULARITIES = ("None", "Daily", "Monthly")
COST_COLUMNS = ("PreTaxCost", "Cost", "CostUSD", "PreTaxCostUSD")
TOKEN_COLUMNS = {"InputTokens": ("Input", "Cached Input"), "CachedInputTokens": ("Cached Input",),
                 "OutputTokens": ("Output",), "TotalTokens": ("Input", "Cached Input", "Output")}
COLUMNS = {c.lower(): c for c in (*COST_COLUMNS, "UsageQuantity", *TOKEN_COLUMNS)}
MAX_GROUPINGS = 2


@dataclass(frozen=True, slots=True)
class Line:
    """One meter of one group of metered requests."""

    row: dict[str, Any]
    kind: str  # Input | Cached Input | Output
    tokens: int
    cost_nano: int


_DIMENSIONS: dict[str, Callable[[Line], str]] = {
    "ResourceGroup": lambda x: x.row["resource_group"].lower(),
    "ResourceGroupName": lambda x: x.row["resource_group"].lower(),
    "ResourceId": lambda x: x.row["account_arm_id"].lower(),
    "ResourceLocation": lambda x: x.row["location"],
    "ResourceType": lambda x: "microsoft.cognitiveservices/accounts",
    "SubscriptionId": lambda x: x.row.get("subscription_id", ""),
    "ServiceName": lambda x: "Cognitive Services",
    "MeterCategory": lambda x: "Cognitive Services",
    "MeterSubCategory": lambda x: "Azure OpenAI",
    "Meter": lambda x: f"{x.row['model']}-{x.row['model_version']} {x.kind} Tokens",
    "ChargeType": lambda x: "Usage",
    "PricingModel": lambda x: "OnDemand",
    "DeploymentName": lambda x: x.row["deployment"],
    "ModelName": lambda x: x.row["model"],
    "ModelVersion": lambda x: x.row["model_version"],
    "Sku": lambda x: x.row["sku"],
    "Caller": lambda x: x.row["caller"],
}
DIMENSION_BY_LOWER = {d.lower(): d for d in _DIMENSIONS}


def bad_query(message: str) -> ApiError:
    return errors.arm_bad_request(f"Invalid query definition: {message}", "BadRequest")


@dataclass(slots=True)
class CostQuery:
    start: datetime
    end: datetime  # exclusive
    granularity: str = "None"
    aggregations: list[str] = field(default_factory=list)  # column names, in the body's order
    groupings: list[tuple[str, str]] = field(default_factory=list)  # (Dimension | TagKey, name)
    filter: dict[str, Any] | None = None


def _month_start(moment: datetime, back: int = 0) -> datetime:
    year, month = moment.year, moment.month - back
    while month < 1:
        year, month = year - 1, month + 12
    return datetime(year, month, 1, tzinfo=timezone.utc)


def _period(body: dict[str, Any], now: datetime) -> tuple[datetime, datetime]:
    timeframe = _one_of(body.get("timeframe"), TIMEFRAMES, "timeframe")
    if timeframe in ("MonthToDate", "BillingMonthToDate"):
        return _month_start(now), now
    if timeframe in ("TheLastMonth", "TheLastBillingMonth"):
        return _month_start(now, 1), _month_start(now)
    if timeframe == "WeekToDate":
        day = datetime(now.year, now.month, now.day, tzinfo=timezone.utc)
        return day - timedelta(days=now.weekday()), now
    period = body.get("timePeriod")
    if not isinstance(period, dict) or not period.get("from") or not period.get("to"):
        raise bad_query("timePeriod with 'from' and 'to' is required when timeframe is Custom.")
    start, end = _moment(period["from"], "from"), _moment(period["to"], "to")
    end = end + timedelta(days=1) if "T" not in str(period["to"]) else end + timedelta(seconds=1)
    if end <= start:
        raise bad_query("timePeriod 'to' must not be before 'from'.")
    return start, end


def _moment(value: Any, name: str) -> datetime:
    try:
        moment = datetime.fromisoformat(str(value).strip())
    except ValueError:
        raise bad_query(f"timePeriod '{name}' is not a date-time: '{value}'.") from None
    return moment.astimezone(timezone.utc) if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _one_of(value: Any, allowed: tuple[str, ...], name: str) -> str:
    found = next((a for a in allowed if isinstance(value, str) and a.lower() == value.lower()), None)
    if found is None:
        raise bad_query(f"'{name}' must be one of {', '.join(allowed)}; got '{value}'.")
    return found


def parse(body: Any, now: datetime | None = None) -> CostQuery:
    if not isinstance(body, dict):
        raise bad_query("the body must be a JSON object.")
    _one_of(body.get("type"), ("Usage", "ActualCost", "AmortizedCost"), "type")
    start, end = _period(body, now or datetime.now(timezone.utc))
    dataset = body.get("dataset") or {}
    if not isinstance(dataset, dict):
        raise bad_query("'dataset' must be an object.")
    query = CostQuery(start, end, _one_of(dataset.get("granularity") or "None", GRANULARITIES, "granularity"))
    aggregation = dataset.get("aggregation") or {"totalCost": {"name": "Cost", "function": "Sum"}}
    if not isinstance(aggregation, dict):
        raise bad_query("'dataset.aggregation' must be an object of alias -> {name, function}.")
    for alias, spec in aggregation.items():
        name = COLUMNS.get(str((spec or {}).get("name", "")).lower()) if isinstance(spec, dict) else None
        if name is None:
            raise bad_query(f"aggregation '{alias}' names an unknown column; valid: {', '.join(COLUMNS.values())}.")
        if str(spec.get("function", "")).lower() != "sum":
            raise bad_query(f"aggregation '{alias}': the only function is 'Sum'.")
        query.aggregations.append(name)
    grouping = dataset.get("grouping") or []
    if not isinstance(grouping, list) or len(grouping) > MAX_GROUPINGS:
        raise bad_query(f"'dataset.grouping' must be a list of at most {MAX_GROUPINGS} groupings.")
    for item in grouping:
        kind = _one_of((item or {}).get("type") if isinstance(item, dict) else None, ("Dimension", "TagKey"),
                       "grouping type")
        query.groupings.append((kind, _dimension(item.get("name")) if kind == "Dimension" else _tag(item)))
    query.filter = dataset.get("filter") or None
    if query.filter is not None:
        _check_filter(query.filter)
    return query


def _dimension(name: Any) -> str:
    found = DIMENSION_BY_LOWER.get(str(name).lower())
    if found is None:
        raise bad_query(f"the dimension '{name}' is not valid; valid: {', '.join(_DIMENSIONS)}.")
    return found


def _tag(item: dict[str, Any]) -> str:
    if not isinstance(item.get("name"), str) or not item["name"]:
        raise bad_query("a TagKey grouping needs the tag's name.")
    return item["name"]


def _check_filter(node: Any) -> None:
    if not isinstance(node, dict) or len(node) != 1:
        raise bad_query("a filter is one of and, or, not, dimensions, tags.")
    (kind, value), = node.items()
    if kind in ("and", "or"):
        if not isinstance(value, list) or len(value) < 2:
            raise bad_query(f"'{kind}' takes a list of at least two filters.")
        for child in value:
            _check_filter(child)
    elif kind == "not":
        _check_filter(value)
    elif kind in ("dimensions", "tags"):
        if not isinstance(value, dict) or str(value.get("operator", "")).lower() != "in" \
                or not isinstance(value.get("values"), list):
            raise bad_query(f"'{kind}' takes {{name, operator: In, values: [...]}}.")
        if kind == "dimensions":
            _dimension(value.get("name"))
    else:
        raise bad_query(f"unknown filter '{kind}'.")


def _matches(node: dict[str, Any], line: Line) -> bool:
    (kind, value), = node.items()
    if kind == "and":
        return all(_matches(child, line) for child in value)
    if kind == "or":
        return any(_matches(child, line) for child in value)
    if kind == "not":
        return not _matches(value, line)
    wanted = {str(v).lower() for v in value["values"]}
    if kind == "dimensions":
        return _DIMENSIONS[_dimension(value["name"])](line).lower() in wanted
    return _tags(line.row).get(str(value["name"]).lower(), "").lower() in wanted


def _tags(row: dict[str, Any]) -> dict[str, str]:
    return {k.lower(): str(v) for k, v in json.loads(row["tags"] or "{}").items()}


def _lines(row: dict[str, Any]) -> list[Line]:
    uncached = row["prompt_tokens"] - row["cached_tokens"]
    return [Line(row, kind, tokens, cost) for kind, tokens, cost in (
        ("Input", uncached, row["cost_input_nano"]), ("Cached Input", row["cached_tokens"], row["cost_cached_nano"]),
        ("Output", row["completion_tokens"], row["cost_output_nano"])) if tokens or cost]


def _group(query: CostQuery, line: Line) -> tuple[Any, ...]:
    key: list[Any] = []
    day = int(line.row["usage_day"])
    if query.granularity == "Daily":
        key.append(day)
    elif query.granularity == "Monthly":
        key.append(f"{day // 10000:04d}-{day // 100 % 100:02d}-01T00:00:00")
    for kind, name in query.groupings:
        if kind == "Dimension":
            key.append(_DIMENSIONS[name](line))
        else:
            value = _tags(line.row).get(name.lower())
            key += [name.lower(), value] if value is not None else ["", ""]
    return tuple(key)


def _columns(query: CostQuery) -> list[dict[str, str]]:
    columns = [{"name": name, "type": "Number"} for name in query.aggregations]
    if query.granularity == "Daily":
        columns.append({"name": "UsageDate", "type": "Number"})
    elif query.granularity == "Monthly":
        columns.append({"name": "BillingMonth", "type": "Datetime"})
    for kind, name in query.groupings:
        columns += [{"name": "TagKey", "type": "String"}, {"name": "TagValue", "type": "String"}] \
            if kind == "TagKey" else [{"name": name, "type": "String"}]
    return columns + [{"name": "Currency", "type": "String"}]


def _value(name: str, lines: list[Line]) -> float | int:
    if name in COST_COLUMNS:
        return sum(x.cost_nano for x in lines) / NANO_PER_USD
    if name == "UsageQuantity":
        return sum(x.tokens for x in lines) / 1000
    kinds = TOKEN_COLUMNS[name]
    return sum(x.tokens for x in lines if x.kind in kinds)


async def run_query(store: MeteringStore, scope: UsageScope, query: CostQuery) -> dict[str, Any]:
    """The `properties` of the answer: columns and rows."""
    rows = await store.usage_groups(scope, to_ms(query.start), to_ms(query.end))
    groups: dict[tuple[Any, ...], list[Line]] = {}
    for row in rows:
        row["subscription_id"] = scope.subscription_id.lower()
        for line in _lines(row):
            if query.filter is None or _matches(query.filter, line):
                groups.setdefault(_group(query, line), []).append(line)
    if not groups and not query.groupings and query.granularity == "None":
        groups[()] = []
    out = [[_value(name, lines) for name in query.aggregations] + list(key) + [CURRENCY]
           for key, lines in sorted(groups.items(), key=lambda item: [str(v) for v in item[0]])]
    return {"nextLink": None, "columns": _columns(query), "rows": out}
