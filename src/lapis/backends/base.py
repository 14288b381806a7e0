"""The model backend interface: what the data plane asks of any engine.

A backend turns an already-validated request into model output. It knows
nothing of HTTP, Azure ids, content filters or usage accounting: the data
plane wraps its output in Azure's shape. The simulator is the default backend
and the test backend; real engines (vLLM, Ollama, llama.cpp, Azure) plug in
behind the same three methods.

The values passed across (ChatCall, Completion, Choice, Delta, ...) are
frozen msgspec Structs: immutable like frozen dataclasses, built several
times faster (a frozen dataclass sets each field through
object.__setattr__; a ChatCall cost 2 us, now 0.4 us, and a stream builds
one Delta per token).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Protocol

import msgspec


class ChatCall(msgspec.Struct, frozen=True):
    """One chat (or legacy completions) request, validated and resolved."""

    model: str  # catalogue model name, e.g. "gpt-4o-mini"
    version: str  # model version, e.g. "2024-07-18"
    messages: list[dict[str, Any]]
    max_tokens: int  # effective cap on completion tokens per choice
    n: int = 1
    stop: tuple[str, ...] = ()
    temperature: float = 1.0
    seed: int | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    tokenizer: str = "o200k_base"  # encoding name used to cap and count tokens
    # Request fields the simulator ignores but a real engine should see
    # (top_p, presence_penalty, logit_bias, user, logprobs, ...), as sent.
    extra: dict[str, Any] = msgspec.field(default_factory=dict)


class ToolCall(msgspec.Struct, frozen=True):
    id: str
    name: str
    arguments: str  # a JSON document, as OpenAI sends it


class Choice(msgspec.Struct, frozen=True):
    index: int
    content: str | None
    finish_reason: str  # stop | length | tool_calls
    tool_calls: tuple[ToolCall, ...] = ()


class Delta(msgspec.Struct, frozen=True):
    """One streamed piece of one choice. A final Delta carries finish_reason."""

    index: int
    content: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: str | None = None


class Usage(msgspec.Struct, frozen=True):
    """Token counts an engine reports. When a backend gives none, the data
    plane counts with the model's tokenizer."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0


class Completion(msgspec.Struct, frozen=True):
    """What chat() returns: one Choice per requested completion, and the
    engine's own usage when it reported one."""

    choices: list[Choice]
    usage: Usage | None = None


class UpstreamError(Exception):
    """A backend failure, classified at the backend boundary so the balancer
    can decide to retry or fail over and the data plane can answer with the
    matching Azure error (lapis.errors.upstream.to_api_error).

    kind:
        rate_limited  the engine answered 429 (retry_after: its advice, seconds)
        unavailable   5xx, or a fault injected as 503 / "down"
        timeout       no answer (or no next chunk) within the deadline
        unreachable   connection refused / reset / DNS: nothing was sent back
        malformed     the engine answered, but not with the protocol we speak
        rejected      the engine refused the request itself (4xx other than
                      429): not retried, passed on as a 400
    """

    RETRYABLE = frozenset({"rate_limited", "unavailable", "timeout", "unreachable"})

    def __init__(self, kind: str, message: str, status: int = 0, retry_after: float | None = None,
                 body: bytes | None = None):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.retry_after = retry_after
        self.body = body

    @property
    def retryable(self) -> bool:
        return self.kind in self.RETRYABLE

    def __repr__(self) -> str:
        return f"UpstreamError({self.kind!r}, {self.message!r}, status={self.status}, retry_after={self.retry_after})"


class EmbedCall(msgspec.Struct, frozen=True):
    model: str
    version: str
    inputs: list[str | list[int]]  # text, or token ids
    dimensions: int  # output size, already checked against the model


@dataclass(slots=True)
class BackendStats:
    """Counters a test or an operator can read to see what a backend did."""

    tokens_generated: int = 0
    active_streams: int = 0
    streams_cancelled: int = 0
    extra: dict[str, int] = field(default_factory=dict)


class Backend(Protocol):
    stats: BackendStats

    async def chat(self, call: ChatCall) -> Completion:
        """Return one Choice per requested completion (call.n of them), and
        the engine's usage if it reports one. Failures raise UpstreamError."""
        ...

    def chat_stream(self, call: ChatCall) -> AsyncIterator[Delta | Usage]:
        """Yield Deltas for every choice, each choice ending with finish_reason,
        and at most one Usage (last) when the engine reports usage.

        The consumer may stop iterating at any time (client gone); the
        backend must then stop generating (close the generator, and for a
        real engine close the upstream connection). Failures raise
        UpstreamError, before the first item or in the middle."""
        ...

    async def embed(self, call: EmbedCall) -> list[list[float]]:
        """Return one vector of call.dimensions floats per input, unit length."""
        ...

    async def close(self) -> None:
        """Release connections (pooled client sessions). Idempotent."""
        ...
