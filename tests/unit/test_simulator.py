"""The simulator backend: determinism, caps, tools, JSON, streaming, embeddings."""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from typing import Any

import jsonschema
import msgspec
import pytest

from lapis.backends import wordgen
from lapis.backends.base import Backend, ChatCall, Choice, Delta, EmbedCall
from lapis.backends.simulator import SimulatorBackend
from lapis.tokens import count_text, encoding

MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Tell me something about rivers."},
]


def make_call(**kw: Any) -> ChatCall:
    base: dict[str, Any] = {"model": "gpt-4o-mini", "version": "2024-07-18", "messages": MESSAGES, "max_tokens": 1000}
    base.update(kw)
    return ChatCall(**base)


async def chat(call: ChatCall, backend: SimulatorBackend | None = None) -> list[Choice]:
    return (await (backend or SimulatorBackend()).chat(call)).choices


async def collect(backend: SimulatorBackend, call: ChatCall) -> list[Delta]:
    return [d async for d in backend.chat_stream(call)]


def test_protocol_shape() -> None:
    backend: Backend = SimulatorBackend()
    assert backend.stats.tokens_generated == 0


@pytest.mark.parametrize("name", ["o200k_base", "cl100k_base"])
def test_every_word_is_one_token(name: str) -> None:
    enc = encoding(name)
    bad = [w for w in wordgen.WORDS if len(enc.encode(" " + w)) != 1]
    assert bad == []
    assert len(enc.encode(",")) == 1 and len(enc.encode(".")) == 1


async def test_deterministic_and_seeded() -> None:
    a = await chat(make_call(seed=1, temperature=1.0))
    assert a == await chat(make_call(seed=1, temperature=1.0))
    assert a != await chat(make_call(seed=2, temperature=1.0))
    assert a != await chat(make_call(seed=1, temperature=1.0, messages=MESSAGES[:1]))
    assert a != await chat(make_call(seed=1, temperature=1.0, model="gpt-4o"))


async def test_temperature_zero_ignores_seed() -> None:
    texts = {(await chat(make_call(seed=s, temperature=0)))[0].content for s in (None, 1, 2, 99)}
    assert len(texts) == 1
    assert (await chat(make_call(temperature=0.0)))[0].content in texts


async def test_temperature_widens_vocabulary() -> None:
    def vocab(choices: list[Choice]) -> set[str]:
        return {w for c in choices for w in re.findall(r"[a-z]+", (c.content or "").lower())}

    cold = vocab(await chat(make_call(temperature=0, n=40)))
    hot = vocab(await chat(make_call(temperature=2, n=40)))
    assert len(hot) > len(cold) * 1.5


async def test_text_is_sentences() -> None:
    for seed in range(10):
        (choice,) = await chat(make_call(seed=seed))
        assert choice.finish_reason == "stop" and choice.tool_calls == ()
        text = choice.content or ""
        assert re.fullmatch(r"[A-Z][a-z]+(,? [a-z]+)*,?( [a-z]+)*\.( [A-Z][a-z]*,?( [a-z]+,?)*\.)*", text), text
        assert 12 <= count_text(text, "o200k_base") <= 60 + 20


async def test_n_choices_differ() -> None:
    choices = await chat(make_call(n=4, seed=5))
    assert [c.index for c in choices] == [0, 1, 2, 3]
    assert len({c.content for c in choices}) == 4


@pytest.mark.parametrize("tokenizer", ["o200k_base", "cl100k_base"])
@pytest.mark.parametrize("max_tokens", [0, 1, 2, 7, 13, 30])
async def test_max_tokens_exact(tokenizer: str, max_tokens: int) -> None:
    full = (await chat(make_call(seed=3, tokenizer=tokenizer)))[0].content or ""
    assert count_text(full, tokenizer) > 30
    (choice,) = await chat(make_call(seed=3, tokenizer=tokenizer, max_tokens=max_tokens))
    assert choice.finish_reason == "length"
    assert count_text(choice.content or "", tokenizer) == max_tokens
    assert full.startswith(choice.content or "")


