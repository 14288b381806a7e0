"""Azure Monitor's Metrics - List over the per-minute rollups of one account.

The answer has Azure Monitor's shape (the Response of metrics_API.json,
2023-10-01): cost, timespan, interval, value[] (one Metric per name asked:
id, type "Microsoft.Insights/metrics", name {value, localizedValue},
displayDescription, unit, timeseries[{metadatavalues, data[{timeStamp,
total|average|maximum|minimum|count}]}], errorCode "Success"), namespace and
resourceregion. Dimension names in metadatavalues are lower-cased, as Azure
sends them. Every interval of the timespan has a data point; see
lapis.metrics.definitions for what each metric is and which aggregations it
has. `cost` is the number of data points returned (Lapis's choice: Azure's is
an opaque figure of the same kind).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from lapis.catalog import PROVISIONED_SKUS
from lapis.metrics.definitions import NAMESPACE, MetricDef, dimension_value
from lapis.metrics.params import MetricsQuery
from lapis.store.metering import MeteringStore

METRIC_TYPE = "Microsoft.Insights/metrics"
_SUMMED = ("requests", "prompt_tokens", "generated_tokens", "cached_tokens", "ttfb_sum", "ttlt_sum", "tps_sum",
           "tps_count", "tbt_sum", "tbt_count")


@dataclass(slots=True)
class Cell:
    """One series in one interval: the rollup sums, and requests by status class."""

    requests: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    cached_tokens: int = 0
    ttfb_sum: float = 0.0
    ttlt_sum: float = 0.0
    tps_sum: float = 0.0
    tps_count: int = 0
    tbt_sum: float = 0.0
    tbt_count: int = 0
    ttfb_min: float = float("inf")
    ttfb_max: float = 0.0
    ttlt_min: float = float("inf")
    ttlt_max: float = 0.0
    ok: int = 0
    client: int = 0
    server: int = 0

    def add(self, row: dict[str, Any]) -> None:
        for name in _SUMMED:
            setattr(self, name, getattr(self, name) + row[name])
        self.ttfb_min = min(self.ttfb_min, row["ttfb_min"])
        self.ttfb_max = max(self.ttfb_max, row["ttfb_max"])
        self.ttlt_min = min(self.ttlt_min, row["ttlt_min"])
        self.ttlt_max = max(self.ttlt_max, row["ttlt_max"])
        status = int(row["status_code"])
        if status >= 500:
            self.server += row["requests"]
        elif status >= 400:
            self.client += row["requests"]
        else:
            self.ok += row["requests"]


def values(metric: MetricDef, cell: Cell | None) -> dict[str, float]:
    """Every aggregation `metric` has a value for in `cell` (None: no data)."""
    c = cell or Cell()
    n = c.requests
    if metric.kind == "count":
        count = {"all": n, "ok": c.ok, "error": c.client + c.server, "client": c.client,
                 "server": c.server}[metric.statuses]
        return {"Total": float(count), "Count": float(count)}
    if metric.kind == "tokens":
        total = {"prompt": c.prompt_tokens, "generated": c.generated_tokens,
                 "transaction": c.prompt_tokens + c.generated_tokens,
                 "active": c.prompt_tokens + c.generated_tokens - c.cached_tokens}[metric.field]
        out = {"Total": float(total), "Count": float(n)}
        if n:
            out["Average"] = total / n
        return out
    if metric.kind == "latency":
        if not n:
            return {"Count": 0.0}
        prefix = metric.field
        return {"Average": getattr(c, f"{prefix}_sum") / n, "Maximum": getattr(c, f"{prefix}_max"),
                "Minimum": getattr(c, f"{prefix}_min"), "Count": float(n)}
    if metric.kind == "mean":
        total, count = getattr(c, f"{metric.field}_sum"), getattr(c, f"{metric.field}_count")
        return {"Average": total / count, "Count": float(count)} if count else {"Count": 0.0}
    if metric.kind == "ratio":
        if metric.field == "cache":
            return {"Average": 100.0 * c.cached_tokens / c.prompt_tokens} if c.prompt_tokens else {}
        return {"Average": 100.0 * (n - c.server) / n} if n else {}
    return {}


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _points(query: MetricsQuery, metric: MetricDef, cells: dict[int, Any], kind_values: Any) -> list[dict[str, Any]]:
    wanted = query.aggregations or [metric.primary]
    buckets = max(1, -(-(query.end_minute - query.start_minute) // query.step))
    points = []
    for bucket in range(buckets):
        point: dict[str, Any] = {"timeStamp": _iso(query.start + timedelta(minutes=bucket * query.step))}
        computed = kind_values(cells.get(bucket))
        for aggregation in wanted:
            if aggregation in metric.aggregations and aggregation in computed:
                point[aggregation.lower()] = computed[aggregation]
        points.append(point)
    return points


def _series_key(query: MetricsQuery, row: dict[str, Any]) -> tuple[str, ...] | None:
    key = []
    for dimension, allowed in query.splits.items():
        value = dimension_value(dimension, row)
        if allowed is not None and value.lower() not in allowed:
            return None
        key.append(value)
    return tuple(key)


def _shape(query: MetricsQuery, metric: MetricDef, by_series: dict[tuple, dict[int, Any]], dims: list[str],
           kind_values: Any) -> list[dict[str, Any]]:
    if not dims and not by_series:
        by_series = {(): {}}
    series = []
    for key, cells in by_series.items():
        points = _points(query, metric, cells, kind_values)
        meta = [{"name": {"value": d.lower(), "localizedValue": d.lower()}, "value": v} for d, v in zip(dims, key)]
        series.append({"metadatavalues": meta, "data": points})
    if dims:
        aggregation, descending = query.order_by
        series.sort(key=lambda s: sum(p.get(aggregation.lower(), 0.0) for p in s["data"]), reverse=descending)
        series = series[:query.top]
    return series


async def _utilization(store: MeteringStore, query: MetricsQuery, account_id: str, directory: Any,
                       metric: MetricDef) -> list[dict[str, Any]]:
    """Provisioned utilization: per minute, tokens over each provisioned
    deployment's tokens per minute; averaged (and maximised) per interval.
    Only the ModelDeploymentName dimension splits it."""
    entry = directory.by_id.get(account_id)
    provisioned = {d.name.lower(): (d.name, d.limits.tokens) for d in (entry.deployments.values() if entry else [])
                   if d.sku in PROVISIONED_SKUS and d.limits.tokens}
    allowed = query.splits.get("ModelDeploymentName")
    split = "ModelDeploymentName" in query.splits
    chosen = {k: v for k, v in provisioned.items() if allowed is None or k in allowed}
    rows = await store.deployment_minutes(account_id, query.start_minute, query.end_minute)
    tokens: dict[tuple[str, int], int] = {}
    for row in rows:
        name = row["deployment"].lower()
        if name in chosen:
            key = (name if split else "", row["minute"])
            tokens[key] = tokens.get(key, 0) + row["prompt_tokens"] + row["generated_tokens"]
    groups = {name: [name] for name in chosen} if split else ({"": list(chosen)} if chosen else {})
    by_series: dict[tuple, dict[int, Any]] = {}
    for group, members in groups.items():
        limit = sum(chosen[m][1] for m in members)
        cells: dict[int, list[float]] = {}
        for minute in range(query.start_minute, query.end_minute):
            share = 100.0 * tokens.get((group, minute), 0) / limit
            cells.setdefault((minute - query.start_minute) // query.step, []).append(share)
        by_series[(chosen[group][0],) if split else ()] = cells

    def kind_values(shares: list[float] | None) -> dict[str, float]:
        return {"Average": sum(shares) / len(shares), "Maximum": max(shares)} if shares else {}

    return _shape(query, metric, by_series, ["ModelDeploymentName"] if split else [], kind_values)


async def query_metrics(store: MeteringStore, directory: Any, account: Any, query: MetricsQuery) -> dict[str, Any]:
    """The Metrics - List answer for `account` (a lapis.store.records.Account)."""
    resource_id = (f"/subscriptions/{account.subscription_id}/resourceGroups/{account.group}"
                   f"/providers/Microsoft.CognitiveServices/accounts/{account.name}")
    rows = await store.rollup_buckets(account.id, query.start_minute, query.end_minute, query.step)
    dims = list(query.splits)
    by_series: dict[tuple, dict[int, Cell]] = {}
    for row in rows:
        key = _series_key(query, row)
        if key is None:
            continue
        cells = by_series.setdefault(key, {})
        cell = cells.get(row["bucket"])
        if cell is None:
            cell = cells[row["bucket"]] = Cell()
        cell.add(row)
    value = []
    for metric in query.metrics:
        if metric.kind == "ptu":
            series = await _utilization(store, query, account.id, directory, metric)
        else:
            series = _shape(query, metric, by_series, dims, lambda cell, m=metric: values(m, cell))
        value.append({
            "id": f"{resource_id}/providers/Microsoft.Insights/metrics/{metric.name}", "type": METRIC_TYPE,
            "name": {"value": metric.name, "localizedValue": metric.display},
            "displayDescription": metric.description, "unit": metric.unit, "timeseries": series,
            "errorCode": "Success",
        })
    return {
        "cost": sum(len(s["data"]) for m in value for s in m["timeseries"]),
        "timespan": f"{_iso(query.start)}/{_iso(query.end)}", "interval": query.interval, "value": value,
        "namespace": NAMESPACE, "resourceregion": account.location,
    }
