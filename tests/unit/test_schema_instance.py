"""instance_for builds values that validate against their schema."""

from __future__ import annotations

import json
import random
from typing import Any

import jsonschema
import pytest

from lapis.backends.schema_instance import instance_for

VALIDATOR = jsonschema.Draft202012Validator
FORMATS = VALIDATOR.FORMAT_CHECKER

SCHEMAS: dict[str, dict[str, Any]] = {
    "scalars": {
        "type": "object",
        "properties": {
            "s": {"type": "string"},
            "i": {"type": "integer"},
            "n": {"type": "number"},
            "b": {"type": "boolean"},
            "z": {"type": "null"},
        },
        "required": ["s", "i", "n", "b", "z"],
        "additionalProperties": False,
    },
    "nested_strict": {
        "type": "object",
        "properties": {
            "user": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "minLength": 3, "maxLength": 8},
                    "age": {"type": "integer", "minimum": 18, "maximum": 99},
                    "role": {"type": "string", "enum": ["admin", "editor", "viewer"]},
                    "address": {
                        "type": "object",
                        "properties": {"city": {"type": "string"}, "zip": {"type": "string", "pattern": "^[0-9]{5}$"}},
                        "required": ["city", "zip"],
                        "additionalProperties": False,
                    },
                },
                "required": ["name", "age", "role", "address"],
                "additionalProperties": False,
            },
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 4, "uniqueItems": True},
        },
        "required": ["user", "tags"],
        "additionalProperties": False,
    },
    "defs_and_anyof": {
        "$defs": {
            "step": {
                "type": "object",
                "properties": {"explanation": {"type": "string"}, "output": {"type": "string"}},
                "required": ["explanation", "output"],
                "additionalProperties": False,
            },
            "money": {"anyOf": [{"type": "number", "minimum": 0}, {"type": "string", "format": "uuid"}]},
        },
        "type": "object",
        "properties": {
            "steps": {"type": "array", "items": {"$ref": "#/$defs/step"}},
            "final_answer": {"type": "string"},
            "cost": {"$ref": "#/$defs/money"},
            "note": {"anyOf": [{"type": "string", "maxLength": 5}, {"type": "null"}]},
        },
        "required": ["steps", "final_answer", "cost", "note"],
        "additionalProperties": False,
    },
    "recursive_tree": {
        "definitions": {
            "node": {
                "type": "object",
                "properties": {
                    "label": {"type": "string"},
                    "children": {"type": "array", "items": {"$ref": "#/definitions/node"}},
                    "parent": {"anyOf": [{"$ref": "#/definitions/node"}, {"type": "null"}]},
                },
                "required": ["label", "children", "parent"],
                "additionalProperties": False,
            }
        },
        "$ref": "#/definitions/node",
    },
    "root_recursion": {
        "type": "object",
        "properties": {"name": {"type": "string"}, "next": {"anyOf": [{"$ref": "#"}, {"type": "null"}]}},
        "required": ["name", "next"],
    },
    "numbers": {
        "type": "object",
        "properties": {
            "pct": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
            "step": {"type": "number", "minimum": 0, "maximum": 10, "multipleOf": 0.25},
            "odd_tenth": {"type": "number", "multipleOf": 0.1, "minimum": 3.05, "maximum": 3.35},
            "even": {"type": "integer", "multipleOf": 2, "exclusiveMinimum": 7, "maximum": 11},
            "neg": {"type": "integer", "maximum": -1000},
            "any_num": {"type": ["number", "string"]},
        },
    },
    "arrays": {
        "type": "object",
        "properties": {
            "pair": {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}], "items": False, "minItems": 2},
            "matrix": {"type": "array", "items": {"type": "array", "items": {"type": "number"}, "minItems": 3, "maxItems": 3}},
            "empty": {"type": "array", "maxItems": 0},
            "colours": {"type": "array", "items": {"enum": ["red", "green", "blue"]}, "minItems": 3, "uniqueItems": True},
        },
    },
    "combinators": {
        "type": "object",
        "properties": {
            "all": {"allOf": [{"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
                              {"properties": {"b": {"const": "fixed"}}, "required": ["b"]}]},
            "one": {"oneOf": [{"type": "string", "format": "email"}, {"type": "integer"}]},
            "first_unsat": {"anyOf": [False, {"type": "boolean"}]},
            "const": {"const": {"k": [1, 2]}},
            "mixed_enum": {"enum": [1, "two", None, 3.5]},
        },
    },
    "formats": {
        "type": "object",
        "properties": {f: {"type": "string", "format": f} for f in ("date", "date-time", "time", "email", "uuid", "uri", "ipv4")},
    },
    "patterns": {
        "type": "object",
        "properties": {
            "code": {"type": "string", "pattern": "^[A-Z]{3}-\\d{4}$"},
            "phone": {"type": "string", "pattern": "^\\+?[0-9]{1,3}[ -][0-9]{6,8}$"},
            "choice": {"type": "string", "pattern": "^(cat|dog)s?$"},
            "contains": {"type": "string", "pattern": "foo"},
            "lookahead": {"type": "string", "pattern": "^(?=.*x).{2,}$"},
        },
    },
    "open_object": {"type": "object", "additionalProperties": {"type": "integer"}, "minProperties": 3, "required": ["x"]},
    "untyped": {"properties": {"a": {"minLength": 2}, "b": {"minimum": 5}, "c": {"items": {"type": "integer"}}}},
}


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_instances_validate(name: str) -> None:
    schema = SCHEMAS[name]
    for seed in range(40):
        value = instance_for(schema, random.Random(seed))
        jsonschema.validate(value, schema, cls=VALIDATOR, format_checker=FORMATS)
        json.dumps(value)  # plain JSON types only


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_strict_fills_every_property(name: str) -> None:
    schema = SCHEMAS[name]
    value = instance_for(schema, random.Random(1))
    if "properties" in schema:
        assert set(schema["properties"]) <= set(value)


