"""The simulator backend: deterministic, fast, token-exact fake model output.

Rules:

* Every choice draws from its own RNG, seeded by sha256 of the JSON (sort_keys)
  of {messages, model, seed, temperature, index}. At temperature 0 the seed is
  left out, so the text does not depend on it; a higher temperature widens the
  vocabulary (see wordgen). seed=None is a value like any other: the simulator
  is deterministic even then.
* Text is whole English-like sentences of at least rng.randint(12, 60) tokens.
  It is cut at the first occurrence of any stop sequence (finish "stop"), then
  capped to max_tokens tokens of call.tokenizer (finish "length").
* tool_choice "required" (first tool) or {"type":"function","function":
  {"name":..}} forces one tool call: content None, finish "tool_calls",
  arguments = json.dumps(instance_for(parameters)); arguments are not capped.
  "auto", "none" and None never call a tool.
* response_format json_object -> a small JSON object; json_schema -> an
  instance of the schema. Both are capped by max_tokens like text.
* Streaming yields one Delta per token (decoded byte-exactly, so the pieces
  join to the chat() content), a tool call as one Delta, and a final
  Delta(finish_reason) per choice; choices one after another.
* stats.tokens_generated counts completion tokens (content tokens, or the
  tokens of a tool call's arguments); stats.streams_cancelled counts streams
  closed or cancelled before their last Delta was delivered.
"""

from __future__ import annotations

import asyncio
import codecs
import hashlib
import json
import random
from dataclasses import dataclass
from typing import Any, AsyncIterator

import msgspec

from lapis import tokens
from lapis.backends import wordgen
from lapis.backends.base import BackendStats, ChatCall, Choice, Completion, Delta, EmbedCall, ToolCall
from lapis.backends.schema_instance import instance_for

__all__ = ["SimulatorBackend"]

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
MIN_TEXT_TOKENS, MAX_TEXT_TOKENS = 12, 60


@dataclass(frozen=True, slots=True)
class _Plan:
    """One choice, fully decided before anything is returned or streamed."""

    choice: Choice
    ids: tuple[int, ...]  # token ids of choice.content (what the stream sends)
    generated: int  # completion tokens for stats


def _material(call: ChatCall, index: int) -> bytes:
    """What a choice's RNG is seeded from (see the module docstring)."""
    temperature = float(call.temperature)
    return msgspec.json.encode(
        {
            "messages": call.messages,
            "model": call.model,
            "seed": None if temperature == 0 else call.seed,
            "temperature": temperature,
            "index": index,
        },
        order="sorted",
    )


def _rng(call: ChatCall, index: int, material: bytes | None = None) -> random.Random:
    material = _material(call, index) if material is None else material
    return random.Random(int.from_bytes(hashlib.sha256(material).digest()[:16], "big"))


def _forced_function(call: ChatCall) -> dict[str, Any] | None:
    """The function definition the model must call, or None."""
    if not call.tools or call.tool_choice in (None, "auto", "none"):
        return None
    functions = [t.get("function") or {} for t in call.tools if t.get("type", "function") == "function"]
    if call.tool_choice == "required":
        return functions[0] if functions else None
    if isinstance(call.tool_choice, dict):
        name = (call.tool_choice.get("function") or {}).get("name")
        return next((f for f in functions if f.get("name") == name), {"name": name})
    return None


def _content(call: ChatCall, rng: random.Random, enc: tokens.Encoding) -> str:
    response_format = call.response_format or {}
    kind = response_format.get("type")
    if kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema") or {}
        return json.dumps(instance_for(schema, rng))
    if kind == "json_object":
        return json.dumps({"answer": wordgen.sentence(rng, call.temperature), "score": round(rng.random(), 2)})
    # Generate no more than the cap needs: a smaller max_tokens sees a prefix
    # of the same sentences (the RNG draws them in the same order).
    target = min(rng.randint(MIN_TEXT_TOKENS, MAX_TEXT_TOKENS), max(call.max_tokens, 0) + 1)
    return wordgen.paragraph(rng, call.temperature, target, enc.count)


# A plan is a pure function of the call, so identical calls (retries, test
# suites, load tests) reuse it: a bounded cache, oldest entry out first.
PLAN_CACHE_SIZE = 1024
_plans: dict[tuple[Any, ...], _Plan] = {}


def _plan(call: ChatCall, index: int) -> _Plan:
    material = _material(call, index)
    shaped = (msgspec.json.encode([call.tools, call.tool_choice, call.response_format])
              if call.tools or call.tool_choice or call.response_format else b"")
    key = (material, shaped, call.max_tokens, call.stop, call.tokenizer)
    plan = _plans.get(key)
    if plan is None:
        plan = _make_plan(call, index, material)
        if len(_plans) >= PLAN_CACHE_SIZE:
            del _plans[next(iter(_plans))]
        _plans[key] = plan
    return plan