async def test_max_tokens_not_reached_is_stop() -> None:
    full = (await chat(make_call(seed=3)))[0].content or ""
    (choice,) = await chat(make_call(seed=3, max_tokens=count_text(full, "o200k_base")))
    assert (choice.content, choice.finish_reason) == (full, "stop")


async def test_stop_sequences() -> None:
    full = (await chat(make_call(seed=4)))[0].content or ""
    words = full.split()
    late, early = " " + words[-2], " " + words[3]
    cut_at = min(full.index(late), full.index(early))
    (choice,) = await chat(make_call(seed=4, stop=(late, early, "never-there")))
    assert (choice.content, choice.finish_reason) == (full[:cut_at], "stop")
    # the cap still wins when it comes first
    (capped,) = await chat(make_call(seed=4, stop=(late,), max_tokens=2))
    assert capped.finish_reason == "length" and count_text(capped.content or "", "o200k_base") == 2


TOOL_PARAMS: list[dict[str, Any]] = [
    {
        "type": "object",
        "properties": {
            "location": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer", "minimum": 1, "maximum": 14},
        },
        "required": ["location", "unit", "days"],
        "additionalProperties": False,
    },
    {
        "type": "object",
        "$defs": {
            "item": {
                "type": "object",
                "properties": {
                    "sku": {"type": "string", "pattern": "^[A-Z]{2}[0-9]{4}$"},
                    "qty": {"type": "integer", "exclusiveMinimum": 0},
                    "options": {"type": "array", "items": {"enum": ["gift", "express", "insured"]}, "uniqueItems": True},
                },
                "required": ["sku", "qty", "options"],
                "additionalProperties": False,
            }
        },
        "properties": {
            "customer": {
                "type": "object",
                "properties": {
                    "email": {"type": "string", "format": "email"},
                    "vip": {"type": "boolean"},
                    "address": {
                        "type": "object",
                        "properties": {"street": {"type": "string"}, "country": {"type": "string", "minLength": 2, "maxLength": 2}},
                        "required": ["street", "country"],
                        "additionalProperties": False,
                    },
                },
                "required": ["email", "vip", "address"],
                "additionalProperties": False,
            },
            "items": {"type": "array", "items": {"$ref": "#/$defs/item"}, "minItems": 1},
            "coupon": {"anyOf": [{"type": "string", "maxLength": 12}, {"type": "null"}]},
            "total": {"anyOf": [{"type": "number", "minimum": 0, "multipleOf": 0.01}, {"type": "string"}]},
        },
        "required": ["customer", "items", "coupon", "total"],
        "additionalProperties": False,
    },
    {
        "type": "object",
        "properties": {
            "query": {"type": "string"},
            "filters": {
                "type": "array",
                "items": {
                    "anyOf": [
                        {"type": "object", "properties": {"field": {"const": "date"}, "after": {"type": "string", "format": "date"}}, "required": ["field", "after"], "additionalProperties": False},
                        {"type": "object", "properties": {"field": {"const": "tag"}, "value": {"type": "string"}}, "required": ["field", "value"], "additionalProperties": False},
                    ]
                },
            },
            "point": {"type": "array", "prefixItems": [{"type": "number"}, {"type": "number"}], "items": False, "minItems": 2},
        },
        "required": ["query", "filters", "point"],
        "additionalProperties": False,
    },
]
TOOLS = [
    {"type": "function", "function": {"name": f"fn_{i}", "description": "test", "parameters": p}}
    for i, p in enumerate(TOOL_PARAMS)
]


@pytest.mark.parametrize("index", range(len(TOOLS)))
async def test_forced_tool_call_validates(index: int) -> None:
    name = f"fn_{index}"
    for seed in range(15):
        call = make_call(seed=seed, tools=TOOLS, tool_choice={"type": "function", "function": {"name": name}})
        (choice,) = await chat(call)
        assert choice.content is None and choice.finish_reason == "tool_calls"
        (tool_call,) = choice.tool_calls
        assert tool_call.name == name
        assert re.fullmatch(r"call_[0-9A-Za-z]{24}", tool_call.id)
        jsonschema.validate(
            json.loads(tool_call.arguments), TOOL_PARAMS[index], format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
        )
        assert (await chat(call))[0] == choice


