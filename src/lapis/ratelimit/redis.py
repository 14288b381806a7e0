"""Redis limiter: the rules of `base.py`, shared by every replica, one round trip each.

Layout: per key, one hash per window, `{prefix}{key}:t` (tokens) and
`{prefix}{key}:r` (requests); fields are bucket seconds, values counts. Each
admission is ONE atomic Lua call (EVALSHA; on NOSCRIPT the same call is
retried once as EVAL, which also caches the script) that reads Redis's own
clock (`TIME`, so replicas agree), deletes stale fields, decides, charges on
admission and PEXPIREs both hashes to window + 2 s. Refunds are batched: the
refunds that arrive within `refund_batch_s` (default 20 ms) go to Redis in one
pipelined round trip, and each caller's `await refund()` returns once its
batch is applied (the Gate awaits it off the hot path).
(For Redis Cluster the two keys would need a hash tag; Lapis targets one node.)

Test-only clock: with `clock=` set, the script receives now_ms in ARGV and uses
it instead of `TIME`, so the shared suite moves time for both backends alike.
Never set it in production; every instance sharing the keys must use one clock.

Failures never reach the caller: a connect or read above `timeout_s` (default
0.25 s), a refused connection or any Redis error yields a `degraded=True`
Decision per `failure_mode` ("open": allowed, remaining = the full limits;
"closed": denied, limited_by "requests", retry after 1 s). `failures`
counts the calls decided without Redis; a warning is logged at most once per
`log_interval_s`. After a failure Redis is not tried again
for `retry_interval_s`, so a dead Redis costs no latency per request.
Commands go over one pipelined connection (lapis.ratelimit.resp; redis-py
cost ~200 us of CPU per call here). At most `max_connections` calls (default
64) are in flight; the others wait on a semaphore BEFORE their timeout starts,
so a burst is never mistaken for Redis being down (each call in flight is
bounded, so the queue always moves).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from typing import Literal, cast

from .resp import RespClient, RespError

from .base import Decision, Limits, make_ticket, parse_ticket

__all__ = ["FailureMode", "RedisLimiter", "SCRIPT"]

log = logging.getLogger("lapis.ratelimit")

FailureMode = Literal["open", "closed"]

# KEYS: token hash, request hash.
# ARGV: op ("admit" | "peek" | "refund"), now_ms ("" = Redis TIME), token limit,
#       request limit, token window s, request window s, then
#       admit/peek: cost;  refund: bucket, tokens.
# Returns admit/peek: {allowed, rem tokens, rem requests, retry ms,
#                      limited (0 none, 1 tokens, 2 requests), reset t ms, reset r ms, bucket}
#         refund: tokens given back.
SCRIPT = """
local op = ARGV[1]
local now
if ARGV[2] ~= '' then
  now = tonumber(ARGV[2])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local now_b = math.floor(now / 1000)
local field = string.format('%d', now_b)
local tlim, rlim = tonumber(ARGV[3]), tonumber(ARGV[4])
local tw, rw = tonumber(ARGV[5]), tonumber(ARGV[6])

if op == 'refund' then
  if tonumber(ARGV[7]) < now_b - tw then return 0 end
  local have = tonumber(redis.call('HGET', KEYS[1], ARGV[7]) or '0')
  local back = math.min(have, tonumber(ARGV[8]))
  if back > 0 then redis.call('HINCRBY', KEYS[1], ARGV[7], -back) end
  return back
end

