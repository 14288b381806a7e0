"""The OpenAI chat/embeddings wire format as an engine speaks it. No I/O.

Shared by every HTTP backend (vLLM, Ollama, llama.cpp, LM Studio, OpenAI and
Azure all answer in this shape): request bodies built from a ChatCall, and
answers decoded with msgspec into plain Choice/Delta/Usage values. Anything
that is not the expected shape raises UpstreamError("malformed").

Choices made here:

* Request body: messages, max_tokens, temperature always; n only when above
  1, stop only when given, seed/tools/tool_choice/response_format only when
  set; then call.extra as given. Extra never replaces model, messages,
  stream or stream_options, which belong to the gateway.
* Tool-call arguments sent as a JSON object rather than a string (some
  engines do) are re-encoded as a string; a tool call without an id gets a
  generated `call_...` id, since a client needs one to answer the call.
* An `{"error": ...}` object inside a 200 stream is the engine failing
  mid-generation: UpstreamError("unavailable") with its message.
"""

from __future__ import annotations

import json
import random
from typing import Any

import msgspec

from lapis.backends.base import ChatCall, Choice, Completion, ToolCall, UpstreamError, Usage

__all__ = ["chat_body", "chat_bytes", "embed_body", "parse_completion", "parse_embeddings", "decode_chunk",
           "usage_of", "tool_call", "arguments_text", "Chunk", "ChunkChoice", "ToolFragment"]

_GATEWAY_FIELDS = frozenset(("model", "messages", "stream", "stream_options"))
_INCLUDE_USAGE = {"include_usage": True}  # never mutated
_encode = msgspec.json.encode
_ids = random.Random()
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


class _Details(msgspec.Struct):
    cached_tokens: int | None = None


class WireUsage(msgspec.Struct):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    prompt_tokens_details: _Details | None = None


class _Function(msgspec.Struct):
    name: str | None = None
    arguments: Any = None  # a string as OpenAI sends it; an object from some engines


class ToolFragment(msgspec.Struct):
    """A whole tool call (message.tool_calls) or a streamed piece of one."""

    index: int | None = None
    id: str | None = None
    function: _Function | None = None


class _Message(msgspec.Struct):
    content: str | None = None
    tool_calls: list[ToolFragment] | None = None


class _Choice(msgspec.Struct):
    message: _Message
    index: int = 0
    finish_reason: str | None = None


class _Completion(msgspec.Struct):
    choices: list[_Choice]
    usage: WireUsage | None = None


class _Delta(msgspec.Struct):
    content: str | None = None
    tool_calls: list[ToolFragment] | None = None


class ChunkChoice(msgspec.Struct):
    index: int = 0
    delta: _Delta | None = None
    finish_reason: str | None = None


class Chunk(msgspec.Struct):
    choices: list[ChunkChoice] = []
    usage: WireUsage | None = None
    error: Any = None


class _Vector(msgspec.Struct):
    embedding: list[float]
    index: int = 0


class _Embeddings(msgspec.Struct):
    data: list[_Vector]


_completion = msgspec.json.Decoder(_Completion)
_chunk = msgspec.json.Decoder(Chunk)
_embeddings = msgspec.json.Decoder(_Embeddings)


def chat_body(call: ChatCall, model: str | None, stream: bool) -> dict[str, Any]:
    """The JSON body for POST .../chat/completions (model None: Azure, where the deployment decides)."""
    body: dict[str, Any] = {"messages": call.messages, "max_tokens": call.max_tokens, "temperature": call.temperature}
    if call.n != 1:
        body["n"] = call.n
    if call.stop:
        body["stop"] = list(call.stop)
    if call.seed is not None:
        body["seed"] = call.seed
    if call.tools is not None:
        body["tools"] = call.tools
    if call.tool_choice is not None:
        body["tool_choice"] = call.tool_choice
    if call.response_format is not None:
        body["response_format"] = call.response_format
    if call.extra:
        for name, value in call.extra.items():
            if name not in _GATEWAY_FIELDS:
                body[name] = value
    if model is not None:
        body["model"] = model
    if stream:
        body["stream"] = True
        body["stream_options"] = _INCLUDE_USAGE
    return body


def chat_bytes(call: ChatCall, model: str | None, stream: bool) -> bytes:
    """chat_body, encoded."""
    return _encode(chat_body(call, model, stream))


def embed_body(inputs: list[str | list[int]], model: str | None) -> dict[str, Any]:
    """`dimensions` is never sent: not every engine (nor ada-002) accepts it;
    parse_embeddings shortens instead."""
    body: dict[str, Any] = {"input": inputs, "encoding_format": "float"}
    if model is not None:
        body["model"] = model
    return body


def _malformed(what: str, exc: Exception | None = None) -> UpstreamError:
    detail = f": {exc}" if exc is not None else ""
    return UpstreamError("malformed", f"the engine's {what} is not the OpenAI format{detail}", status=200)


def usage_of(wire: WireUsage) -> Usage:
    details = wire.prompt_tokens_details
    cached = (details.cached_tokens or 0) if details is not None else 0
    return Usage(wire.prompt_tokens, wire.completion_tokens, cached)


def arguments_text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def new_call_id() -> str:
    return "call_" + "".join(_ids.choice(_ALPHABET) for _ in range(24))


def tool_call(call_id: str | None, name: str | None, arguments: str) -> ToolCall:
    return ToolCall(id=call_id or new_call_id(), name=name or "", arguments=arguments)


def parse_completion(raw: bytes) -> Completion:
    try:
        decoded = _completion.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise _malformed("chat completion", exc) from None
    wire = decoded.choices
    if not wire:
        raise _malformed("chat completion (no choices)")
    choices = [_choice(c) for c in wire]
    if len(choices) > 1:
        choices.sort(key=_index)
    usage = decoded.usage
    return Completion(choices, None if usage is None else usage_of(usage))


def _choice(c: _Choice) -> Choice:
    message = c.message
    if not message.tool_calls:
        return Choice(c.index, message.content, c.finish_reason or "stop")
    calls = tuple(tool_call(t.id, t.function.name if t.function else None,
                            arguments_text(t.function.arguments if t.function else None))
                  for t in message.tool_calls)
    return Choice(c.index, message.content, c.finish_reason or "tool_calls", calls)


def _index(choice: Choice) -> int:
    return choice.index


def decode_chunk(payload: bytes) -> Chunk:
    try:
        chunk = _chunk.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise _malformed("stream chunk", exc) from None
    if chunk.error is not None:
        raise UpstreamError("unavailable", "the engine failed mid-stream: " + _error_text(chunk.error))
    return chunk


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error)


def parse_embeddings(raw: bytes, count: int, dimensions: int) -> list[list[float]]:
    """One vector per input, in input order, of `dimensions` floats. A longer
    vector is cut and renormalised (what `dimensions` does on the service for
    text-embedding-3); a shorter one cannot be made up."""
    try:
        decoded = _embeddings.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise _malformed("embeddings answer", exc) from None
    vectors = sorted(decoded.data, key=lambda v: v.index)
    if len(vectors) != count or [v.index for v in vectors] != list(range(count)):
        raise _malformed(f"embeddings answer ({len(vectors)} vectors for {count} inputs)")
    out = []
    for item in vectors:
        vector = item.embedding
        if len(vector) < dimensions:
            raise _malformed(f"embeddings answer ({len(vector)} dimensions, {dimensions} needed)")
        if len(vector) > dimensions:
            vector = vector[:dimensions]
            norm = sum(x * x for x in vector) ** 0.5 or 1.0
            vector = [x / norm for x in vector]
        out.append(vector)
    return out