async def test_tool_choice_modes() -> None:
    (required,) = await chat(make_call(tools=TOOLS, tool_choice="required"))
    assert required.tool_calls[0].name == "fn_0"
    for mode in ("auto", "none", None):
        (choice,) = await chat(make_call(tools=TOOLS, tool_choice=mode))
        assert choice.tool_calls == () and choice.content and choice.finish_reason == "stop"
    (no_tools,) = await chat(make_call(tool_choice="required"))
    assert no_tools.tool_calls == ()
    two = await chat(make_call(tools=TOOLS, tool_choice="required", n=2))
    assert two[0].tool_calls[0].id != two[1].tool_calls[0].id


async def test_json_object_and_json_schema() -> None:
    (obj,) = await chat(make_call(response_format={"type": "json_object"}))
    assert isinstance(json.loads(obj.content or ""), dict) and obj.finish_reason == "stop"
    for i, schema in enumerate(TOOL_PARAMS):
        rf = {"type": "json_schema", "json_schema": {"name": f"s{i}", "strict": True, "schema": schema}}
        (choice,) = await chat(make_call(response_format=rf))
        assert choice.finish_reason == "stop"
        jsonschema.validate(json.loads(choice.content or ""), schema)
        (capped,) = await chat(make_call(response_format=rf, max_tokens=5))
        assert capped.finish_reason == "length" and count_text(capped.content or "", "o200k_base") == 5
        assert (choice.content or "").startswith(capped.content or "")


async def test_chat_counts_tokens() -> None:
    backend = SimulatorBackend()
    choices = (await backend.chat(make_call(n=3))).choices
    assert backend.stats.tokens_generated == sum(count_text(c.content or "", "o200k_base") for c in choices)


def joined(deltas: list[Delta], index: int) -> str:
    return "".join(d.content or "" for d in deltas if d.index == index)


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"n": 3, "temperature": 1.5, "seed": 9},
        {"max_tokens": 9, "tokenizer": "cl100k_base"},
        {"stop": (" the",), "n": 2},
        {"response_format": {"type": "json_schema", "json_schema": {"schema": TOOL_PARAMS[1]}}},
        {"max_tokens": 0},
    ],
)
async def test_stream_matches_chat(overrides: dict[str, Any]) -> None:
    call = make_call(**overrides)
    backend = SimulatorBackend()
    choices = await chat(call)
    deltas = await collect(backend, call)
    finals = [d for d in deltas if d.finish_reason is not None]
    assert [(d.index, d.finish_reason) for d in finals] == [(c.index, c.finish_reason) for c in choices]
    assert [d.index for d in deltas] == sorted(d.index for d in deltas)  # choices one after another
    total = 0
    for c in choices:
        assert joined(deltas, c.index) == c.content
        content_deltas = [d for d in deltas if d.index == c.index and d.content]
        assert len(content_deltas) == count_text(c.content or "", call.tokenizer)  # one Delta per token
        total += len(content_deltas)
    assert backend.stats.tokens_generated == total
    assert (backend.stats.active_streams, backend.stats.streams_cancelled) == (0, 0)


async def test_stream_tool_call() -> None:
    call = make_call(tools=TOOLS, tool_choice="required", n=2)
    deltas = await collect(SimulatorBackend(), call)
    choices = await chat(call)
    assert [d.tool_calls for d in deltas if d.tool_calls] == [c.tool_calls for c in choices]
    assert [d.finish_reason for d in deltas if d.finish_reason] == ["tool_calls", "tool_calls"]
    assert all(d.content is None for d in deltas)


