"""Azure-shaped response bodies (§4 of the wire reference). No I/O.

Keys are written in alphabetical order at every level, as in real captures,
except inside prompt_filter_results where prompt_index comes first (also as
captured). Content filtering is not modelled yet: every annotation says safe.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import itertools
import secrets
import struct
import time
from typing import Any, Sequence

import msgspec

from lapis.backends.base import Choice, Delta, ToolCall

SAFE = {"filtered": False, "severity": "safe"}
CHOICE_FILTERS = {"hate": SAFE, "self_harm": SAFE, "sexual": SAFE, "violence": SAFE}
PROMPT_FILTERS = {"hate": SAFE, "jailbreak": {"filtered": False, "detected": False}, "self_harm": SAFE,
                  "sexual": SAFE, "violence": SAFE}


_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# ids need to be unique, not secret: a random prefix per process, then a counter
_PREFIX = "".join(secrets.choice(_BASE62) for _ in range(17))
_counter = itertools.count(secrets.randbits(40))


def new_id(prefix: str) -> str:
    """chatcmpl-<29 base62 characters>, the captured shape: 17 random per
    process, then 12 hex digits of a counter (hex digits are base62 too)."""
    return f"{prefix}{_PREFIX}{next(_counter) & 0xFFFF_FFFF_FFFF:012x}"


@functools.lru_cache(maxsize=256)
def fingerprint(model_id: str) -> str:
    """A stable fp_<10 hex> per model version."""
    return "fp_" + hashlib.sha256(model_id.encode()).hexdigest()[:10]


def prompt_filter_results(count: int = 1) -> list[dict[str, Any]]:
    return [{"prompt_index": i, "content_filter_results": PROMPT_FILTERS} for i in range(count)]


# The constant parts of a whole answer, encoded once: msgspec copies them into
# each answer's JSON as they are (answers are encoded with msgspec only).
_CHOICE_FILTERS_JSON = msgspec.Raw(msgspec.json.encode(CHOICE_FILTERS))
_ONE_PROMPT_FILTERS_JSON = msgspec.Raw(msgspec.json.encode(prompt_filter_results(1)))


def usage(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "completion_tokens": completion,
        "completion_tokens_details": {"accepted_prediction_tokens": 0, "audio_tokens": 0, "reasoning_tokens": 0,
                                      "rejected_prediction_tokens": 0},
        "prompt_tokens": prompt,
        "prompt_tokens_details": {"audio_tokens": 0, "cached_tokens": 0},
        "total_tokens": prompt + completion,
    }


def _tool_calls(calls: Sequence[ToolCall]) -> list[dict[str, Any]]:
    return [{"function": {"arguments": c.arguments, "name": c.name}, "id": c.id, "type": "function"} for c in calls]


def chat_completion(choices: Sequence[Choice], model_id: str, prompt_tokens: int,
                    completion_tokens: int) -> dict[str, Any]:
    out = []
    for choice in choices:
        message: dict[str, Any] = {"annotations": [], "content": choice.content, "refusal": None,
                                   "role": "assistant"}
        if choice.tool_calls:
            message["tool_calls"] = _tool_calls(choice.tool_calls)
        out.append({"content_filter_results": _CHOICE_FILTERS_JSON, "finish_reason": choice.finish_reason,
                    "index": choice.index, "logprobs": None, "message": message})
    return {
        "choices": out,
        "created": int(time.time()),
        "id": new_id("chatcmpl-"),
        "model": model_id,
        "object": "chat.completion",
        "prompt_filter_results": _ONE_PROMPT_FILTERS_JSON,
        "system_fingerprint": fingerprint(model_id),
        "usage": usage(prompt_tokens, completion_tokens),
    }


def text_completion(choices: Sequence[Choice], model_id: str, prompt_tokens: int,
                    completion_tokens: int, prompts: int) -> dict[str, Any]:
    out = [{"content_filter_results": _CHOICE_FILTERS_JSON, "finish_reason": c.finish_reason, "index": c.index,
            "logprobs": None, "text": c.content or ""} for c in choices]
    return {
        "choices": out,
        "created": int(time.time()),
        "id": new_id("cmpl-"),
        "model": model_id,
        "object": "text_completion",
        "prompt_filter_results": prompt_filter_results(prompts),
        "system_fingerprint": None,
        "usage": {"completion_tokens": completion_tokens, "prompt_tokens": prompt_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


class ChunkMaker:
    """Builds the chunks of one chat stream: same id and created on each (§4.2)."""

    def __init__(self, model_id: str, include_usage: bool):
        self.model_id = model_id
        self.id = new_id("chatcmpl-")
        self.created = int(time.time())
        self.fingerprint = fingerprint(model_id)
        self.include_usage = include_usage

    def first(self) -> dict[str, Any]:
        """The empty-choices event carrying prompt_filter_results."""
        return {"choices": [], "created": 0, "id": "", "model": "", "object": "",
                "prompt_filter_results": prompt_filter_results()}

    def _chunk(self, choice: dict[str, Any]) -> dict[str, Any]:
        chunk = {"choices": [choice], "created": self.created, "id": self.id, "model": self.model_id,
                 "object": "chat.completion.chunk", "system_fingerprint": self.fingerprint}
        if self.include_usage:
            chunk["usage"] = None
        return chunk

    def role(self, index: int) -> dict[str, Any]:
        return self._chunk({"content_filter_results": {}, "delta": {"content": "", "refusal": None,
                                                                     "role": "assistant"},
                            "finish_reason": None, "index": index, "logprobs": None})

    def delta(self, d: Delta) -> dict[str, Any]:
        if d.finish_reason is not None:
            return self._chunk({"content_filter_results": {}, "delta": {}, "finish_reason": d.finish_reason,
                                "index": d.index, "logprobs": None})
        delta: dict[str, Any] = {}
        if d.content is not None:
            delta["content"] = d.content
        if d.tool_calls:
            delta["tool_calls"] = [{"function": {"arguments": c.arguments, "name": c.name}, "id": c.id,
                                    "index": i, "type": "function"} for i, c in enumerate(d.tool_calls)]
        return self._chunk({"content_filter_results": CHOICE_FILTERS, "delta": delta, "finish_reason": None,
                            "index": d.index, "logprobs": None})

    def usage(self, prompt: int, completion: int) -> dict[str, Any]:
        return {"choices": [], "created": self.created, "id": self.id, "model": self.model_id,
                "object": "chat.completion.chunk", "system_fingerprint": self.fingerprint,
                "usage": usage(prompt, completion)}


class TextChunkMaker(ChunkMaker):
    """The legacy completions stream: text chunks, no role chunk (Lapis's
    choice of shape: the chat sequence with `text` in place of `delta`)."""

    def __init__(self, model_id: str, include_usage: bool):
        super().__init__(model_id, include_usage)
        self.id = new_id("cmpl-")

    def _text(self, index: int, text: str, finish: str | None, filters: dict[str, Any]) -> dict[str, Any]:
        chunk = {"choices": [{"content_filter_results": filters, "finish_reason": finish, "index": index,
                              "logprobs": None, "text": text}],
                 "created": self.created, "id": self.id, "model": self.model_id, "object": "text_completion"}
        if self.include_usage:
            chunk["usage"] = None
        return chunk

    def role(self, index: int) -> None:  # type: ignore[override]
        return None

    def delta(self, d: Delta) -> dict[str, Any]:
        if d.finish_reason is not None:
            return self._text(d.index, "", d.finish_reason, {})
        return self._text(d.index, d.content or "", None, CHOICE_FILTERS)

    def usage(self, prompt: int, completion: int) -> dict[str, Any]:
        return {"choices": [], "created": self.created, "id": self.id, "model": self.model_id,
                "object": "text_completion",
                "usage": {"completion_tokens": completion, "prompt_tokens": prompt,
                          "total_tokens": prompt + completion}}


def embedding_item(index: int, vector: list[float], base64_format: bool) -> dict[str, Any]:
    if base64_format:
        packed = struct.pack(f"<{len(vector)}f", *vector)
        value: Any = base64.b64encode(packed).decode()
    else:
        value = vector
    return {"embedding": value, "index": index, "object": "embedding"}


def embeddings(items: list[dict[str, Any]], model_id: str, prompt_tokens: int) -> dict[str, Any]:
    return {"data": items, "model": model_id, "object": "list",
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}}
