"""Admission: what a request costs, whether the deployment's windows have
room for it, the headers that say so, and settling up afterwards.

Cost at admission (§5.2; facts in the catalogue, choices in
docs/wire-decisions.md):
    chat         ceil(prompt characters / 4)
                 + (max_tokens | max_completion_tokens | model defaultMaxTokens) x n
    completions  ceil(prompt characters / 4) + (max_tokens | 16) x max(n, best_of)
    embeddings   ceil(characters / 4) per text input, the length of a token input
After the response the unused part of the estimate is refunded (off the hot
path); a stream its client dropped is charged for what was generated.
"""

from __future__ import annotations

import asyncio
import functools
import math
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from lapis.dataplane.directory import AccountEntry, DeploymentEntry
from lapis.dataplane.protocol import ChatRequest, CompletionsRequest
from lapis.errors import catalogue as errors
from lapis.ratelimit import Decision, Limiter, Limits
from lapis.ratelimit.policy import is_provisioned, requests_per_minute

OPERATION_IDS = {"chat": "ChatCompletions_Create", "completions": "Completions_Create",
                 "embeddings": "Embeddings_Create"}
MAX_RETRY_AFTER_S = 60  # the Python SDK gives up above 120 s; Node waits whatever it is told


def _chars(content: Any) -> int:
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        return sum(len(p.get("text") or "") for p in content if isinstance(p, dict))
    return 0


def chat_cost(req: ChatRequest, dep: DeploymentEntry) -> int:
    chars = sum(_chars(m.get("content")) for m in req.messages if isinstance(m, dict))
    budget = req.max_completion_tokens or req.max_tokens or dep.model.default_max_tokens
    return math.ceil(chars / 4) + budget * (req.n or 1)


def completions_cost(req: CompletionsRequest, dep: DeploymentEntry) -> int:
    prompts = req.prompt if isinstance(req.prompt, list) else [req.prompt or ""]
    chars = sum(len(p) for p in prompts if isinstance(p, str))
    budget = req.max_tokens or dep.model.default_max_tokens
    return math.ceil(chars / 4) + budget * max(req.n or 1, req.best_of or 1) * len(prompts)


def call_cost(messages: list[Any], max_tokens: int, n: int) -> int:
    """A backend call's estimate (a pool member deployment's admission)."""
    chars = sum(_chars(m.get("content")) for m in messages if isinstance(m, dict))
    return math.ceil(chars / 4) + max_tokens * n


def embeddings_cost(inputs: list[str | list[int]]) -> int:
    return sum(math.ceil(len(x) / 4) if isinstance(x, str) else len(x) for x in inputs)


@dataclass(slots=True)
class Admission:
    """One admitted request: what to refund once its real usage is known."""

    key: str
    limits: Limits
    cost: int
    decision: Decision

    def headers(self, provisioned: bool) -> dict[str, str]:
        d, limits = self.decision, self.limits
        rpm, tpm = _limit_texts(limits)
        if provisioned:
            used = 100.0 * (limits.tokens - d.remaining_tokens) / max(limits.tokens, 1)
            return {"x-ratelimit-limit-requests": rpm, "x-ratelimit-remaining-requests": str(d.remaining_requests),
                    "azure-openai-deployment-utilization": f"{used:.1f}%"}
        return {"x-ratelimit-limit-requests": rpm, "x-ratelimit-remaining-requests": str(d.remaining_requests),
                "x-ratelimit-limit-tokens": tpm, "x-ratelimit-remaining-tokens": str(d.remaining_tokens)}


@functools.lru_cache(maxsize=4096)
def _limit_texts(limits: Limits) -> tuple[str, str]:
    """A deployment's limit headers never change: (requests per minute, tokens), as text, once."""
    return str(requests_per_minute(limits)), str(limits.tokens)


class Gate:
    """Admits requests to deployments through one Limiter; keeps refunds off the hot path."""

    def __init__(self, limiter: Limiter):
        self.limiter = limiter
        self._refund_now = getattr(limiter, "refund_now", None)  # in-process limiters: no task needed
        self._pending: set[asyncio.Task[None]] = set()
        self.denied = 0
        self.admitted = 0

    async def reserve(self, account: AccountEntry, dep: DeploymentEntry, cost: int) -> Admission:
        """Charge `cost` against the deployment's windows if they have room;
        the caller reads `decision.allowed` and, on a refusal, answers with
        `throttled` (the data plane, after trying a spillover deployment) or
        moves on (a pool member's deployment: the balancer tries the next)."""
        limits = dep.limits
        key = f"{account.id}/{dep.name.lower()}"
        decision = await self.limiter.admit(key, limits, cost)
        if decision.allowed:
            self.admitted += 1
        else:
            self.denied += 1
        return Admission(key, limits, cost, decision)

    def throttled(self, request: web.Request, account: AccountEntry, dep: DeploymentEntry, admission: Admission,
                   operation: str) -> errors.ApiError:
        d = admission.decision
        wait_ms = max(1, min(d.retry_after_ms, MAX_RETRY_AFTER_S * 1000))
        wait_s = max(1, min(math.ceil(wait_ms / 1000), MAX_RETRY_AFTER_S))
        by_tokens = d.limited_by != "requests"
        headers = {**admission.headers(is_provisioned(dep.sku)), "retry-after": str(wait_s),
                   "retry-after-ms": str(wait_ms), "x-ms-region": account.region,
                   "x-ms-deployment-name": dep.name,
                   "policy-id": "DeploymentRatelimit-Token" if by_tokens else "DeploymentRatelimit-Call"}
        reset = d.reset_tokens_ms if by_tokens else d.reset_requests_ms
        headers["x-ratelimit-reset-tokens" if by_tokens else "x-ratelimit-reset-requests"] = str(
            max(1, math.ceil(max(reset, wait_ms) / 1000)))
        version = request.query.get("api-version") or "v1"
        return errors.rate_limited(dep.name, dep.model.name, account.region, account.kind,
                                   OPERATION_IDS[operation], version, wait_s, by_tokens, headers)

    def settle(self, admission: Admission, used_tokens: int) -> None:
        """Refund the unused part of the estimate: at once for an in-process
        limiter, else in the background (Redis)."""
        unused = admission.cost - max(used_tokens, 0)
        if unused <= 0:
            return
        if self._refund_now is not None:
            self._refund_now(admission.key, admission.limits, admission.decision.ticket, unused)
            return
        task = asyncio.get_running_loop().create_task(
            self.limiter.refund(admission.key, admission.limits, admission.decision.ticket, unused))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def close(self) -> None:
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        await self.limiter.close()
