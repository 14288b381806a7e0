"""Circuit breakers, one per pool member: stop sending traffic to a member that keeps failing.

    board = open_breakers(settings.redis_url, BreakerPolicy(failures=5, open_s=30.0))
    state = await board.check(member.key, lease_s)   # "closed" | "probe" | "open"
    ...                                              # call the member unless "open"
    await board.record(member.key, ok, retry_after=exc.retry_after)
    board.healthy(member.key)                        # no I/O: check would say "closed", record(ok) do nothing

The rules (both boards apply them; the shared tests keep them equal):

* **closed**: traffic flows; consecutive failures are counted and a success
  resets the count. `policy.failures` of them in a row open the breaker for
  `policy.open_s`.
* **A 429 carrying retry-after** (`record(key, False, retry_after=s)`, s > 0)
  opens the breaker at once for exactly s, whatever the count; while already
  open it only ever lengthens the open time. The member said when to come
  back, so nobody calls it earlier.
* **open**: `check` answers "open" until the open time ends; then the breaker
  is **half-open** and the next `check` answers "probe": that caller, and only
  it, may call the member. The probe slot is leased for `lease_s` (the
  balancer passes the attempt's own timeout), so a caller that vanishes
  without reporting frees it when the lease ends; `release` frees it at once
  (the balancer releases a probe it did not use). Other callers get "open"
  while the lease runs.
* **half-open**: a success closes the breaker; a failure opens it again for
  `policy.open_s` (or the retry-after). A success reported while the breaker
  is open is ignored (it is a request that started before it opened).
* `transitions` counts "opened", "half_opened" and "closed" as this process
  saw them (Balancer.stats exposes it).

`healthy(key)` is the hot path's shortcut: True when, as this process knows
without any I/O, check() would answer "closed" and record(key, True) would
change nothing (a closed breaker with no failures counted). The balancer then
awaits neither.

The memory board keeps state per process; the check of a healthy member is a
single dict lookup (members are in the dict only while they have failures).
`RedisBreakerBoard` (lapis.serving.breaker_redis) shares the open/half-open
state and the probe slot across replicas.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

__all__ = ["CLOSED", "OPEN", "PROBE", "HALF_OPEN", "BreakerPolicy", "BreakerBoard", "MemoryBreakerBoard",
           "open_breakers", "new_transitions"]

CLOSED = "closed"  # check(): go ahead; state(): healthy
OPEN = "open"  # check(): skip this member; state(): open
PROBE = "probe"  # check(): go ahead, you are the one probe of a half-open breaker
HALF_OPEN = "half_open"  # state() only


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    failures: int = 5  # consecutive failures that open a closed breaker
    open_s: float = 30.0  # how long it stays open (unless a retry-after says otherwise)

    def __post_init__(self) -> None:
        if self.failures < 1 or self.open_s < 0:
            raise ValueError("BreakerPolicy needs failures >= 1 and open_s >= 0")


class BreakerBoard(Protocol):
    transitions: dict[str, int]

    async def check(self, key: str, lease_s: float) -> str:
        """CLOSED or PROBE: call the member (PROBE: you hold the half-open
        probe slot for lease_s seconds); OPEN: skip it."""
        ...

    async def record(self, key: str, ok: bool, retry_after: float | None = None) -> None:
        """The outcome of a call: ok, or a failure (retry_after: the member's
        429 advice in seconds, which opens the breaker for that long)."""
        ...

    async def release(self, key: str) -> None:
        """Give back a probe slot obtained from check() without calling the member."""
        ...

    def healthy(self, key: str) -> bool:
        """True when check() would answer CLOSED and record(key, True) would
        change nothing, known without I/O (False when unsure)."""
        ...

    def state(self, key: str) -> str:
        """CLOSED, OPEN or HALF_OPEN as this process knows it (diagnostics)."""
        ...

    async def close(self) -> None:
        ...


def new_transitions() -> dict[str, int]:
    return {"opened": 0, "half_opened": 0, "closed": 0}


class _Breaker:
    __slots__ = ("failures", "state", "until", "probe_until")

    def __init__(self) -> None:
        self.failures = 0
        self.state = CLOSED  # CLOSED (counting), OPEN or HALF_OPEN
        self.until = 0.0  # OPEN: when it half-opens
        self.probe_until = 0.0  # HALF_OPEN: when the probe lease ends


class MemoryBreakerBoard:
    """Breakers of one process; see the module docstring."""

    def __init__(self, policy: BreakerPolicy = BreakerPolicy(),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self.transitions = new_transitions()
        self._clock = clock
        self._breakers: dict[str, _Breaker] = {}  # only members with failures or not closed

    def healthy(self, key: str) -> bool:
        return key not in self._breakers

    async def check(self, key: str, lease_s: float) -> str:
        b = self._breakers.get(key)
        if b is None or b.state == CLOSED:
            return CLOSED
        now = self._clock()
        if b.state == OPEN:
            if now < b.until:
                return OPEN
            b.state = HALF_OPEN
            b.probe_until = 0.0
            self.transitions["half_opened"] += 1
        elif now < b.probe_until:
            return OPEN  # someone else is probing
        b.probe_until = now + lease_s
        return PROBE

    async def record(self, key: str, ok: bool, retry_after: float | None = None) -> None:
        b = self._breakers.get(key)
        if ok:
            if b is None:
                return
            if b.state == OPEN and self._clock() < b.until:
                return  # a call that started before the breaker opened
            if b.state != CLOSED:
                self.transitions["closed"] += 1
            del self._breakers[key]
            return
        if b is None:
            b = self._breakers[key] = _Breaker()
        now = self._clock()
        if retry_after is not None and retry_after > 0:
            self._trip(b, now, retry_after)
        elif b.state == HALF_OPEN or (b.state == OPEN and now >= b.until):
            self._trip(b, now, self.policy.open_s)
        elif b.state == CLOSED:
            b.failures += 1
            if b.failures >= self.policy.failures:
                self._trip(b, now, self.policy.open_s)

    def _trip(self, b: _Breaker, now: float, open_s: float) -> None:
        if b.state == OPEN and now < b.until:
            b.until = max(b.until, now + open_s)  # only a retry-after gets here: lengthen, never shorten
            return
        b.state, b.until, b.failures, b.probe_until = OPEN, now + open_s, 0, 0.0
        self.transitions["opened"] += 1

    async def release(self, key: str) -> None:
        b = self._breakers.get(key)
        if b is not None and b.state == HALF_OPEN:
            b.probe_until = 0.0

    async def reset(self) -> None:
        """Forget every breaker (the fault set changed: what injected faults
        opened must not outlive them)."""
        self._breakers.clear()

    def state(self, key: str) -> str:
        b = self._breakers.get(key)
        if b is None or b.state == CLOSED:
            return CLOSED
        if b.state == OPEN and self._clock() < b.until:
            return OPEN
        return HALF_OPEN

    async def close(self) -> None:
        return None


def open_breakers(url: str | None, policy: BreakerPolicy = BreakerPolicy(), *,
                  prefix: str = "lapis:cb:", clock: Callable[[], float] | None = None) -> BreakerBoard:
    """The board for `url`: none, "" or "memory://" keeps state in this
    process; "redis://" shares it across replicas (lapis.serving.breaker_redis)."""
    if not url or url == "memory://":
        return MemoryBreakerBoard(policy, clock or time.monotonic)
    if url.startswith("redis://"):
        from .breaker_redis import RedisBreakerBoard

        return RedisBreakerBoard(url, policy, prefix=prefix, clock=clock)
    raise ValueError(f"unsupported breaker store URL {url!r} (use memory:// or redis://)")
