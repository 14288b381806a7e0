"""The query parameters of Azure Monitor's Metrics - List, parsed and checked.

    metricnames   comma-separated; unknown names get Azure's 400 ("Failed to
                  find metric configuration ..."); default AzureOpenAIRequests
    timespan      start/end, start/duration, or a duration ending now (ISO
                  8601); default the last hour (PT1H), as Azure
    interval      PT1M (default) PT5M PT15M PT30M PT1H PT6H PT12H P1D, or FULL
                  (one point for the whole timespan)
    aggregation   comma-separated Total, Average, Maximum, Minimum, Count (any
                  case); default each metric's primary aggregation
    $filter       "Dim eq 'a' [or Dim eq 'b'] [and Dim2 eq '*']": splits the
                  series by each dimension named; values match without regard
                  to case; '*' keeps every value
    top, orderby  with a split: how many series (10), ordered by an
                  aggregation ("Total desc", the default order)

Errors are Azure Monitor's body, `{"code": "BadRequest", "message": ...}` at
the top level (no "error" envelope), as its API answers (GetMetricError and
captured 400s). The wording of all but the unknown-metric message is Lapis's.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Mapping

from lapis.errors.base import ApiError
from lapis.metrics.definitions import AGGREGATIONS, BY_NAME, DIMENSION_BY_LOWER, METRICS, MetricDef

INTERVALS = {"PT1M": 1, "PT5M": 5, "PT15M": 15, "PT30M": 30, "PT1H": 60, "PT6H": 360, "PT12H": 720, "P1D": 1440}
_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$", re.IGNORECASE)
_ATOM = re.compile(r"^\(?\s*([A-Za-z]+)\s+eq\s+'([^']*)'\s*\)?$", re.IGNORECASE)
_AGG_BY_LOWER = {a.lower(): a for a in AGGREGATIONS}


def monitor_error(message: str, status: int = 400, code: str = "BadRequest") -> ApiError:
    """Azure Monitor's error body: code and message at the top level."""
    body = json.dumps({"code": code, "message": message}, separators=(",", ":"), ensure_ascii=False).encode()
    return ApiError(status, body, code)


