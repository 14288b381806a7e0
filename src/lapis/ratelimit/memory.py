"""In-process limiter: exact for one process, about a microsecond per admission.

State is a dict of keys, each holding two short deques of 1-second buckets
(oldest first) with their running sums. Every method runs without awaiting,
so under asyncio each call is atomic: concurrent admissions can never both
see the same room. Memory stays bounded: stale buckets are pruned whenever a
key is touched, and keys idle for more than two windows (by then all their
buckets have left the span, so dropping them changes nothing) are swept
lazily, at most once per sweep interval.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from .base import Decision, Limits, bucket_of, evaluate, parse_ticket

__all__ = ["MemoryLimiter"]

Clock = Callable[[], float]


class _Window:
    """Live buckets of one window: [bucket, count] pairs, oldest first, and their sum."""

    __slots__ = ("buckets", "used")

    def __init__(self) -> None:
        self.buckets: deque[list[int]] = deque()
        self.used = 0

    def prune(self, now_b: int, window_s: int) -> None:
        first = now_b - window_s  # the span is window_s + 1 buckets; see base.py
        buckets = self.buckets
        while buckets and buckets[0][0] < first:
            self.used -= buckets.popleft()[1]

    def add(self, bucket: int, count: int) -> None:
        buckets = self.buckets
        if buckets and buckets[-1][0] == bucket:
            buckets[-1][1] += count
        elif not buckets or buckets[-1][0] < bucket:
            buckets.append([bucket, count])
        else:  # the clock went backwards: keep the deque sorted
            for pair in buckets:
                if pair[0] == bucket:
                    pair[1] += count
                    break
            else:
                buckets.append([bucket, count])
                self.buckets = deque(sorted(buckets))
        self.used += count

    def take(self, bucket: int, count: int) -> None:
        """Give back up to `count` from `bucket` if it is still live; never below 0."""
        for pair in reversed(self.buckets):
            if pair[0] == bucket:
                back = min(count, pair[1])
                pair[1] -= back
                self.used -= back
                return
            if pair[0] < bucket:
                return


class _KeyState:
    __slots__ = ("tokens", "requests", "last_ms", "idle_ms")

    def __init__(self) -> None:
        self.tokens = _Window()
        self.requests = _Window()
        self.last_ms = 0
        self.idle_ms = 0  # drop after this long untouched: two of the longest window


class MemoryLimiter:
    """The in-process `Limiter`; `clock` returns seconds (monotonic by default)."""

    def __init__(self, *, clock: Clock | None = None, sweep_interval_s: float = 60.0) -> None:
        self._clock: Clock = clock or time.monotonic
        self._keys: dict[str, _KeyState] = {}
        self._sweep_ms = int(sweep_interval_s * 1000)
        self._next_sweep = 0
        self.failures = 0  # same attribute as RedisLimiter; memory never fails

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _state(self, key: str, limits: Limits, now_ms: int) -> _KeyState:
        if now_ms >= self._next_sweep:
            self._sweep(now_ms)
        state = self._keys.get(key)
        if state is None:
            state = self._keys[key] = _KeyState()
        now_b = bucket_of(now_ms)
        state.tokens.prune(now_b, limits.token_window_s)
        state.requests.prune(now_b, limits.request_window_s)
        state.last_ms = now_ms
        span = 2000 * max(limits.token_window_s, limits.request_window_s, 1)
        state.idle_ms = max(state.idle_ms, span)
        return state

    def _sweep(self, now_ms: int) -> None:
        idle = [k for k, s in self._keys.items() if now_ms - s.last_ms > s.idle_ms]
        for key in idle:
            del self._keys[key]
        self._next_sweep = now_ms + self._sweep_ms

    def __len__(self) -> int:
        """Keys currently held (for tests and metrics)."""
        return len(self._keys)

    async def admit(self, key: str, limits: Limits, cost: int) -> Decision:
        now_ms = self._now_ms()
        state = self._state(key, limits, now_ms)
        t, r = state.tokens, state.requests
        decision = evaluate(limits, cost, now_ms, t.buckets, t.used, r.buckets, r.used,
                            charge=True)
        if decision.allowed:
            now_b = bucket_of(now_ms)
            if cost > 0:
                t.add(now_b, cost)
            r.add(now_b, 1)
        return decision

    async def refund(self, key: str, limits: Limits, ticket: str, tokens: int) -> None:
        self.refund_now(key, limits, ticket, tokens)

    def refund_now(self, key: str, limits: Limits, ticket: str, tokens: int) -> None:
        """refund() without a task: in-process counters need no waiting (Gate.settle calls this)."""
        parsed = parse_ticket(ticket)
        state = self._keys.get(key)
        if parsed is None or state is None or tokens <= 0:
            return
        bucket, cost = parsed
        now_ms = self._now_ms()
        state.tokens.prune(bucket_of(now_ms), limits.token_window_s)
        state.tokens.take(bucket, min(tokens, cost))

    async def peek(self, key: str, limits: Limits) -> Decision:
        now_ms = self._now_ms()
        state = self._state(key, limits, now_ms)
        t, r = state.tokens, state.requests
        return evaluate(limits, 0, now_ms, t.buckets, t.used, r.buckets, r.used, charge=False)

    async def close(self) -> None:
        self._keys.clear()
