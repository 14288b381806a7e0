"""Printing results the way az does: `-o json` (default), `table`, `tsv`, `none`.

json      pretty, indent 2, keys sorted (knack's format)
table     a header row, a dashes row, then one row per item, columns two
          spaces apart; by default the top-level scalar fields except id,
          type and etag, names capitalised (kind -> Kind), as az's automatic
          table; a command may pass its own columns, as az's transformers do
tsv       the same cells, tab-separated, no header (scalars print bare)
none      nothing

`--query` takes the small part of JMESPath people use with az: dotted keys,
`[N]` indexes and `[]` projections (`properties.endpoint`, `[].name`, `[0]`).
"""

from __future__ import annotations

import json
import re
from enum import Enum
from typing import Any, Callable, Sequence

Column = tuple[str, Callable[[dict[str, Any]], Any]]
SKIP_KEYS = ("id", "type", "etag")
_STEP = re.compile(r"\[(\d*|\*)\]|([^.\[\]]+)")
_QUERY = re.compile(r"^(\[(\d*|\*)\]|[A-Za-z_][\w-]*)(\.?\[(\d*|\*)\]|\.[A-Za-z_][\w-]*)*$")


class QueryError(ValueError):
    """A --query beyond the supported subset."""


class OutputFormat(str, Enum):
    json = "json"
    jsonc = "jsonc"
    table = "table"
    tsv = "tsv"
    none = "none"


def field(dotted: str) -> Callable[[dict[str, Any]], Any]:
    """A column getter for a dotted path ('properties.model.name')."""
    def get(item: dict[str, Any]) -> Any:
        value: Any = item
        for key in dotted.split("."):
            value = value.get(key) if isinstance(value, dict) else None
        return value
    return get


def with_resource_group(result: Any) -> Any:
    """az adds `resourceGroup` (parsed from `id`) to every resource it prints."""
    if isinstance(result, list):
        return [with_resource_group(item) for item in result]
    if isinstance(result, dict) and "resourceGroup" not in result and isinstance(result.get("id"), str):
        parts = result["id"].split("/")
        lowered = [p.lower() for p in parts]
        if "resourcegroups" in lowered and "providers" in lowered:
            index = lowered.index("resourcegroups") + 1
            if index < len(parts):
                return {**result, "resourceGroup": parts[index]}
    return result


def check_query(expression: str | None) -> str | None:
    """The expression, if it is in the supported subset; QueryError otherwise."""
    if expression and not _QUERY.match(expression.replace(" ", "")):
        raise QueryError(f"'{expression}' is not supported: use dotted keys, [N] and [] "
                         "(e.g. properties.endpoint, [].name, [0].id).")
    return expression


def query(result: Any, expression: str | None) -> Any:
    """Apply a simple JMESPath-like expression (see the module docstring)."""
    if not expression:
        return result
    check_query(expression)
    steps = [(m.group(1), m.group(2)) for m in _STEP.finditer(expression.replace(" ", ""))]

    def walk(value: Any, rest: list[tuple[str | None, str | None]]) -> Any:
        for position, (index, key) in enumerate(rest):
            if key is not None:
                value = value.get(key) if isinstance(value, dict) else None
            elif index in ("", "*"):
                if not isinstance(value, list):
                    return None
                projected = [walk(item, rest[position + 1:]) for item in value]
                return [item for item in projected if item is not None]
            else:
                value = value[int(index)] if isinstance(value, list) and int(index) < len(value) else None
            if value is None:
                return None
        return value

    return walk(result, steps)


def _header(key: str) -> str:
    return key[:1].upper() + key[1:]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _default_columns(rows: Sequence[dict[str, Any]], skip: Sequence[str]) -> list[Column]:
    keys: list[str] = []
    for row in rows:
        for key in sorted(row):
            value = row[key]
            if key not in skip and key not in keys and value is not None and not isinstance(value, (dict, list)):
                keys.append(key)
    return [(_header(key), field(key)) for key in keys]


def _rows(result: Any) -> list[Any]:
    if result is None:
        return []
    return list(result) if isinstance(result, list) else [result]


def table(result: Any, columns: Sequence[Column] | None = None) -> str:
    rows = _rows(result)
    if rows and not all(isinstance(r, dict) for r in rows):
        cells = [[_cell(r)] for r in rows]
        headers = ["Result"]
    else:
        cols = list(columns) if columns else _default_columns(rows, SKIP_KEYS)
        headers = [name for name, _ in cols]
        cells = [[_cell(get(row)) for _, get in cols] for row in rows]
    if not headers:
        return ""
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)


def tsv(result: Any, columns: Sequence[Column] | None = None) -> str:
    rows = _rows(result)
    lines = []
    for row in rows:
        if not isinstance(row, dict):
            lines.append(_cell(row))
            continue
        cols = list(columns) if columns else _default_columns([row], ())
        lines.append("\t".join(_cell(get(row)) for _, get in cols))
    return "\n".join(lines)


def render(result: Any, output: OutputFormat | str = OutputFormat.json, columns: Sequence[Column] | None = None,
           expression: str | None = None) -> str | None:
    """The text to print for `result`, or None when there is nothing to print."""
    fmt = OutputFormat(output)
    result = query(with_resource_group(result), expression)
    if fmt is OutputFormat.none or result is None:
        return None
    if fmt is OutputFormat.table:
        return table(result, None if expression else columns) or None
    if fmt is OutputFormat.tsv:
        return tsv(result, None if expression else columns) or None
    return json.dumps(result, indent=2, sort_keys=True, ensure_ascii=False)
