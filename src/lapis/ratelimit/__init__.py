"""Per-deployment rate limits (TPM over 60 s, requests over 10 s), Azure's semantics.

    limiter = open_limiter(settings.redis_url, failure_mode="open")
    decision = await limiter.admit(deployment_key, Limits(tokens=10_000, requests=60), cost)
    ...                     # after the response, give back what was not used:
    await limiter.refund(deployment_key, limits, decision.ticket, cost - used)

The rules live in `base` (read its docstring); `memory` and `redis` store the
counters. The backend is chosen by URL: none, "" or "memory://" is the
in-process limiter (exact for one process); "redis://" is the Redis limiter
shared by every replica (TLS and unix sockets are not supported yet).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import Decision, Limiter, Limits
from .memory import MemoryLimiter
from .unlimited import UnlimitedLimiter

if TYPE_CHECKING:
    from .redis import FailureMode, RedisLimiter

__all__ = ["Decision", "Limiter", "Limits", "MemoryLimiter", "RedisLimiter", "UnlimitedLimiter", "open_limiter"]

_REDIS_SCHEMES = ("redis://",)


def open_limiter(url: str | None, *, failure_mode: FailureMode = "open",
                 prefix: str = "lapis:rl:") -> Limiter:
    """The limiter for `url`; `failure_mode` and `prefix` apply to Redis only."""
    if not url or url == "memory://":
        return MemoryLimiter()
    if url.startswith(_REDIS_SCHEMES):
        from .redis import RedisLimiter  # imported only when used: redis-py costs ~0.1 s at start-up

        return RedisLimiter(url, failure_mode=failure_mode, prefix=prefix)
    raise ValueError(f"unsupported rate-limit store URL {url!r} (use memory:// or redis://)")


def __getattr__(name: str) -> Any:
    if name == "RedisLimiter":
        from .redis import RedisLimiter

        return RedisLimiter
    raise AttributeError(name)
