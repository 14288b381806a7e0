"""Rate-limit model shared by every limiter: limits, decisions, window arithmetic.

Strategy here, storage elsewhere: this module holds the one definition of the
rolling-window rules; `memory.MemoryLimiter` applies them to dicts in-process
and `redis.RedisLimiter` applies the same rules inside one Lua script (a line
for line port of `evaluate` below; the shared test suite keeps them equal).

Semantics
---------
* **Two rolling windows per key**: tokens over `Limits.token_window_s` (60 s,
  TPM = capacity x 1000) and requests over `Limits.request_window_s` (10 s,
  the model's RPM ratio / 6). Each is kept as counters in **1-second buckets**
  (bucket id = floor(now_ms / 1000)).
* **The span checked is window_s + 1 buckets** (61 for 60 s): an admission in
  bucket `b` sums buckets `b - window_s .. b`. Why: any real interval
  [t, t + window_s) touches at most window_s + 1 buckets, floor(t) through
  floor(t) + window_s. The last grant in that interval sat in some bucket
  `b <= floor(t) + window_s`, so its check covered every bucket from floor(t)
  on, hence every earlier grant of the interval, and it passed only if their
  sum plus its own cost fit. So the tokens granted in ANY window_s-second
  interval never exceed the limit, with zero boundary excess. The price is
  that a charge stays counted between window_s and window_s + 1 seconds.
* **Admission is all or nothing**: a request is admitted only if the token
  window has room for `cost` AND the request window has room for 1; then
  both are charged in the current bucket, atomically. A denial charges
  nothing (Azure does not charge rejected requests).
* **retry_after_ms** (denied only, >= 1): the time until enough of the oldest
  buckets leave the span for this cost and one request to fit, assuming no
  other traffic; bucket `b` leaves at (b + window_s + 1) * 1000 ms. A cost
  greater than the whole limit can never fit: it is denied with
  retry_after_ms = token_window_s * 1000 (the caller clamps what it shows).
* **limited_by** names the window with the longer wait ("tokens" on ties).
* **remaining_*** are after this admission, clamped at 0 (a limit lowered
  below current use reads 0). **reset_*_ms** is the time until the oldest
  charged bucket leaves the span, 0 when nothing is charged.
* **Refunds** (`refund(key, limits, ticket, tokens)`) give tokens back to the
  bucket named by the admission's ticket, at most the cost that admission
  charged and never below zero; a bucket that has already left the span is
  not touched. Requests are never refunded.
* **peek** reports the same numbers for a zero-cost request and charges
  nothing (for response headers).
* **Degraded** decisions come only from stores that can fail (Redis): the
  configured failure mode decides, and the decision says so.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "Limits",
    "Decision",
    "Limiter",
    "bucket_of",
    "evaluate",
    "make_ticket",
    "parse_ticket",
    "wait_ms",
    "reset_ms",
]


@dataclass(frozen=True, slots=True)
class Limits:
    """The limits of one key (a deployment)."""

    tokens: int  # tokens allowed per token window (TPM = capacity*1000)
    requests: int  # requests allowed per request window
    token_window_s: int = 60
    request_window_s: int = 10


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one admission (or of a peek)."""

    allowed: bool
    remaining_tokens: int  # after this admission (never negative)
    remaining_requests: int
    retry_after_ms: int  # 0 when allowed; else ms until this request would fit
    limited_by: str | None  # None | "tokens" | "requests"
    reset_tokens_ms: int  # ms until the oldest charged tokens leave the window (0 if none)
    reset_requests_ms: int
    ticket: str = ""  # opaque: what refund() needs to undo part of this charge
    degraded: bool = False  # the backend store failed and failure_mode decided


class Limiter(Protocol):
    """What the data plane needs from a limiter; see the module docstring."""

    async def admit(self, key: str, limits: Limits, cost: int) -> Decision: ...

    async def refund(self, key: str, limits: Limits, ticket: str, tokens: int) -> None: ...

    # In-process limiters also offer `refund_now(key, limits, ticket, tokens)`,
    # the same refund done synchronously: Gate.settle then spares a task per request.

    async def peek(self, key: str, limits: Limits) -> Decision: ...

    async def close(self) -> None: ...


Buckets = Sequence[Sequence[int]]  # (bucket second, count) pairs, oldest first, live only


def bucket_of(now_ms: int) -> int:
    """The 1-second bucket that `now_ms` falls in."""
    return now_ms // 1000


def make_ticket(bucket: int, cost: int) -> str:
    """Refund ticket: the charged token bucket and the most that may be given back."""
    return f"{bucket}:{cost}"


def parse_ticket(ticket: str) -> tuple[int, int] | None:
    """(bucket, cost) from a ticket, or None when it is not one of ours."""
    try:
        bucket, cost = ticket.split(":")
        return int(bucket), int(cost)
    except ValueError:
        return None


def wait_ms(buckets: Iterable[Sequence[int]], used: int, need: int, limit: int,
            now_ms: int, window_s: int) -> int:
    """Ms until `need` more fits under `limit` as the oldest buckets leave (0: fits now)."""
    if used + need <= limit:
        return 0
    if need > limit:
        return window_s * 1000  # can never fit
    freed = 0
    for bucket, count in buckets:
        freed += count
        if used - freed + need <= limit:
            return max(1, (bucket + window_s + 1) * 1000 - now_ms)
    return window_s * 1000  # unreachable while `used` is the sum of `buckets`


def reset_ms(oldest: int | None, now_ms: int, window_s: int) -> int:
    """Ms until bucket `oldest` leaves the span (0 when nothing is charged)."""
    if oldest is None:
        return 0
    return max(0, (oldest + window_s + 1) * 1000 - now_ms)


def _oldest(buckets: Buckets) -> int | None:
    for bucket, count in buckets:  # a loop: twice as fast as next(genexpr) here
        if count > 0:
            return bucket
    return None


def evaluate(limits: Limits, cost: int, now_ms: int, tokens: Buckets, token_used: int,
             requests: Buckets, request_used: int, *, charge: bool) -> Decision:
    """Decide one admission from the live buckets of both windows.

    `tokens`/`requests` are the buckets inside the current span, oldest first,
    and `*_used` their sums. With `charge=True` the caller charges `cost` and
    one request to the current bucket iff the decision is allowed; the
    remaining and reset figures already account for that charge.
    """
    t_wait = wait_ms(tokens, token_used, cost, limits.tokens, now_ms, limits.token_window_s)
    r_wait = wait_ms(requests, request_used, 1, limits.requests, now_ms,
                     limits.request_window_s)
    allowed = t_wait == 0 and r_wait == 0
    now_b = bucket_of(now_ms)
    oldest_t, oldest_r = _oldest(tokens), _oldest(requests)
    if allowed and charge:
        token_used += cost
        request_used += 1
        if cost > 0 and (oldest_t is None or now_b < oldest_t):
            oldest_t = now_b
        if oldest_r is None or now_b < oldest_r:
            oldest_r = now_b
    limited_by = None if allowed else ("tokens" if t_wait >= r_wait else "requests")
    return Decision(
        allowed=allowed,
        remaining_tokens=max(0, limits.tokens - token_used),
        remaining_requests=max(0, limits.requests - request_used),
        retry_after_ms=0 if allowed else max(t_wait, r_wait),
        limited_by=limited_by,
        reset_tokens_ms=reset_ms(oldest_t, now_ms, limits.token_window_s),
        reset_requests_ms=reset_ms(oldest_r, now_ms, limits.request_window_s),
        ticket=make_ticket(now_b, cost) if allowed and charge else "",
    )
