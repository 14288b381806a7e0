"""Fault injection: make a region or one pool member misbehave on purpose.

    board = FaultBoard()
    board.replace([FaultSpec("region", "eastus", rate_429=0.3, retry_after_s=2)])
    backend = board.apply(member)      # member.backend itself, or a FaultyBackend
    board.reset()                      # everything healthy again

A FaultSpec (lapis.serving.specs) applies to a member when its scope and
target match ("member", member.key) or ("region", member.region). When both
match, both apply, the region's outermost (drawn first). Several specs for
the same scope and target: the last one given wins.

What a FaultyBackend does to each call, in this order:

1. `down`: raise UpstreamError("unreachable") at once (connection refused).
2. `hang`: never answer; the caller's deadline ends the call.
3. `latency_ms`: sleep that long before the first byte (answer or error).
4. One draw from the RNG: below rate_429 -> UpstreamError("rate_limited",
   status 429, retry_after=retry_after_s); below rate_429 + rate_503 ->
   UpstreamError("unavailable", status 503). So over many calls the shares
   are the rates, and a seeded RNG makes them exact and repeatable. No draw
   is made when both rates are 0.
5. `cut_after=N` (streams only): after N items the stream raises
   UpstreamError("unreachable", "... cut ...") and the member's generator is
   closed. A stream shorter than N items ends normally. chat() and embed()
   are not cut: a non-streamed answer has no middle to cut.

For streams, steps 1-4 happen when the first item is asked for, which is
when an engine would fail before its first byte.
`stats` counts what was injected, by kind.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, AsyncIterator

from lapis.backends.base import Backend, BackendStats, ChatCall, Completion, Delta, EmbedCall, UpstreamError, Usage

from .specs import FAULT_SCOPES, FaultSpec

if TYPE_CHECKING:
    from .balancer import Member

__all__ = ["FaultBoard", "FaultyBackend", "check_fault"]

Sleep = Callable[[float], Awaitable[object]]


def check_fault(spec: FaultSpec) -> None:
    """Raise ValueError naming the first field of `spec` that makes no sense."""
    if spec.scope not in FAULT_SCOPES:
        raise ValueError(f"scope must be one of {', '.join(FAULT_SCOPES)}, not {spec.scope!r}")
    if not spec.target:
        raise ValueError("target must name a region or a member")
    if not (0.0 <= spec.rate_429 <= 1.0 and 0.0 <= spec.rate_503 <= 1.0):
        raise ValueError("rate_429 and rate_503 must be between 0 and 1")
    if spec.rate_429 + spec.rate_503 > 1.0 + 1e-9:
        raise ValueError("rate_429 + rate_503 must not exceed 1")
    if spec.retry_after_s < 0 or spec.latency_ms < 0:
        raise ValueError("retry_after_s and latency_ms must not be negative")
    if spec.cut_after is not None and spec.cut_after < 0:
        raise ValueError("cut_after must not be negative")


class FaultBoard:
    """The FaultSpecs in force in this process; see the module docstring."""

    def __init__(self, rng: random.Random | None = None, sleep: Sleep = asyncio.sleep) -> None:
        self.rng = rng or random.Random()
        self.sleep = sleep
        self.stats: dict[str, int] = {}
        self._specs: tuple[FaultSpec, ...] = ()
        self._members: dict[str, FaultSpec] = {}
        self._regions: dict[str, FaultSpec] = {}

    @property
    def specs(self) -> tuple[FaultSpec, ...]:
        return self._specs

    def replace(self, specs: Iterable[FaultSpec]) -> None:
        """Put exactly these specs in force (validated first: all or nothing)."""
        specs = tuple(specs)
        for spec in specs:
            check_fault(spec)
        members = {s.target: s for s in specs if s.scope == "member"}
        regions = {s.target: s for s in specs if s.scope == "region"}
        self._specs, self._members, self._regions = specs, members, regions

    def reset(self) -> None:
        self._specs, self._members, self._regions = (), {}, {}

    def apply(self, member: Member) -> Backend:
        """member.backend itself when no fault matches (no allocation), else a FaultyBackend."""
        backend = member.backend
        if self._regions:
            spec = self._regions.get(member.region)
            if spec is not None:
                backend = FaultyBackend(backend, spec, self)
        if self._members:
            spec = self._members.get(member.key)
            if spec is not None:
                backend = FaultyBackend(backend, spec, self)
        return backend

    def count(self, kind: str) -> None:
        self.stats[kind] = self.stats.get(kind, 0) + 1


class FaultyBackend:
    """A Backend that misbehaves as `spec` says, then defers to `inner`."""

    def __init__(self, inner: Backend, spec: FaultSpec, board: FaultBoard) -> None:
        self.inner = inner
        self.spec = spec
        self.board = board

    @property
    def stats(self) -> BackendStats:
        return self.inner.stats

    async def _before_first_byte(self) -> None:
        spec, board = self.spec, self.board
        if spec.down:
            board.count("down")
            raise UpstreamError("unreachable", "connection refused (fault injected: down)")
        if spec.hang:
            board.count("hang")
            await asyncio.get_running_loop().create_future()  # nobody resolves it
        if spec.latency_ms > 0:
            board.count("latency")
            await board.sleep(spec.latency_ms / 1000)
        if spec.rate_429 > 0 or spec.rate_503 > 0:
            draw = board.rng.random()
            if draw < spec.rate_429:
                board.count("rate_limited")
                raise UpstreamError("rate_limited", "too many requests (fault injected)", status=429,
                                    retry_after=spec.retry_after_s)
            if draw < spec.rate_429 + spec.rate_503:
                board.count("unavailable")
                raise UpstreamError("unavailable", "service unavailable (fault injected)", status=503)

    async def chat(self, call: ChatCall) -> Completion:
        await self._before_first_byte()
        return await self.inner.chat(call)

    async def chat_stream(self, call: ChatCall) -> AsyncIterator[Delta | Usage]:
        await self._before_first_byte()
        stream = self.inner.chat_stream(call)
        cut_after = self.spec.cut_after
        sent = 0
        try:
            async for item in stream:
                if cut_after is not None and sent >= cut_after:
                    self.board.count("cut")
                    raise UpstreamError("unreachable", f"stream cut after {sent} items (fault injected)")
                sent += 1
                yield item
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()

    async def embed(self, call: EmbedCall) -> list[list[float]]:
        await self._before_first_byte()
        return await self.inner.embed(call)

    async def close(self) -> None:
        """Nothing to release: the wrapped backend belongs to its member, not to this wrapper."""
        return None
