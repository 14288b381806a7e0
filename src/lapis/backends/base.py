"""The model backend interface: what the data plane asks of any engine.

A backend turns an already-validated request into model output. It knows
nothing of HTTP, Azure ids, content filters or usage accounting: the data
plane wraps its output in Azure's shape. The simulator is the default backend
and the test backend; real engines (vLLM, Ollama, llama.cpp, Azure) plug in
behind the same three methods.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Protocol


@dataclass(frozen=True, slots=True)
class ChatCall:
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


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # a JSON document, as OpenAI sends it


@dataclass(frozen=True, slots=True)
class Choice:
    index: int
    content: str | None
    finish_reason: str  # stop | length | tool_calls
    tool_calls: tuple[ToolCall, ...] = ()


@dataclass(frozen=True, slots=True)
class Delta:
    """One streamed piece of one choice. A final Delta carries finish_reason."""

    index: int
    content: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: str | None = None


@dataclass(frozen=True, slots=True)
class EmbedCall:
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

    async def chat(self, call: ChatCall) -> list[Choice]:
        """Return one Choice per requested completion (call.n of them)."""
        ...

    def chat_stream(self, call: ChatCall) -> AsyncIterator[Delta]:
        """Yield Deltas for every choice, each choice ending with finish_reason.

        The consumer may stop iterating at any time (client gone); the
        backend must then stop generating (close the generator)."""
        ...

    async def embed(self, call: EmbedCall) -> list[list[float]]:
        """Return one vector of call.dimensions floats per input, unit length."""
        ...
