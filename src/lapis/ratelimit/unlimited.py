"""UnlimitedLimiter: admits everything and counts nothing (LAPIS_RATELIMIT=off).

For load tests and for measuring what limiting costs; the headers still say
the deployment's limits, with all of them remaining."""

from __future__ import annotations

from .base import Decision, Limits


class UnlimitedLimiter:
    failures = 0

    def __init__(self) -> None:
        self._decisions: dict[Limits, Decision] = {}  # one per set of limits: a Decision is immutable

    async def admit(self, key: str, limits: Limits, cost: int) -> Decision:
        return await self.peek(key, limits)

    async def peek(self, key: str, limits: Limits) -> Decision:
        decision = self._decisions.get(limits)
        if decision is None:
            if len(self._decisions) >= 4096:
                self._decisions.clear()
            decision = self._decisions[limits] = Decision(
                allowed=True, remaining_tokens=limits.tokens, remaining_requests=limits.requests, retry_after_ms=0,
                limited_by=None, reset_tokens_ms=0, reset_requests_ms=0)
        return decision

    async def refund(self, key: str, limits: Limits, ticket: str, tokens: int) -> None:
        return None

    def refund_now(self, key: str, limits: Limits, ticket: str, tokens: int) -> None:
        return None

    async def close(self) -> None:
        return None