async def test_stream_close_early_counts_cancel() -> None:
    backend = SimulatorBackend()
    stream = backend.chat_stream(make_call())
    first = await stream.__anext__()
    await stream.__anext__()
    assert first.content and backend.stats.active_streams == 1
    await stream.aclose()  # type: ignore[attr-defined]
    assert backend.stats.streams_cancelled == 1
    assert backend.stats.active_streams == 0
    assert backend.stats.tokens_generated == 2


async def test_stream_task_cancel_counts_cancel() -> None:
    backend = SimulatorBackend(token_ms=20)

    async def consume() -> None:
        async for _ in backend.chat_stream(make_call()):
            pass

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.07)
    assert backend.stats.active_streams == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (backend.stats.streams_cancelled, backend.stats.active_streams) == (1, 0)
    assert 1 <= backend.stats.tokens_generated < 10


async def test_latency() -> None:
    call = make_call(max_tokens=5)
    backend = SimulatorBackend(ttft_ms=60, token_ms=10)
    start = time.perf_counter()
    stamps = []
    async for delta in backend.chat_stream(call):
        stamps.append(time.perf_counter() - start)
    assert stamps[0] >= 0.055
    assert stamps[-1] >= 0.055 + 4 * 0.009
    start = time.perf_counter()
    await backend.chat(call)
    assert time.perf_counter() - start >= 0.06 + 5 * 0.01 - 0.005


async def test_no_latency_no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    async def forbidden(*_: Any) -> None:
        raise AssertionError("slept")

    monkeypatch.setattr(asyncio, "sleep", forbidden)
    backend = SimulatorBackend()
    await backend.chat(make_call())
    assert [d async for d in backend.chat_stream(make_call())]


def norm(v: list[float]) -> float:
    return math.sqrt(sum(x * x for x in v))


async def test_embed() -> None:
    backend = SimulatorBackend()
    inputs: list[str | list[int]] = ["hello world", "hello world!", [15339, 1917], ""]
    call = EmbedCall(model="text-embedding-3-small", version="1", inputs=inputs, dimensions=1536)
    vectors = await backend.embed(call)
    assert len(vectors) == 4
    for v in vectors:
        assert len(v) == 1536 and all(type(x) is float for x in v)
        assert abs(norm(v) - 1) < 1e-6
    assert vectors == await backend.embed(call)
    assert len({tuple(v) for v in vectors}) == 4
    small = await backend.embed(msgspec.structs.replace(call, dimensions=256))
    assert len(small[0]) == 256 and abs(norm(small[0]) - 1) < 1e-6
    # Matryoshka-like: a short vector is the renormalised prefix of the long one
    prefix = vectors[0][:256]
    assert all(abs(a - b / norm(prefix)) < 1e-9 for a, b in zip(small[0], prefix))
    large = await backend.embed(msgspec.structs.replace(call, model="text-embedding-3-large", dimensions=3072))
    assert len(large[0]) == 3072 and abs(norm(large[0]) - 1) < 1e-6


async def test_close_after_last_delta_is_not_a_cancel() -> None:
    backend = SimulatorBackend()
    call = make_call(n=2, max_tokens=3)
    expected = len(await collect(SimulatorBackend(), call))
    stream = backend.chat_stream(call)
    for _ in range(expected):
        await stream.__anext__()
    await stream.aclose()  # type: ignore[attr-defined]
    assert (backend.stats.streams_cancelled, backend.stats.active_streams) == (0, 0)


def test_identical_calls_reuse_one_plan_and_any_difference_makes_a_new_one() -> None:
    from lapis.backends import simulator

    call = make_call()
    assert simulator._plan(call, 0) is simulator._plan(msgspec.structs.replace(call), 0)
    assert simulator._plan(msgspec.structs.replace(call, max_tokens=3), 0) is not simulator._plan(call, 0)
    assert simulator._plan(call, 1) is not simulator._plan(call, 0)
    for i in range(simulator.PLAN_CACHE_SIZE + 10):  # bounded
        simulator._plan(msgspec.structs.replace(call, seed=i, temperature=1.0), 0)
    assert len(simulator._plans) <= simulator.PLAN_CACHE_SIZE
