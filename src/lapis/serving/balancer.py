"""The balancer: the one place where Lapis retries and fails over, around the backend call.

    balancer = Balancer(breakers, faults)
    completion, member = await balancer.chat(members, call, deadline)
    stream, member = await balancer.chat_stream(members, call, deadline)

Rules:

* **Order.** Members are grouped by priority, lowest number first. Within a
  priority one is drawn at random in proportion to its weight (weight 0:
  only after the others of its priority); on a retryable failure the next is
  drawn from the rest of that priority, then the next priority is tried. So
  a higher number only gets traffic when every lower one failed or is open.
* **Breakers.** A member whose breaker is open is skipped (lapis.serving.breaker).
  Every outcome is recorded: retryable failures and malformed answers as
  failures (a 429's retry-after opens the breaker for that long), successes
  and rejections (the engine answered) as successes. A stream is a success
  at its first item; an error in its middle is recorded as a failure.
* **Failover** happens on the retryable kinds (rate_limited, unavailable,
  timeout, unreachable) before the first byte. A stream's first item is
  pulled before chat_stream returns; after it nothing is ever replayed:
  later errors reach the caller. `malformed` and `rejected` are raised at once.
* **Member admission.** `Member.admit` (e.g. the member deployment's own
  quota) runs after the breaker check; an UpstreamError from it skips the
  member (rate_limited does not count against its breaker).
* **Deadline.** `deadline` is absolute, on the balancer's clock. Each attempt
  waits at most min(policy.attempt_timeout_s, time left) for its answer (a
  stream: for its first item); then it is UpstreamError("timeout") and the
  next member is tried if time is left. After the first item of a stream the
  backend's own read timeout applies. The wait is timed on a SharedTimer
  (lapis.serving.timer: asyncio.timeout's contract on one loop timer, up to
  one grain late, 80 ms for 60 s). A backend whose `deadline_s` attribute
  says its chat() and embed() calls end by themselves within that many
  seconds (an HTTP backend: its spec's timeout_s) is not timed again when
  deadline_s is not longer than the attempt's timeout: its own timeout, an
  UpstreamError("timeout"), ends the attempt and is handled the same way.
* **Rounds.** When every member failed or was skipped, the balancer waits and
  tries a new round, up to policy.max_attempts rounds: the wait is full
  jitter, uniform(0, min(max_delay, base_delay * 2**(round - 1))), and at
  least the smallest retry-after of the round when every failure of the
  round carried one. It stops instead when the wait would reach the
  deadline, or when no member could be called at all (every breaker open).
* **The error raised** at the end: rate_limited with the smallest
  retry-after when every failure of the last round was a 429; "unavailable"
  (status 503) when every breaker was open; "timeout" when the deadline left
  no time to try anyone; otherwise the last failure.

The common case costs no await besides the call itself: a member whose
breaker the board knows, without I/O, to be closed and clean
(BreakerBoard.healthy) is neither checked nor recorded on success, and a
member without faults is called as it is (FaultBoard.apply).

`stats` (BalancerStats) counts attempts, failovers, retries (new rounds),
members skipped for an open breaker, failures by kind, and the breaker
board's transitions, for the metrics exporter.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from lapis.backends.base import Backend, ChatCall, Completion, Delta, EmbedCall, UpstreamError, Usage

from .breaker import CLOSED, OPEN, PROBE, BreakerBoard
from .faults import FaultBoard
from .timer import SharedTimer

__all__ = ["Balancer", "BalancerStats", "Member", "RetryPolicy"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Member:
    key: str  # stable id for breaker state and member faults, e.g. "backend:vllm-1", "sim:eastus"
    name: str  # what x-ms-deployment-name says when this member serves
    region: str  # location that serves (region faults, residency)
    backend: Backend
    priority: int = 1  # lower is tried first
    weight: int = 1  # share of traffic within its priority
    admit: Callable[[], Awaitable[None]] | None = None  # raises UpstreamError to skip this member

    def __post_init__(self) -> None:
        if self.weight < 0:
            raise ValueError(f"member {self.key}: weight must not be negative")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 3  # rounds over the members (1 = fail over, never wait and retry)
    base_delay: float = 0.25  # seconds; the first wait is uniform(0, base_delay)
    max_delay: float = 4.0  # cap of the jittered wait
    attempt_timeout_s: float = 60.0  # longest wait for one member's answer (or first item)

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.base_delay < 0 or self.max_delay < 0 or self.attempt_timeout_s <= 0:
            raise ValueError("RetryPolicy needs max_attempts >= 1, delays >= 0 and attempt_timeout_s > 0")


@dataclass(slots=True)
class BalancerStats:
    attempts: int = 0  # calls made to members
    failovers: int = 0  # calls made to another member right after a failure, in one round
    retries: int = 0  # rounds started after a wait
    skipped_open: int = 0  # members skipped because their breaker was open
    failures: dict[str, int] = field(default_factory=dict)  # by UpstreamError kind
    breaker: dict[str, int] = field(default_factory=dict)  # the board's transitions: opened, half_opened, closed


class Balancer:
    """Chooses, calls, retries and fails over; see the module docstring."""

    def __init__(self, breakers: BreakerBoard, faults: FaultBoard, policy: RetryPolicy = RetryPolicy(),
                 rng: random.Random | None = None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:
        self.breakers = breakers
        self.faults = faults
        self.policy = policy
        self.rng = rng or random.Random()
        self.clock = clock
        self.sleep = sleep
        self.stats = BalancerStats(breaker=breakers.transitions)
        self.timer = SharedTimer()

    async def chat(self, members: Sequence[Member], call: ChatCall, deadline: float) -> tuple[Completion, Member]:
        return await self._serve(members, deadline, lambda backend: backend.chat(call), True)

    async def embed(self, members: Sequence[Member], call: EmbedCall,
                    deadline: float) -> tuple[list[list[float]], Member]:
        return await self._serve(members, deadline, lambda backend: backend.embed(call), True)

    async def chat_stream(self, members: Sequence[Member], call: ChatCall,
                          deadline: float) -> tuple[AsyncIterator[Delta | Usage], Member]:
        """The stream of the first member that yields a first item. The caller
        should aclose() the returned iterator when it stops early: that closes
        the member's generator."""
        # False: a backend's own deadlines do not bound the wait for a stream's first item.
        (stream, first), member = await self._serve(members, deadline, lambda backend: _first(backend, call), False)
        return self._relay(stream, first, member), member

    async def _relay(self, stream: AsyncIterator[Delta | Usage], first: Any,
                     member: Member) -> AsyncIterator[Delta | Usage]:
        try:
            yield first
            async for item in stream:
                yield item
        except UpstreamError as exc:  # mid-stream: recorded, passed on, never replayed
            self._count(exc)
            if exc.kind != "rejected":
                await self.breakers.record(member.key, False, _retry_after(exc))
            raise
        finally:
            await _aclose(stream)

    async def _serve(self, members: Sequence[Member], deadline: float,
                     attempt: Callable[[Backend], Awaitable[T]], bounded: bool) -> tuple[T, Member]:
        """`bounded`: a backend's deadline_s bounds this kind of attempt (see the module docstring)."""
        if not members:
            raise UpstreamError("unavailable", "no member can serve this deployment", status=503)
        tiers = _tiers(members)
        policy, breakers, stats = self.policy, self.breakers, self.stats
        last: list[UpstreamError] = []  # failures of the latest round that had any
        for round_no in range(1, policy.max_attempts + 1):
            failures: list[UpstreamError] = []
            for tier in tiers:
                left = list(tier)
                while left:
                    member = self._draw(left)
                    remaining = deadline - self.clock()
                    if remaining <= 0:
                        raise _final(failures or last)
                    timeout = min(remaining, policy.attempt_timeout_s)
                    key = member.key
                    state = CLOSED if breakers.healthy(key) else await breakers.check(key, timeout)
                    if state == OPEN:
                        stats.skipped_open += 1
                        continue
                    if member.admit is not None:
                        try:
                            await member.admit()
                        except UpstreamError as exc:
                            if state == PROBE:
                                await breakers.release(key)
                            if not exc.retryable:
                                raise
                            failures.append(exc)
                            continue
                    if failures:
                        stats.failovers += 1
                    stats.attempts += 1
                    backend = self.faults.apply(member)
                    own = getattr(backend, "deadline_s", None) if bounded else None
                    try:
                        if own is not None and own <= timeout:
                            result = await attempt(backend)  # the backend's own timer ends it in time
                        else:
                            with self.timer.timeout(timeout):
                                result = await attempt(backend)
                    except TimeoutError:
                        exc = UpstreamError("timeout", f"{member.name} did not answer within {timeout:.3g} s")
                    except UpstreamError as caught:
                        exc = caught
                    else:
                        if state != CLOSED or not breakers.healthy(key):
                            await breakers.record(key, True)
                        return result, member
                    self._count(exc)
                    await breakers.record(key, exc.kind == "rejected", _retry_after(exc))
                    if not exc.retryable:
                        raise exc
                    failures.append(exc)
            if not failures:
                raise UpstreamError("unavailable", "every member's circuit breaker is open", status=503)
            last = failures
            if round_no == policy.max_attempts:
                break
            delay = self.rng.uniform(0, min(policy.max_delay, policy.base_delay * 2 ** (round_no - 1)))
            advised = [f.retry_after for f in failures]
            if all(a is not None for a in advised):
                delay = max(delay, min(advised))  # type: ignore[type-var]
            if self.clock() + delay >= deadline:
                break
            await self.sleep(delay)
            stats.retries += 1
        raise _final(last)

    def _draw(self, left: list[Member]) -> Member:
        """Take one member out of `left`, chosen in proportion to weight."""
        if len(left) == 1:
            return left.pop()
        total = sum(m.weight for m in left)
        if total <= 0:
            return left.pop(int(self.rng.random() * len(left)))
        point = self.rng.random() * total
        for i, m in enumerate(left):
            point -= m.weight
            if point < 0:
                return left.pop(i)
        return left.pop()  # rounding at the very top: the last one with weight

    def _count(self, exc: UpstreamError) -> None:
        self.stats.failures[exc.kind] = self.stats.failures.get(exc.kind, 0) + 1


