"""Circuit breakers shared by every replica through Redis (the rules are in lapis.serving.breaker).

What is shared: whether a member's breaker is open (and until when), half-open,
and who holds the half-open probe slot. Layout: one hash per member,
`{prefix}{member key}` with fields s ("open" | "half"), u (open until, ms),
p (probe lease until, ms); no hash means closed. Each change is ONE atomic Lua
call (EVALSHA, EVAL on NOSCRIPT) that reads Redis's clock (`TIME`), so
replicas agree on time, and the probe slot is taken with a compare-and-set
inside the script: one probe at a time across all replicas. The hash expires
an hour after its open time ends (garbage collection only).

What is not shared: the count of consecutive failures is kept per replica
(a replica opens the breaker for everyone after seeing `policy.failures` in a
row). Sharing it would cost a round trip per successful request.

The hot path: a replica caches what it learnt for `cache_s` (default 1 s):
"closed" is trusted for cache_s, "open" until the open time ends or cache_s,
whichever is first. So a healthy member costs a dict lookup per request and a
round trip per member per second; another replica's decision reaches this one
within cache_s. This replica's own decisions apply to it at once. Concurrent
checks of one member share one round trip.

Failures of Redis never reach the caller: after a refused connection, a reply
slower than `timeout_s` or an error reply, the board uses an in-process
MemoryBreakerBoard for `retry_interval_s` (so the breakers keep working,
per replica), counts `failures` and logs at most once per `log_interval_s`.

Test-only clock: with `clock=` set, the script takes now_ms from it instead of
`TIME` and the cache uses it too; every board sharing the keys must use one clock.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable

from lapis.ratelimit.resp import RespClient, RespError

from .breaker import CLOSED, HALF_OPEN, OPEN, PROBE, BreakerPolicy, MemoryBreakerBoard, new_transitions

__all__ = ["RedisBreakerBoard", "SCRIPT"]

log = logging.getLogger("lapis.serving")

# KEYS: the member's hash. ARGV: op ("check" | "trip" | "close" | "release"),
# now_ms ("" = Redis TIME), ms (check: probe lease; trip: open time), keep_ms,
# force ("1": trip lengthens an open breaker; a retry-after).
# Returns {state (0 closed, 1 open, 2 probe granted), ms that state lasts,
#          transition (0 none, 1 opened, 2 half-opened, 3 closed)}.
SCRIPT = """
local now
if ARGV[2] ~= '' then
  now = tonumber(ARGV[2])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local op, ms, keep = ARGV[1], tonumber(ARGV[3]), tonumber(ARGV[4])
local f = redis.call('HMGET', KEYS[1], 's', 'u', 'p')
local s, u, p = f[1], tonumber(f[2] or '0'), tonumber(f[3] or '0')

if op == 'check' then
  if not s then return {0, 0, 0} end
  local t = 0
  if s == 'open' then
    if now < u then return {1, u - now, 0} end
    redis.call('HSET', KEYS[1], 's', 'half', 'p', 0)
    p, t = 0, 2
  end
  if now < p then return {1, p - now, t} end
  redis.call('HSET', KEYS[1], 'p', now + ms)
  redis.call('PEXPIRE', KEYS[1], ms + keep)
  return {2, ms, t}
elseif op == 'trip' then
  if s == 'open' and now < u then
    if ARGV[5] == '1' and now + ms > u then
      redis.call('HSET', KEYS[1], 'u', now + ms)
      redis.call('PEXPIRE', KEYS[1], ms + keep)
      return {1, ms, 0}
    end
    return {1, u - now, 0}
  end
  redis.call('HSET', KEYS[1], 's', 'open', 'u', now + ms, 'p', 0)
  redis.call('PEXPIRE', KEYS[1], ms + keep)
  return {1, ms, 1}
elseif op == 'close' then
  if s == 'half' or (s == 'open' and now >= u) then
    redis.call('DEL', KEYS[1])
    return {0, 0, 3}
  end
  if s == 'open' then return {1, u - now, 0} end
  return {0, 0, 0}
elseif op == 'release' then
  if s == 'half' then redis.call('HSET', KEYS[1], 'p', 0) end
  return {0, 0, 0}
