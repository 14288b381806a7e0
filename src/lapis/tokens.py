"""Tokenizer interface: the one place Lapis touches a BPE library.

Everything else imports `encoding`, `count_text` and `count_chat_prompt` from
here; quicktok (tiktoken-identical ids) stays behind this module.

Encoding is always *ordinary*: text that looks like a special token
("<|endoftext|>") is encoded as plain text and never raises, as the service
does for user content.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Iterable, Sequence


__all__ = [
    "Encoding",
    "encoding",
    "count_text",
    "count_chat_prompt",
    "TOKENS_PER_MESSAGE",
    "TOKENS_PER_NAME",
    "REPLY_PRIMING_TOKENS",
    "TOOLS_OVERHEAD_TOKENS",
    "IMAGE_PART_TOKENS",
]

TOKENS_PER_MESSAGE = 3  # <|start|>{role}<|message|> ... <|end|> framing
TOKENS_PER_NAME = 1  # a "name" field costs one token more than its text
REPLY_PRIMING_TOKENS = 3  # every reply is primed with <|start|>assistant<|message|>
TOOLS_OVERHEAD_TOKENS = 9  # once per request that carries tool definitions
IMAGE_PART_TOKENS = 85  # flat cost of an image part (OpenAI's low-detail price)

# Chat clients send the whole conversation on every turn: the system prompt
# and the earlier messages are counted again and again. Counts of texts up to
# COUNT_CACHE_MAX_CHARS are remembered, COUNT_CACHE_SIZE per encoding, the
# oldest forgotten first (worst case about 16 MB of text). A hit costs a hash
# of the text; a count in the server costs 1-5 us per message (measured).
COUNT_CACHE_SIZE = 8192
COUNT_CACHE_MAX_CHARS = 2048


class Encoding:
    """A named BPE encoding: encode / decode / count."""

    __slots__ = ("name", "_tok", "_counts")

    def __init__(self, name: str) -> None:
        self.name = name
        import quicktok  # loaded with the first vocabulary, not at start-up (it brings numpy)

        self._tok = quicktok.get_encoding(name)
        self._counts: dict[str, int] = {}

    def encode(self, text: str) -> list[int]:
        """Ordinary encoding; special-token-looking text is plain text."""
        return list(self._tok.encode_ordinary(text))

    def decode(self, ids: Sequence[int]) -> str:
        """Decode ids; a UTF-8 character split by the ids decodes as U+FFFD."""
        return self._tok.decode(list(ids))

    def token_bytes(self, token_id: int) -> bytes:
        """The exact bytes of one token (for incremental streaming)."""
        return self._tok.decode_single_token_bytes(token_id)

    def count(self, text: str) -> int:
        """Number of tokens of `text` (same as len(encode(text)))."""
        found = self._counts.get(text)
        if found is not None:
            return found
        if not text:
            return 0
        found = self._tok.count(text)
        if len(text) <= COUNT_CACHE_MAX_CHARS:
            counts = self._counts
            if len(counts) >= COUNT_CACHE_SIZE:
                del counts[next(iter(counts))]
            counts[text] = found
        return found

    def __repr__(self) -> str:
        return f"Encoding({self.name!r})"


_loaded: dict[str, Encoding] = {}
_loading = threading.Lock()


def encoding(name: str) -> Encoding:
    """The encoding called `name` ("o200k_base", "cl100k_base", ...), loaded
    once, on first use (~1 s and 30-60 MB each, so only what is used is
    loaded; a lock keeps two threads from loading the same one).

    Raises ValueError for a name the tokenizer library does not know."""
    found = _loaded.get(name)
    if found is not None:
        return found
    with _loading:
        if name not in _loaded:
            try:
                _loaded[name] = Encoding(name)
            except (KeyError, ValueError, RuntimeError) as exc:
                raise ValueError(f"unknown encoding {name!r}") from exc
        return _loaded[name]


def count_text(text: str, encoding_name: str) -> int:
    """Tokens of a plain text (completions prompts, embeddings inputs)."""
    return encoding(encoding_name).count(text)


def _content_tokens(enc: Encoding, content: Any) -> int:
    if content is None:
        return 0
    if isinstance(content, str):
        return enc.count(content)
    total = 0
    for part in content if isinstance(content, list) else ():
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind == "text" or (kind is None and "text" in part):
            total += enc.count(str(part.get("text") or ""))
        elif kind == "refusal":
            total += enc.count(str(part.get("refusal") or ""))
        elif kind in ("image_url", "input_image", "image"):
            total += IMAGE_PART_TOKENS
    return total


def _tool_calls_tokens(enc: Encoding, message: dict[str, Any]) -> int:
    calls: Iterable[Any] = message.get("tool_calls") or ()
    fn_call = message.get("function_call")  # legacy single call
    if isinstance(fn_call, dict):
        calls = [*calls, {"function": fn_call}]
    total = 0
    for call in calls:
        fn = call.get("function") if isinstance(call, dict) else None
        if isinstance(fn, dict):
            total += enc.count(str(fn.get("name") or ""))
            total += enc.count(str(fn.get("arguments") or ""))
    return total


# Every chat role is one token in both vocabularies (checked in the tests).
_ROLE_TOKENS = {"system": 1, "user": 1, "assistant": 1, "tool": 1, "function": 1, "developer": 1}


def tools_json(tools: list[dict[str, Any]]) -> str:
    """The canonical text of tool definitions that `count_chat_prompt` counts."""
    return json.dumps(tools, separators=(",", ":"), ensure_ascii=False)


def count_chat_prompt(
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None,
    encoding_name: str,
) -> int:
    """Prompt tokens of a chat request, by the OpenAI cookbook rule.

    Rule (gpt-3.5-turbo-0613 and later, gpt-4*, gpt-4o*):
      * every message costs TOKENS_PER_MESSAGE (3);
      * plus the tokens of its "role" and "content". Content may be a string,
        None, or a list of parts: {"type":"text","text":...} counts its text,
        {"type":"refusal"} its refusal text, an image part a flat
        IMAGE_PART_TOKENS (85); other parts count 0;
      * plus the tokens of "name" and TOKENS_PER_NAME (1) if it is present;
      * assistant "tool_calls" (and legacy "function_call") add the tokens of
        each call's function name and arguments text; ids (tool_calls[].id,
        tool_call_id) are not counted - the model never sees them;
      * plus REPLY_PRIMING_TOKENS (3) once for the reply priming;
      * if `tools` is non-empty: plus the tokens of `tools_json(tools)` (the
        list as compact JSON, separators (",", ":"), non-ASCII kept) plus
        TOOLS_OVERHEAD_TOKENS (9) once.
    """
    enc = encoding(encoding_name)
    total = REPLY_PRIMING_TOKENS
    for message in messages:
        total += TOKENS_PER_MESSAGE
        role = message.get("role")
        total += _ROLE_TOKENS.get(role) or enc.count(str(role or ""))
        total += _content_tokens(enc, message.get("content"))
        name = message.get("name")
        if isinstance(name, str):
            total += enc.count(name) + TOKENS_PER_NAME
        total += _tool_calls_tokens(enc, message)
    if tools:
        total += enc.count(tools_json(tools)) + TOOLS_OVERHEAD_TOKENS
    return total