def _make_plan(call: ChatCall, index: int, material: bytes) -> _Plan:
    rng = _rng(call, index, material)
    enc = tokens.encoding(call.tokenizer)
    function = _forced_function(call)
    if function is not None:
        call_id = "call_" + "".join(rng.choice(_BASE62) for _ in range(24))
        arguments = json.dumps(instance_for(function.get("parameters") or {}, rng))
        tool_call = ToolCall(id=call_id, name=str(function.get("name") or ""), arguments=arguments)
        choice = Choice(index=index, content=None, finish_reason="tool_calls", tool_calls=(tool_call,))
        return _Plan(choice, (), enc.count(arguments))
    text = _content(call, rng, enc)
    finish = "stop"
    cuts = [text.find(s) for s in call.stop if s and s in text]
    if cuts:
        text = text[: min(cuts)]
    ids = enc.encode(text)
    if len(ids) > max(call.max_tokens, 0):
        ids = ids[: max(call.max_tokens, 0)]
        text, finish = enc.decode(ids), "length"
    return _Plan(Choice(index=index, content=text, finish_reason=finish), tuple(ids), len(ids))


def _embedding(model: str, item: str | list[int], dimensions: int) -> list[float]:
    key = "text:" + item if isinstance(item, str) else "tokens:" + json.dumps(list(item))
    seed = int.from_bytes(hashlib.sha256(f"{model}\n{key}".encode()).digest()[:8], "big")
    # Draws are sequential, so a shorter vector is the prefix of the longer
    # one, renormalised: Matryoshka-like, as `dimensions` is on the service.
    import numpy as np  # only embeddings need it: kept off the start-up path

    vector = np.random.default_rng(seed).standard_normal(dimensions)
    return (vector / np.linalg.norm(vector)).tolist()


class SimulatorBackend:
    """A Backend that invents plausible output; see the module docstring."""

    def __init__(self, ttft_ms: float = 0.0, token_ms: float = 0.0) -> None:
        self.ttft_ms = ttft_ms
        self.token_ms = token_ms
        self.stats = BackendStats()

    async def chat(self, call: ChatCall) -> Completion:
        plans = [_plan(call, i) for i in range(call.n)]
        generated = sum(p.generated for p in plans)
        delay_ms = self.ttft_ms + self.token_ms * generated
        if delay_ms > 0:
            await asyncio.sleep(delay_ms / 1000)
        self.stats.tokens_generated += generated
        return Completion([p.choice for p in plans])

    async def chat_stream(self, call: ChatCall) -> AsyncIterator[Delta]:
        plans = [_plan(call, i) for i in range(call.n)]
        enc = tokens.encoding(call.tokenizer)
        self.stats.active_streams += 1
        first, delivered = True, False
        try:
            for plan in plans:
                index = plan.choice.index
                for delta, count in self._pieces(plan, enc):
                    await self._pace(first)
                    first = False
                    self.stats.tokens_generated += count
                    yield delta
                if first:  # nothing generated at all: still wait for the first byte
                    await self._pace(True)
                    first = False
                delivered = plan is plans[-1]  # closing after the last Delta is no cancel
                yield Delta(index=index, finish_reason=plan.choice.finish_reason)
        except (GeneratorExit, asyncio.CancelledError):
            if not delivered:
                self.stats.streams_cancelled += 1
            raise
        finally:
            self.stats.active_streams -= 1

    @staticmethod
    def _pieces(plan: _Plan, enc: tokens.Encoding) -> list[tuple[Delta, int]]:
        """(delta, tokens it carries) for one choice, finish Delta excluded."""
        index = plan.choice.index
        if plan.choice.tool_calls:
            return [(Delta(index=index, tool_calls=plan.choice.tool_calls), plan.generated)]
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pieces: list[tuple[Delta, int]] = []
        pending = 0  # tokens whose bytes did not yet complete a character
        for token_id in plan.ids:
            text = decoder.decode(enc.token_bytes(token_id))
            pending += 1
            if text:
                pieces.append((Delta(index=index, content=text), pending))
                pending = 0
        tail = decoder.decode(b"", final=True)
        if tail or pending:
            pieces.append((Delta(index=index, content=tail), pending))
        return pieces

    async def _pace(self, first: bool) -> None:
        delay_ms = self.ttft_ms if first else self.token_ms
        if delay_ms > 0:
            await asyncio.sleep(delay_ms / 1000)

    async def close(self) -> None:
        return None

    async def embed(self, call: EmbedCall) -> list[list[float]]:
        self.stats.extra["embedded_inputs"] = self.stats.extra.get("embedded_inputs", 0) + len(call.inputs)
        return [_embedding(call.model, item, call.dimensions) for item in call.inputs]
