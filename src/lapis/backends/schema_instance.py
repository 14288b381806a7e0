"""Build a JSON value that validates against a JSON Schema.

Covers the draft 2020-12 subset of OpenAI structured outputs and function
parameters. Deterministic for a given `random.Random` state. Rules chosen:

* objects get *every* declared property (strict mode requires all), plus
  any `required` name not declared (from `additionalProperties`, else a word)
  and extra keys up to `minProperties` when additional properties are allowed;
* `anyOf`/`oneOf`: the first satisfiable branch (siblings merged into it);
  `allOf`: the branches are merged into one schema;
* `$ref` to "#/$defs/..", "#/definitions/.." (any local JSON pointer). After
  MINIMAL_REF_DEPTH nested refs the generator turns minimal (arrays of
  minItems, branches/types without refs or null preferred) so that recursive
  schemas terminate;
* a type list picks one non-null type at random (null only if it is alone);
* strings honour format, min/maxLength and, best effort, pattern (candidates
  built from the regex parse tree, checked with `re.search`, else a fixed
  string);
* missing, empty or `true` schema -> {}.
"""

from __future__ import annotations

import math
import random
import re
import uuid
from typing import Any

from lapis.backends import wordgen

__all__ = ["instance_for"]

_TYPES = frozenset({"object", "array", "string"})
MINIMAL_REF_DEPTH = 3
MAX_REF_DEPTH = 32
_NUMERIC = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")
_INFER = (
    ("object", ("properties", "required", "additionalProperties", "minProperties")),
    ("array", ("items", "prefixItems", "minItems", "maxItems")),
    ("string", ("minLength", "maxLength", "pattern", "format")),
    ("number", _NUMERIC),
)


def instance_for(schema: dict[str, Any] | bool | None, rng: random.Random) -> Any:
    """A JSON value (dict/list/str/int/float/bool/None) valid for `schema`."""
    if not isinstance(schema, dict) or not schema:
        return {}
    return _Generator(schema, rng).value(schema, 0)


def _has_ref(node: Any) -> bool:
    if isinstance(node, dict):
        return "$ref" in node or any(_has_ref(v) for v in node.values())
    return isinstance(node, list) and any(_has_ref(v) for v in node)


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = {**base, **extra}
    if "properties" in base and "properties" in extra:
        out["properties"] = {**base["properties"], **extra["properties"]}
    if "required" in base and "required" in extra:
        out["required"] = list(dict.fromkeys([*base["required"], *extra["required"]]))
    return out


