"""`lapis monitor`, as `az monitor`; this module owns the group and its `metrics` commands.

    lapis monitor metrics list --resource ID --metrics ProcessedPromptTokens [GeneratedTokens ...]
        [--interval PT1M|1m|5m|1h|FULL] [--aggregation Total [Average ...]] [--filter "ModelDeploymentName eq '*'"]
        [--start-time T] [--end-time T] [--offset 1h] [--top N] [--orderby "Total desc"] [-o json|table|tsv|chart]
    lapis monitor metrics list-definitions --resource ID

Other modules add their groups to `monitor_app` (lapis.cli.diagnostics:
diagnostic-settings, log-analytics, activity-log); main.py wires them.

`-o chart` (Lapis's own) draws each series in the terminal: one line of bars
per time series, scaled to its largest point, with its sum, peak and range.
As in az, the time range is --start-time/--end-time, or --offset (default 1h)
back from the end (now) or forward from the start.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Annotated, Any, Optional
from urllib.parse import urlencode

import typer

from lapis.cli.client import CliError
from lapis.cli.common import Output, Query, client, new_typer, show
from lapis.cli.output import OutputFormat

MONITOR_API = "2023-10-01"
BARS = " ▁▂▃▄▅▆▇█"
_SHORT = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?$")

monitor_app = new_typer("Monitor resources: metrics, diagnostic settings, logs and the activity log.")
metrics_app = new_typer("View the platform metrics of a resource (Azure Monitor).")
monitor_app.add_typer(metrics_app, name="metrics")


class MetricsOutput(str, Enum):
    json = "json"
    jsonc = "jsonc"
    table = "table"
    tsv = "tsv"
    none = "none"
    chart = "chart"


Resource = Annotated[str, typer.Option("--resource", help="The resource's ARM id, e.g. /subscriptions/…/accounts/x.")]


def _duration(value: str, flag: str) -> timedelta:
    """az's ##d##h##m, or an ISO 8601 duration (PT1H)."""
    text = value.strip().lower()
    match = _SHORT.match(text)
    if match and any(match.groups()):
        days, hours, minutes = (int(g or 0) for g in match.groups())
        return timedelta(days=days, hours=hours, minutes=minutes)
    from lapis.metrics.params import parse_duration

    span = parse_duration(value)
    if span is None:
        raise CliError(f"{flag} '{value}' is not a duration: use e.g. 1h, 30m, 2d1h or PT1H.")
    return span


