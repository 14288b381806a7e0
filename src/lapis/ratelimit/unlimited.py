"""UnlimitedLimiter: admits everything and counts nothing (LAPIS_RATELIMIT=off).

For load tests and for measuring what limiting costs; the headers still say
the deployment's limits, with all of them remaining."""

from __future__ import annotations

from .base import Decision, Limits


class UnlimitedLimiter:
    failures = 0

    async def admit(self, key: str, limits: Limits, cost: int) -> Decision:
        return await self.peek(key, limits)

    async def peek(self, key: str, limits: Limits) -> Decision:
        return Decision(allowed=True, remaining_tokens=limits.tokens, remaining_requests=limits.requests,
                        retry_after_ms=0, limited_by=None, reset_tokens_ms=0, reset_requests_ms=0)

    async def refund(self, key: str, limits: Limits, ticket: str, tokens: int) -> None:
        return None

    async def close(self) -> None:
        return None