end
return redis.error_reply('unknown op ' .. op)
"""

_SHA = hashlib.sha1(SCRIPT.encode()).hexdigest()
_TRANSITIONS = (None, "opened", "half_opened", "closed")
_KEEP_MS = 3_600_000


class RedisBreakerBoard:
    """The shared BreakerBoard; see the module docstring."""

    def __init__(self, url: str, policy: BreakerPolicy = BreakerPolicy(), *, prefix: str = "lapis:cb:",
                 cache_s: float = 1.0, timeout_s: float = 0.25, retry_interval_s: float = 1.0,
                 log_interval_s: float = 10.0, clock: Callable[[], float] | None = None) -> None:
        self.policy = policy
        self.prefix = prefix
        self.transitions = new_transitions()
        self.failures = 0  # calls decided without Redis
        self._redis = RespClient.from_url(url, timeout_s=timeout_s)
        self._deadline_s = 2 * timeout_s + 0.05  # connect + read
        self._cache_s = cache_s
        self._script_clock = clock
        self._now = clock or time.monotonic
        self._local = MemoryBreakerBoard(policy, self._now)  # while Redis is unreachable
        self._local.transitions = self.transitions
        self._cache: dict[str, tuple[str, float]] = {}  # key -> (CLOSED | OPEN | HALF_OPEN held here, until)
        self._failed: dict[str, int] = {}  # consecutive failures seen by this replica
        self._inflight: dict[str, asyncio.Task[str]] = {}
        self._retry_interval_s = retry_interval_s
        self._log_interval_s = log_interval_s
        self._down_until = float("-inf")
        self._last_log = float("-inf")

    def healthy(self, key: str) -> bool:
        """A fresh cached "closed" and no failures counted here (or, while Redis
        is down, the local board's answer)."""
        now = self._now()
        if now < self._down_until:
            return self._local.healthy(key)
        entry = self._cache.get(key)
        return entry is not None and entry[0] == CLOSED and now < entry[1] and key not in self._failed

    async def check(self, key: str, lease_s: float) -> str:
        entry = self._cache.get(key)
        if entry is not None and self._now() < entry[1]:
            return OPEN if entry[0] == HALF_OPEN else entry[0]  # HALF_OPEN: our probe is out
        if self._now() < self._down_until:
            return await self._local.check(key, lease_s)
        task = self._inflight.get(key)
        if task is not None:  # someone of ours is asking already: share the answer, not the probe
            state = await asyncio.shield(task)
            return OPEN if state == PROBE else state
        task = asyncio.get_running_loop().create_task(self._check(key, lease_s))
        self._inflight[key] = task
        task.add_done_callback(lambda _: self._inflight.pop(key, None))
        return await asyncio.shield(task)

    async def _check(self, key: str, lease_s: float) -> str:
        reply = await self._run(key, "check", lease_s)
        if reply is None:
            return await self._local.check(key, lease_s)
        state = self._learn(key, reply)
        return PROBE if state == HALF_OPEN else state

    async def record(self, key: str, ok: bool, retry_after: float | None = None) -> None:
        if self._now() < self._down_until:
            await self._local.record(key, ok, retry_after)
            return
        entry = self._cache.get(key)
        if ok:
            if self._failed:
                self._failed.pop(key, None)
            if entry is not None and entry[0] != CLOSED:  # we saw it open or probed it
                await self._call(key, "close", 0, ok, retry_after)
            return
        force = retry_after is not None and retry_after > 0
        count = self._failed.get(key, 0) + 1
        if not force and count < self.policy.failures and (entry is None or entry[0] != HALF_OPEN):
            self._failed[key] = count
            return
        self._failed.pop(key, None)
        await self._call(key, "trip", retry_after if force else self.policy.open_s, ok, retry_after, force)

    async def _call(self, key: str, op: str, seconds: float, ok: bool, retry_after: float | None,
                    force: bool = False) -> None:
        reply = await self._run(key, op, seconds, force)
        if reply is None:
            await self._local.record(key, ok, retry_after)
        else:
            self._learn(key, reply)

    async def release(self, key: str) -> None:
        entry = self._cache.get(key)
        if entry is None or entry[0] != HALF_OPEN:
            await self._local.release(key)
            return
        del self._cache[key]
        await self._run(key, "release", 0)

    async def reset(self) -> None:
        """Forget every breaker, here and in Redis (SCAN the prefix, then DEL)."""
        self._cache.clear()
        self._failed.clear()
        await self._local.reset()
        try:
            cursor = "0"
            while True:
                cursor, keys = await self._redis.call("SCAN", cursor, "MATCH", self.prefix + "*", "COUNT", 500)
                cursor = cursor.decode() if isinstance(cursor, bytes) else str(cursor)
                if keys:
                    await self._redis.call("DEL", *keys)
                if cursor == "0":
                    return
        except Exception as exc:  # noqa: BLE001 - breakers then heal by themselves
            log.warning("could not reset shared breakers (%s: %s)", type(exc).__name__, exc)

    def state(self, key: str) -> str:
        if self._now() < self._down_until:
            return self._local.state(key)
        entry = self._cache.get(key)
        return CLOSED if entry is None else entry[0]

    def _learn(self, key: str, reply: list[int]) -> str:
        """Cache what Redis said; count the transition; the state as cached."""
        code, ms, transition = reply
        name = _TRANSITIONS[transition]
        if name is not None:
            self.transitions[name] += 1
        now = self._now()
        if code == 0:
            state, until = CLOSED, now + self._cache_s
        elif code == 2:
            state, until = HALF_OPEN, now + ms / 1000
        else:
            state, until = OPEN, now + min(ms / 1000, self._cache_s)
        self._cache[key] = (state, until)
        return state

    async def _run(self, key: str, op: str, seconds: float, force: bool = False) -> list[int] | None:
        """One script call; None when Redis failed (counted, logged, and skipped for a while)."""
        now_ms = "" if self._script_clock is None else str(int(self._script_clock() * 1000))
        args = (op, now_ms, max(0, int(seconds * 1000)), _KEEP_MS, "1" if force else "0")
        try:
            async with asyncio.timeout(self._deadline_s):
                try:
                    return await self._redis.call("EVALSHA", _SHA, 1, self.prefix + key, *args)
                except RespError as exc:
                    if not str(exc).startswith("NOSCRIPT"):
                        raise
                    return await self._redis.call("EVAL", SCRIPT, 1, self.prefix + key, *args)
        except Exception as exc:  # noqa: BLE001 - the local board takes over
            self.failures += 1
            self._down_until = self._now() + self._retry_interval_s
            if self._now() - self._last_log >= self._log_interval_s:
                self._last_log = self._now()
                log.warning("breaker store unavailable (%s: %s); breakers are per replica for %.3g s",
                            type(exc).__name__, exc, self._retry_interval_s)
            return None

    async def close(self) -> None:
        for task in list(self._inflight.values()):
            await asyncio.gather(task, return_exceptions=True)
        await self._redis.close()
