"""The query language of Lapis's Log Analytics stand-in: a small piece of KQL.

    AzureDiagnostics
    | where OperationName == 'ChatCompletions_Create' and DurationMs > 100
    | where TimeGenerated > ago(1h)
    | project TimeGenerated, CorrelationId, modelDeploymentName_s, promptTokens_d
    | order by TimeGenerated desc
    | take 20

Tables: AzureDiagnostics and AzureMetrics (lapis.diagnostics.shaping names
their columns). Operators, one table per query:

    where <column> <op> <literal> [and <column> <op> <literal>]...
        op: == != (exact)  =~ !~ (any case)  > >= < <=  contains !contains has startswith (any case)
        literal: 'text' "text" 12 1.5 true false ago(90m) datetime(2024-05-01T00:00:00Z)
        (ago takes d, h, m, s or ms)
    take N | limit N
    project <column>, ...
    order by <column> [asc | desc]   (sort by works too)
    count

`timespan` (ISO 8601: PT1H, P1D, or start/end) bounds TimeGenerated, as the
Log Analytics API does. The answer is the API's: {"tables": [{"name":
"PrimaryResult", "columns": [{"name", "type"}], "rows": [[...]]}]}.
Anything else is a 400 BadArgumentError whose innererror says what.
"""

from __future__ import annotations

import re
import time
from typing import Any, Iterable

from lapis.audit.filter import parse_time
from lapis.diagnostics import errors
from lapis.diagnostics.shaping import iso

TABLES = ("AzureDiagnostics", "AzureMetrics")
_TOKEN = re.compile(r"""\s*(?:(?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")|(?P<op>==|!=|=~|!~|>=|<=|>|<|\||,|\(|\))
                        |(?P<num>-?\d+(?:\.\d+)?(?:ms|d|h|m|s)?)|(?P<word>!?[A-Za-z_][A-Za-z0-9_.:-]*))""", re.X)
_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$", re.IGNORECASE)
_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
OPS = ("==", "!=", "=~", "!~", ">", ">=", "<", "<=", "contains", "!contains", "has", "startswith")


def _syntax(message: str) -> Exception:
    return errors.invalid_query(message)


def tokens(text: str) -> list[tuple[str, str]]:
    out, at = [], 0
    text = text.strip()
    while at < len(text):
        match = _TOKEN.match(text, at)
        if not match or match.end() == at:
            raise _syntax(f"Query could not be parsed at '{text[at:at + 20]}'.")
        kind = match.lastgroup or ""
        out.append((kind, match.group(kind)))
        at = match.end()
        while at < len(text) and text[at].isspace():
            at += 1
    return out


def duration_seconds(text: str) -> float:
    match = _DURATION.match(text.strip())
    if not match or not any(match.groups()):
        raise _syntax(f"The timespan '{text}' is not an ISO 8601 duration such as PT1H or P1D.")
    days, hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return days * 86400 + hours * 3600 + minutes * 60 + seconds


def timespan_bounds(text: str | None, now: float) -> tuple[str, str] | None:
    """(start, end) in stored form for a timespan: a duration back from now, start/end, or start/duration."""
    if not text:
        return None
    if "/" in text:
        first, second = text.split("/", 1)
        start = parse_time(first)
        end = start + duration_seconds(second) if second.upper().startswith("P") else parse_time(second)
        return iso(start), iso(end)
    return iso(now - duration_seconds(text)), iso(now)