def _interval(value: str) -> str:
    """ISO 8601 for the API: 1m -> PT1M, 1h -> PT1H, 1d -> P1D; FULL and ISO pass through."""
    if value.strip().upper() == "FULL" or value.strip().upper().startswith("P"):
        return value.strip().upper()
    span = _duration(value, "--interval")
    minutes = int(span.total_seconds() // 60)
    if minutes % 1440 == 0:
        return f"P{minutes // 1440}D"
    return f"PT{minutes // 60}H" if minutes % 60 == 0 else f"PT{minutes}M"


def _time(value: str, flag: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise CliError(f"{flag} '{value}' is not a date-time (ISO 8601, e.g. 2026-07-01T10:00:00Z).") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def timespan(start: str | None, end: str | None, offset: str) -> str:
    span = _duration(offset, "--offset")
    if start and end:
        first, last = _time(start, "--start-time"), _time(end, "--end-time")
    elif start:
        first = _time(start, "--start-time")
        last = first + span
    else:
        last = _time(end, "--end-time") if end else datetime.now(timezone.utc)
        first = last - span
    iso = "%Y-%m-%dT%H:%M:%SZ"
    return f"{first.astimezone(timezone.utc).strftime(iso)}/{last.astimezone(timezone.utc).strftime(iso)}"


def _names(values: list[str] | None) -> list[str]:
    return [n.strip() for v in values or [] for n in v.split(",") if n.strip()]


def _series_label(series: dict[str, Any]) -> str:
    return ", ".join(f"{m['name']['value']}={m['value']}" for m in series.get("metadatavalues") or [])


def rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per data point, as az's table prints metrics."""
    out = []
    for metric in result.get("value") or []:
        for series in metric.get("timeseries") or []:
            for point in series.get("data") or []:
                name = metric["name"].get("localizedValue") or metric["name"]["value"]
                row = {"Timestamp": point.get("timeStamp"), "Name": name}
                if series.get("metadatavalues"):
                    row["Dimensions"] = _series_label(series)
                for key in ("total", "average", "maximum", "minimum", "count"):
                    if key in point:
                        row[key.capitalize()] = point[key]
                out.append(row)
    return out


def _bar(value: float | None, peak: float) -> str:
    """A blank where there is no data; else one of eight heights (the lowest for 0)."""
    if value is None:
        return " "
    if peak <= 0:
        return BARS[1]
    return BARS[max(1, min(len(BARS) - 1, round(value / peak * (len(BARS) - 1))))]


def chart(result: dict[str, Any]) -> str:
    """Each series as a line of unicode bars, scaled to its largest value."""
    lines = []
    for metric in result.get("value") or []:
        for series in metric.get("timeseries") or []:
            data = series.get("data") or []
            key = next((k for k in ("total", "average", "maximum", "minimum", "count") if any(k in p for p in data)),
                       None)
            label = _series_label(series)
            title = f"{metric['name']['value']} ({metric.get('unit', '')}, {key or 'no data'})"
            lines.append(title + (f"  [{label}]" if label else ""))
            values = [p.get(key) for p in data] if key else []
            peak = max((v for v in values if v is not None), default=0.0)
            bars = "".join(_bar(v, peak) for v in values)
            lines.append(f"  |{bars}|")
            total = sum(v for v in values if v is not None)
            start = data[0]["timeStamp"] if data else ""
            end = data[-1]["timeStamp"] if data else ""
            lines.append(f"  {start} .. {end}  every {result.get('interval', '')}  peak {peak:g}  sum {total:g}")
    return "\n".join(lines) if lines else "No time series."


@metrics_app.command("list")
def metrics_list(
        resource: Resource,
        metrics: Annotated[Optional[list[str]], typer.Option(
            "--metrics", "--metric",
            help="Metric names, space or comma separated (default: AzureOpenAIRequests).")] = None,
        interval: Annotated[str, typer.Option("--interval", help="PT1M (1m), PT5M, PT15M, PT30M, PT1H, PT6H, PT12H, "
                                                                 "P1D or FULL.")] = "PT1M",
        aggregation: Annotated[Optional[list[str]], typer.Option(
            "--aggregation", help="Total, Average, Maximum, Minimum, Count (default: each metric's own).")] = None,
        filter_: Annotated[Optional[str], typer.Option(
            "--filter", help="Split and filter by dimensions: \"ModelDeploymentName eq '*'\".")] = None,
        start_time: Annotated[Optional[str], typer.Option("--start-time",
                                                          help="Start of the range (ISO 8601).")] = None,
        end_time: Annotated[Optional[str], typer.Option("--end-time", help="End of the range (ISO 8601).")] = None,
        offset: Annotated[str, typer.Option("--offset", help="Length of the range, ##d##h##m (default 1h).")] = "1h",
        top: Annotated[Optional[int], typer.Option("--top", help="Series to return when splitting (10).")] = None,
        orderby: Annotated[Optional[str], typer.Option("--orderby", help="e.g. 'Total desc'.")] = None,
        output: Annotated[MetricsOutput, typer.Option("--output", "-o", case_sensitive=False,
                                                      help="Output format; chart draws the series.")]
        = MetricsOutput.json,
        query: Query = None) -> None:
    """List the metric values of a resource (Azure Monitor's Metrics - List)."""
    params: dict[str, str] = {"timespan": timespan(start_time, end_time, offset), "interval": _interval(interval)}
    names = _names(metrics)
    if names:
        params["metricnames"] = ",".join(names)
    if aggregation:
        params["aggregation"] = ",".join(_names(aggregation))
    if filter_:
        params["$filter"] = filter_
    if top is not None:
        params["top"] = str(top)
    if orderby:
        params["orderby"] = orderby
    path = f"{resource.rstrip('/')}/providers/Microsoft.Insights/metrics?{urlencode(params)}"
    result = client().request("GET", path, api_version=MONITOR_API)
    if output is MetricsOutput.chart:
        typer.echo(chart(result))
    elif output in (MetricsOutput.table, MetricsOutput.tsv):
        show(rows(result), OutputFormat(output.value), query)
    else:
        show(result, OutputFormat(output.value), query)


@metrics_app.command("list-definitions")
def metrics_definitions(resource: Resource, output: Output = OutputFormat.json, query: Query = None) -> None:
    """List the metrics a resource has, their units and aggregations."""
    columns = [("Name", lambda d: d["name"]["value"]), ("Unit", lambda d: d.get("unit")),
               ("PrimaryAggregation", lambda d: d.get("primaryAggregationType"))]
    show(client().value(f"{resource.rstrip('/')}/providers/Microsoft.Insights/metricDefinitions", MONITOR_API),
         output, query, columns)