def _tiers(members: Sequence[Member]) -> list[list[Member]]:
    if len(members) == 1:
        return [[members[0]]]
    tiers: dict[int, list[Member]] = {}
    for m in members:
        tiers.setdefault(m.priority, []).append(m)
    return [tiers[p] for p in sorted(tiers)]


def _retry_after(exc: UpstreamError) -> float | None:
    return exc.retry_after if exc.kind == "rate_limited" else None


def _final(failures: list[UpstreamError]) -> UpstreamError:
    if not failures:
        return UpstreamError("timeout", "the deadline passed before any member could be tried")
    if all(f.kind == "rate_limited" for f in failures):
        advised = [f for f in failures if f.retry_after is not None]
        return min(advised, key=lambda f: f.retry_after or 0.0) if advised else failures[-1]
    return failures[-1]


async def _first(backend: Backend, call: ChatCall) -> tuple[AsyncIterator[Delta | Usage], Any]:
    """Open the stream and pull its first item (a failure here can still fail over)."""
    stream = backend.chat_stream(call)
    try:
        first = await stream.__anext__()
    except StopAsyncIteration:
        raise UpstreamError("malformed", "the stream ended before its first item") from None
    except BaseException:
        await _aclose(stream)
        raise
    return stream, first


async def _aclose(stream: AsyncIterator[Any]) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()