class Parser:
    def __init__(self, text: str, now: float):
        self.items = tokens(text)
        self.at = 0
        self.now = now

    def peek(self) -> tuple[str, str] | None:
        return self.items[self.at] if self.at < len(self.items) else None

    def take(self, kind: str | None = None, value: str | None = None) -> str:
        item = self.peek()
        if item is None or (kind and item[0] != kind) or (value and item[1].lower() != value):
            found = item[1] if item else "the end of the query"
            raise _syntax(f"Expected {value or kind} but found {found}.")
        self.at += 1
        return item[1]

    def literal(self) -> Any:
        kind, value = self.peek() or ("", "")
        if kind == "str":
            self.at += 1
            return value[1:-1].replace("\\'", "'").replace('\\"', '"')
        if kind == "num":
            if not re.fullmatch(r"-?\d+(?:\.\d+)?", value):
                raise _syntax(f"A timespan such as '{value}' goes inside ago().")
            self.at += 1
            return float(value) if "." in value else int(value)
        if kind == "word" and value.lower() in ("true", "false"):
            self.at += 1
            return value.lower() == "true"
        if kind == "word" and value.lower() in ("ago", "datetime"):
            self.at += 1
            self.take("op", "(")
            inner = self.take()
            self.take("op", ")")
            if value.lower() == "datetime":
                return iso(parse_time(inner.strip("'\"")))
            amount = re.match(r"^(\d+(?:\.\d+)?)(ms|d|h|m|s)$", inner)
            if not amount:
                raise _syntax(f"ago() takes a timespan such as 1h, 30m or 7d, not '{inner}'.")
            return iso(self.now - float(amount.group(1)) * _UNITS[amount.group(2)])
        raise _syntax(f"Expected a literal but found {value or 'the end of the query'}.")

    def parse(self) -> tuple[str, list[tuple[str, Any]]]:
        table = self.take("word")
        stages: list[tuple[str, Any]] = []
        while self.peek() is not None:
            self.take("op", "|")
            word = self.take("word").lower()
            if word == "where":
                conditions = [self.condition()]
                while self.peek() and self.peek()[1].lower() == "and":  # type: ignore[index]
                    self.at += 1
                    conditions.append(self.condition())
                stages.append(("where", conditions))
            elif word in ("take", "limit"):
                stages.append(("take", int(self.take("num"))))
            elif word == "project":
                columns = [self.take("word")]
                while self.peek() == ("op", ","):
                    self.at += 1
                    columns.append(self.take("word"))
                stages.append(("project", columns))
            elif word in ("order", "sort"):
                self.take("word", "by")
                column = self.take("word")
                direction = "desc"
                if self.peek() and self.peek()[1].lower() in ("asc", "desc"):  # type: ignore[index]
                    direction = self.take().lower()
                stages.append(("order", (column, direction)))
            elif word == "count":
                stages.append(("count", None))
            else:
                raise _syntax(f"The operator '{word}' is not supported; use where, take, project, order by or "
                              "count.")
        return table, stages

    def condition(self) -> tuple[str, str, Any]:
        column = self.take("word")
        op = self.take()
        if op.lower() not in OPS:
            raise _syntax(f"Unknown comparison '{op}'; use one of {', '.join(OPS)}.")
        return column, op.lower(), self.literal()


def _compare(value: Any, op: str, wanted: Any) -> bool:
    if value is None:
        return op in ("!=", "!~", "!contains")
    if op in ("=~", "!~", "contains", "!contains", "has", "startswith"):
        text, other = str(value).lower(), str(wanted).lower()
        result = {"=~": text == other, "!~": text != other, "contains": other in text,
                  "!contains": other not in text, "has": other in text, "startswith": text.startswith(other)}
        return result[op]
    if isinstance(wanted, (int, float)) and not isinstance(wanted, bool):
        try:
            value = float(value)
        except (TypeError, ValueError):
            return False
    elif isinstance(wanted, str):
        value = str(value)
    try:
        return {"==": value == wanted, "!=": value != wanted, ">": value > wanted, ">=": value >= wanted,
                "<": value < wanted, "<=": value <= wanted}[op]
    except TypeError:
        return False


def _type(column: str, values: Iterable[Any]) -> str:
    if column == "TimeGenerated":
        return "datetime"
    for value in values:
        if isinstance(value, bool):
            return "bool"
        if isinstance(value, int):
            return "long"
        if isinstance(value, float):
            return "real"
        if value is not None:
            return "string"
    return "string"


def run(text: str, rows_of: Any, timespan: str | None = None, now: float | None = None) -> dict[str, Any]:
    """Evaluate `text` over `rows_of(table)` (an iterable of row dicts)."""
    now = time.time() if now is None else now
    table, stages = Parser(text, now).parse()
    if table not in TABLES:
        raise errors.invalid_query(f"Failed to resolve table expression named '{table}'.", "SemanticError")
    rows = list(rows_of(table))
    bounds = timespan_bounds(timespan, now)
    if bounds:
        rows = [r for r in rows if bounds[0] <= str(r.get("TimeGenerated", "")) <= bounds[1]]
    known = {c for r in rows for c in r}
    columns: list[str] = list(dict.fromkeys(c for r in rows for c in r))
    for stage, arg in stages:
        if stage == "where":
            for column, op, wanted in arg:
                rows = [r for r in rows if _compare(r.get(column), op, wanted)]
        elif stage == "take":
            rows = rows[:arg]
        elif stage == "project":
            columns = list(arg)
        elif stage == "order":
            column, direction = arg
            rows.sort(key=lambda r: (r.get(column) is None, r.get(column) if r.get(column) is not None else 0),
                      reverse=direction == "desc")
        elif stage == "count":
            rows, columns = [{"Count": len(rows)}], ["Count"]
            known.add("Count")
        if stage in ("where", "project", "order"):
            names = [c[0] for c in arg] if stage == "where" else arg if stage == "project" else [arg[0]]
            unknown = [n for n in names if n not in known and known]
            if unknown:
                raise errors.invalid_query(f"Failed to resolve scalar expression named '{unknown[0]}'.",
                                           "SemanticError")
    return {"tables": [{"name": "PrimaryResult",
                        "columns": [{"name": c, "type": _type(c, (r.get(c) for r in rows))} for c in columns],
                        "rows": [[r.get(c) for c in columns] for r in rows]}]}