def test_deterministic_per_seed_and_varied() -> None:
    schema = SCHEMAS["nested_strict"]
    assert instance_for(schema, random.Random(7)) == instance_for(schema, random.Random(7))
    values = {json.dumps(instance_for(schema, random.Random(s)), sort_keys=True) for s in range(10)}
    assert len(values) > 5


def test_recursion_terminates_with_minimal_values() -> None:
    value = instance_for(SCHEMAS["recursive_tree"], random.Random(3))
    depth, node = 0, value
    while node is not None:
        depth += 1
        node = node["parent"]
    assert 1 <= depth <= 5


@pytest.mark.parametrize("schema", [None, {}, True])
def test_empty_schema_gives_empty_object(schema: Any) -> None:
    assert instance_for(schema, random.Random(0)) == {}


def test_exact_values() -> None:
    rng = random.Random(0)
    assert instance_for({"type": "integer", "minimum": 4, "maximum": 4}, rng) == 4
    assert instance_for({"type": "string", "minLength": 10, "maxLength": 10}, rng).__len__() == 10
    assert instance_for({"type": "string", "maxLength": 0}, rng) == ""
    assert instance_for({"type": "string", "pattern": "^(?!x)[(unsupported"}, rng) == ""
    assert instance_for({"type": "array", "minItems": 0, "maxItems": 0}, rng) == []


@pytest.mark.parametrize(
    "pattern",
    ["^[A-Z]{3}-\\d{4}$", "^(red|green|blue)-[a-f0-9]{8}$", "^\\w+@\\w+\\.com$", "^v\\d+(\\.\\d+){2}$", "[xyz]{2,4}q?$"],
)
def test_from_regex_builds_matches(pattern: str) -> None:
    import re

    from lapis.backends.wordgen import from_regex

    for seed in range(20):
        text = from_regex(pattern, random.Random(seed))
        assert text is not None and re.search(pattern, text), (pattern, text)
    assert from_regex("^(?=x)a$", random.Random(0)) is None  # lookahead: unsupported