-- live buckets (span = window + 1 buckets, see base.py), oldest first; stale ones deleted
local function scan(key, window)
  local first = now_b - window
  local flat = redis.call('HGETALL', key)
  local live, used, stale = {}, 0, {}
  for i = 1, #flat, 2 do
    local b, n = tonumber(flat[i]), tonumber(flat[i + 1])
    if b < first then stale[#stale + 1] = flat[i]
    elseif n > 0 then live[#live + 1] = {b, n}; used = used + n end
  end
  if #stale > 0 then redis.call('HDEL', key, unpack(stale)) end
  table.sort(live, function(x, y) return x[1] < y[1] end)
  return live, used
end

local function wait(live, used, need, limit, window)
  if used + need <= limit then return 0 end
  if need > limit then return window * 1000 end
  local freed = 0
  for i = 1, #live do
    freed = freed + live[i][2]
    if used - freed + need <= limit then
      return math.max(1, (live[i][1] + window + 1) * 1000 - now)
    end
  end
  return window * 1000
end

local function reset(live, window, charged)
  local oldest = live[1] and live[1][1]
  if charged and (not oldest or now_b < oldest) then oldest = now_b end
  if not oldest then return 0 end
  return math.max(0, (oldest + window + 1) * 1000 - now)
end

local cost = tonumber(ARGV[7])
local tl, tu = scan(KEYS[1], tw)
local rl, ru = scan(KEYS[2], rw)
local twait = wait(tl, tu, cost, tlim, tw)
local rwait = wait(rl, ru, 1, rlim, rw)
local allowed = twait == 0 and rwait == 0
local charged = allowed and op == 'admit'
if charged then
  if cost > 0 then redis.call('HINCRBY', KEYS[1], field, cost) end
  redis.call('HINCRBY', KEYS[2], field, 1)
  redis.call('PEXPIRE', KEYS[1], (tw + 2) * 1000)
  redis.call('PEXPIRE', KEYS[2], (rw + 2) * 1000)
  tu = tu + cost
  ru = ru + 1
end
local limited, retry = 0, 0
if not allowed then
  retry = math.max(twait, rwait)
  if twait >= rwait then limited = 1 else limited = 2 end
end
return {allowed and 1 or 0, math.max(0, tlim - tu), math.max(0, rlim - ru), retry, limited,
        reset(tl, tw, charged and cost > 0), reset(rl, rw, charged), now_b}
"""

_SHA = hashlib.sha1(SCRIPT.encode()).hexdigest()
_LIMITED_BY = (None, "tokens", "requests")


class RedisLimiter:
    """The shared `Limiter` over one Redis; see the module docstring."""

    def __init__(self, url: str, *, prefix: str = "lapis:rl:",
                 failure_mode: FailureMode = "open", timeout_s: float = 0.25,
                 retry_interval_s: float = 1.0, log_interval_s: float = 10.0,
                 max_connections: int = 64, refund_batch_s: float = 0.02,
                 clock: Callable[[], float] | None = None) -> None:
        if failure_mode not in ("open", "closed"):
            raise ValueError(f"failure_mode must be 'open' or 'closed', not {failure_mode!r}")
        self.prefix = prefix
        self.failure_mode: FailureMode = failure_mode
        self.failures = 0
        self._deadline_s = 2 * timeout_s + 0.05  # connect + read, whatever happens inside
        self._redis = RespClient.from_url(url, timeout_s=timeout_s)  # no retries: the failure mode decides
        self._slots = asyncio.Semaphore(max_connections)  # calls in flight on the one pipelined connection
        self._retry_interval_s = retry_interval_s
        self._log_interval_s = log_interval_s
        self._down_until = 0.0
        self._last_log = float("-inf")
        self._clock = clock
        self._refund_batch_s = refund_batch_s
        self._pending: dict[tuple[str, Limits, int], int] = {}
        self._flush: asyncio.Task[None] | None = None

    async def admit(self, key: str, limits: Limits, cost: int) -> Decision:
        cost = max(0, cost)
        res = await self._run(key, limits, "admit", cost)
        if res is None:
            return self._degraded(limits)
        allowed, rem_t, rem_r, retry, limited, reset_t, reset_r, bucket = res
        return Decision(bool(allowed), rem_t, rem_r, retry, _LIMITED_BY[limited], reset_t,
                        reset_r, make_ticket(bucket, cost) if allowed else "")

    async def peek(self, key: str, limits: Limits) -> Decision:
        res = await self._run(key, limits, "peek", 0)
        if res is None:
            return self._degraded(limits)
        allowed, rem_t, rem_r, retry, limited, reset_t, reset_r, _ = res
        return Decision(bool(allowed), rem_t, rem_r, retry, _LIMITED_BY[limited], reset_t,
                        reset_r)

    async def refund(self, key: str, limits: Limits, ticket: str, tokens: int) -> None:
        parsed = parse_ticket(ticket)
        if parsed is None or tokens <= 0:
            return
        bucket, cost = parsed
        slot = (key, limits, bucket)
        self._pending[slot] = self._pending.get(slot, 0) + min(tokens, cost)
        if self._flush is None:
            self._flush = asyncio.get_running_loop().create_task(self._flush_refunds())
        await asyncio.shield(self._flush)

    async def _flush_refunds(self) -> None:
        """Apply every refund queued during the batch window in one round trip."""
        await asyncio.sleep(self._refund_batch_s)
        batch, self._pending, self._flush = self._pending, {}, None
        if not batch:
            return
        if time.monotonic() < self._down_until:
            self._failed(None)  # the batch is dropped: limits only get stricter
            return
        try:
            async with self._slots, asyncio.timeout(self._deadline_s):
                await asyncio.gather(*(  # written back to back: one round trip for the batch
                    self._script(self._keys(key), self._args(limits, "refund", bucket, tokens))
                    for (key, limits, bucket), tokens in batch.items()))
        except Exception as exc:  # noqa: BLE001 - a lost refund only makes limits stricter
            self._down_until = time.monotonic() + self._retry_interval_s
            self._failed(exc)

    def _keys(self, key: str) -> tuple[str, str]:
        return f"{self.prefix}{key}:t", f"{self.prefix}{key}:r"

    def _args(self, limits: Limits, op: str, *extra: int) -> tuple[str | int, ...]:
        now = "" if self._clock is None else str(int(self._clock() * 1000))
        return (op, now, limits.tokens, limits.requests, limits.token_window_s, limits.request_window_s, *extra)

    async def _script(self, keys: tuple[str, str], args: tuple[str | int, ...]) -> object:
        """EVALSHA; on NOSCRIPT (script cache flushed) EVAL, which caches it again."""
        try:
            return await self._redis.call("EVALSHA", _SHA, 2, *keys, *args)
        except RespError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
            return await self._redis.call("EVAL", SCRIPT, 2, *keys, *args)

    async def close(self) -> None:
        if self._flush is not None:
            await asyncio.gather(self._flush, return_exceptions=True)
        await self._redis.close()

    async def _run(self, key: str, limits: Limits, op: str, *extra: int) -> list[int] | None:
        """One script call; None when the store failed (already counted and logged)."""
        if time.monotonic() < self._down_until:
            self._failed(None)
            return None
        keys, args = self._keys(key), self._args(limits, op, *extra)
        try:
            async with self._slots, asyncio.timeout(self._deadline_s):
                result = await self._script(keys, args)
            return cast("list[int]", result)
        except Exception as exc:  # noqa: BLE001 - never raise to the caller
            self._down_until = time.monotonic() + self._retry_interval_s
            self._failed(exc)
            return None

    def _failed(self, exc: BaseException | None) -> None:
        self.failures += 1
        now = time.monotonic()
        if exc is not None and now - self._last_log >= self._log_interval_s:
            self._last_log = now
            log.warning("rate-limit store unavailable (%s: %s); failing %s; %d failures so far",
                        type(exc).__name__, exc, self.failure_mode, self.failures)

    def _degraded(self, limits: Limits) -> Decision:
        if self.failure_mode == "open":
            return Decision(True, limits.tokens, limits.requests, 0, None, 0, 0, degraded=True)
        return Decision(False, 0, 0, 1000, "requests", 0, 1000, degraded=True)