class _Generator:
    def __init__(self, root: dict[str, Any], rng: random.Random) -> None:
        self.root = root
        self.rng = rng

    def resolve(self, ref: str) -> Any:
        if not ref.startswith("#"):
            return {}
        node: Any = self.root
        for part in filter(None, ref[1:].split("/")):
            part = part.replace("~1", "/").replace("~0", "~")
            node = node[int(part)] if isinstance(node, list) else node.get(part, {})
        return node

    def value(self, schema: Any, depth: int) -> Any:
        if schema is True or not isinstance(schema, dict):
            return None if schema is False else {}
        if "$ref" in schema:
            if depth >= MAX_REF_DEPTH:
                return None
            siblings = {k: v for k, v in schema.items() if k != "$ref"}
            target = self.resolve(schema["$ref"])
            return self.value(_merge(target, siblings) if isinstance(target, dict) else target, depth + 1)
        if "allOf" in schema:
            merged = {k: v for k, v in schema.items() if k != "allOf"}
            for part in schema["allOf"]:
                if isinstance(part, dict) and "$ref" in part:
                    part, depth = self.resolve(part["$ref"]), depth + 1
                merged = _merge(merged, part) if isinstance(part, dict) else merged
            return self.value(merged, min(depth, MAX_REF_DEPTH))
        for key in ("anyOf", "oneOf"):
            if key in schema:
                siblings = {k: v for k, v in schema.items() if k != key}
                branches = [b for b in schema[key] if b is not False and b != {"not": {}}]
                if depth >= MINIMAL_REF_DEPTH:
                    branches.sort(key=_has_ref)  # stable: ref-free branches first
                branch = branches[0] if branches else {}
                return self.value(_merge(branch, siblings) if isinstance(branch, dict) else branch, depth)
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            return self.rng.choice(schema["enum"]) if schema["enum"] else None
        kind = schema.get("type")
        if isinstance(kind, list):
            real = [t for t in kind if t != "null"]
            if not real or ("null" in kind and depth >= MINIMAL_REF_DEPTH):
                kind = "null"
            else:
                kind = self.rng.choice(real)
        if kind is None:
            kind = next((t for t, keys in _INFER if any(k in schema for k in keys)), None)
            if kind is None:
                return {}
        if kind == "boolean":
            return self.rng.random() < 0.5
        if kind in ("integer", "number"):
            return self._number(schema, integer=kind == "integer")
        return getattr(self, "_" + kind)(schema, depth) if kind in _TYPES else None

    def _object(self, schema: dict[str, Any], depth: int) -> dict[str, Any]:
        props: dict[str, Any] = schema.get("properties") or {}
        extra = schema.get("additionalProperties", True)
        out = {name: self.value(sub, depth) for name, sub in props.items()}
        wanted = [n for n in schema.get("required", ()) if n not in out]
        i = 0
        while len(out) + len(wanted) < schema.get("minProperties", 0) and extra is not False:
            i += 1
            if f"extra_{i}" not in out and f"extra_{i}" not in wanted:
                wanted.append(f"extra_{i}")
        for name in wanted:
            out[name] = self.value(extra, depth) if isinstance(extra, dict) else wordgen.words(self.rng, 1)
        return out

    def _array(self, schema: dict[str, Any], depth: int) -> list[Any]:
        prefix = schema.get("prefixItems") or []
        items = schema.get("items", True)
        if isinstance(items, list):  # draft 4-2019 tuple form
            prefix, items = items, schema.get("additionalItems", True)
        lo = max(schema.get("minItems", 0), 0)
        hi = schema.get("maxItems", lo + 3)
        if items is False:
            hi = min(hi, len(prefix))
        if depth >= MINIMAL_REF_DEPTH:
            count = lo
        else:
            base = max(lo, min(1, hi))
            count = self.rng.randint(base, max(base, min(hi, lo + 3)))
        out = [self.value(sub, depth) for sub in prefix[:count]]
        for _ in range(count * 4):  # extra attempts are for uniqueItems
            if len(out) >= count:
                break
            item = self.value(items, depth)
            if not schema.get("uniqueItems") or item not in out:
                out.append(item)
        return out

    def _string(self, schema: dict[str, Any], depth: int) -> str:
        lo = schema.get("minLength", 0)
        hi = schema.get("maxLength", max(lo, 40))
        fmt = schema.get("format")
        if "pattern" in schema:
            return self._pattern(schema["pattern"], lo, hi)
        if fmt in _FORMATS:
            return _FORMATS[fmt](self.rng)
        text = wordgen.words(self.rng, self.rng.randint(1, 4))
        target = self.rng.randint(lo, max(lo, min(hi, lo + 30)))
        while len(text) < target:
            text += " " + wordgen.words(self.rng, 2)
        return text[: max(lo, min(hi, len(text)))].strip().ljust(lo, "x")

    def _pattern(self, pattern: str, lo: int, hi: int) -> str:
        try:
            re.compile(pattern)
        except re.error:
            return "x" * lo
        candidates = [wordgen.from_regex(pattern, self.rng) for _ in range(8)]
        candidates += [wordgen.words(self.rng, 1), "a", "A", "0", "abc123", "example"]
        for text in candidates:
            if text is not None and lo <= len(text) <= hi and re.search(pattern, text):
                return text
        return "x" * lo

    def _number(self, schema: dict[str, Any], integer: bool) -> float | int:
        """A multiple of multipleOf (else of 1 or 0.01) inside the bounds."""
        lo, hi = schema.get("minimum"), schema.get("maximum")
        xlo, xhi = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
        lo_ = max(v for v in (lo, xlo, -math.inf) if v is not None)
        hi_ = min(v for v in (hi, xhi, math.inf) if v is not None)
        lo_ = lo_ if lo_ > -math.inf else (min(0, hi_ - 100) if hi_ < math.inf else 0)
        hi_ = hi_ if hi_ < math.inf else lo_ + 100

        def ok(v: float) -> bool:
            return ((lo is None or v >= lo) and (hi is None or v <= hi) and (xlo is None or v > xlo)
                    and (xhi is None or v < xhi) and (not integer or float(v).is_integer()))

        step = schema.get("multipleOf") or (1 if integer else 0.01)
        k_lo, k_hi = math.ceil(lo_ / step), math.floor(hi_ / step)
        ks = [self.rng.randint(k_lo, k_hi) for _ in range(8)] if k_lo <= k_hi else []
        for k in ks + list(range(k_lo, min(k_hi, k_lo + 50) + 1)):
            v = k * step if isinstance(step, int) else round(k * step, 12)
            if ok(v) and ("multipleOf" not in schema or (v / step) == int(v / step)):
                return int(v) if integer or isinstance(step, int) else v
        mid = (lo_ + hi_) / 2
        return round(mid) if integer else mid


def _date(rng: random.Random) -> str:
    return f"{rng.randint(2000, 2030):04d}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


def _time(rng: random.Random) -> str:
    return f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}Z"


_FORMATS = {  # values valid for jsonschema's format checker
    "date": _date,
    "time": _time,
    "date-time": lambda rng: f"{_date(rng)}T{_time(rng)}",
    "email": lambda rng: f"{wordgen.words(rng, 1)}.{rng.randint(1, 99)}@example.com",
    "uuid": lambda rng: str(uuid.UUID(int=rng.getrandbits(128), version=4)),
    "uri": lambda rng: f"https://example.com/{wordgen.words(rng, 1)}",
    "hostname": lambda rng: f"{wordgen.words(rng, 1)}.example.com",
    "ipv4": lambda rng: f"192.0.2.{rng.randint(1, 254)}",
}