@dataclass(slots=True)
class MetricsQuery:
    metrics: list[MetricDef]
    start: datetime
    end: datetime
    interval: str  # as the response names it: PT1M ... or, for FULL, the timespan's duration
    step: int  # minutes per point
    aggregations: list[str] | None  # None: each metric's primary
    splits: dict[str, set[str] | None] = field(default_factory=dict)  # dimension -> lower-cased values; None = '*'
    top: int = 10
    order_by: tuple[str, bool] = ("Total", True)  # (aggregation, descending)

    @property
    def start_minute(self) -> int:
        return int(self.start.timestamp() // 60)

    @property
    def end_minute(self) -> int:
        return -int(-self.end.timestamp() // 60)  # ceiling: a partial last minute is included


def parse(query: Mapping[str, str], now: datetime | None = None) -> MetricsQuery:
    now = now or datetime.now(timezone.utc)
    metrics = _metrics(query.get("metricnames") or "AzureOpenAIRequests")
    start, end = _timespan(query.get("timespan") or "PT1H", now)
    raw_interval = (query.get("interval") or "PT1M").strip().upper()
    if raw_interval == "FULL":
        # One bucket over every minute the timespan touches (its first and last may be partial).
        step = max(1, -int(-end.timestamp() // 60) - int(start.timestamp() // 60))
        interval = _duration_text(end - start)
    elif raw_interval in INTERVALS:
        step, interval = INTERVALS[raw_interval], raw_interval
        start = _align(start, step)
    else:
        raise monitor_error(f"Invalid interval '{query.get('interval')}'. Supported intervals: "
                            f"{', '.join(INTERVALS)}, FULL.")
    parsed = MetricsQuery(metrics, start, end, interval, step, _aggregations(query.get("aggregation")))
    parsed.splits = _filter(query.get("$filter") or query.get("filter") or "")
    top = query.get("top")
    if top:
        if not top.isdigit() or int(top) < 1:
            raise monitor_error(f"Invalid top '{top}': a positive integer is expected.")
        parsed.top = int(top)
    if query.get("orderby"):
        parsed.order_by = _order_by(query["orderby"])
    return parsed


def _metrics(names: str) -> list[MetricDef]:
    found = []
    for name in (n.strip() for n in names.split(",")):
        metric = BY_NAME.get(name.lower())
        if metric is None:
            raise monitor_error(
                f"Failed to find metric configuration for provider: Microsoft.CognitiveServices, resource Type: "
                f"accounts, metric: {name}, Valid metrics: {','.join(m.name for m in METRICS)}")
        found.append(metric)
    return found


def parse_duration(text: str) -> timedelta | None:
    match = _DURATION.match(text.strip())
    if not match or text.strip().upper() in ("P", "PT"):
        return None
    days, hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)


def parse_time(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _timespan(text: str, now: datetime) -> tuple[datetime, datetime]:
    first, _, second = text.partition("/")
    bad = monitor_error(f"Invalid timespan '{text}': use start/end, start/duration or a duration (ISO 8601).")
    if not second:
        span = parse_duration(first)
        if span is None:
            raise bad
        return now - span, now
    start = parse_time(first)
    if start is None:
        raise bad
    end = parse_time(second)
    if end is None:
        span = parse_duration(second)
        if span is None:
            raise bad
        end = start + span
    if end <= start:
        raise monitor_error(f"Invalid timespan '{text}': the end must be after the start.")
    return start.astimezone(timezone.utc), end.astimezone(timezone.utc)


def _align(moment: datetime, step: int) -> datetime:
    minutes = int(moment.timestamp() // 60)
    return datetime.fromtimestamp((minutes - minutes % step) * 60, timezone.utc)


def _duration_text(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    time_part = "".join(f"{v}{u}" for v, u in ((hours, "H"), (minutes, "M"), (seconds, "S")) if v)
    return "P" + (f"{days}D" if days else "") + (f"T{time_part}" if time_part else "" if days else "T0S")


def _aggregations(text: str | None) -> list[str] | None:
    if not text:
        return None
    out = []
    for name in (a.strip() for a in text.split(",") if a.strip()):
        canonical = _AGG_BY_LOWER.get(name.lower())
        if canonical is None:
            raise monitor_error(f"Invalid aggregation '{name}'. Supported aggregations: {', '.join(AGGREGATIONS)}.")
        if canonical not in out:
            out.append(canonical)
    return out


def _filter(text: str) -> dict[str, set[str] | None]:
    """`Dim eq 'a' or Dim eq 'b' and Other eq '*'` -> {"Dim": {"a", "b"}, "Other": None}."""
    splits: dict[str, set[str] | None] = {}
    if not text.strip():
        return splits
    for part in re.split(r"\s+and\s+", text.strip(), flags=re.IGNORECASE):
        dimension, values = None, set()
        for atom in re.split(r"\s+or\s+", part.strip(), flags=re.IGNORECASE):
            match = _ATOM.match(atom.strip())
            if not match:
                raise monitor_error(f"Invalid $filter '{text}': expected Dimension eq 'value' clauses joined by "
                                    "'and' / 'or'.")
            name = DIMENSION_BY_LOWER.get(match.group(1).lower())
            if name is None:
                raise monitor_error(f"Invalid $filter: the dimension '{match.group(1)}' does not exist. Valid "
                                    f"dimensions: {', '.join(sorted(set(DIMENSION_BY_LOWER.values())))}.")
            if dimension not in (None, name):
                raise monitor_error(f"Invalid $filter '{text}': 'or' joins values of one dimension.")
            dimension = name
            values.add(match.group(2).lower())
        splits[dimension] = None if "*" in values else values  # type: ignore[index]
    return splits


def _order_by(text: str) -> tuple[str, bool]:
    parts = text.split()
    aggregation = _AGG_BY_LOWER.get(parts[0].lower()) if parts else None
    direction = parts[1].lower() if len(parts) > 1 else "desc"
    if aggregation is None or len(parts) > 2 or direction not in ("asc", "desc"):
        raise monitor_error(f"Invalid orderby '{text}': expected an aggregation and asc or desc.")
    return aggregation, direction == "desc"
