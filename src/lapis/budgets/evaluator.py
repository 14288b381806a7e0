"""Budgets: the evaluator that reads spend, sends notifications and keeps the hard caps.

The data plane asks one thing per request, `check(entry)`: one dict lookup
by the account's internal id in `blocked`, which the evaluator rebuilds; it
raises the 429 BudgetExceeded (lapis.errors.budgets) for an account whose
scope (the account, its resource group or its subscription) has a spent,
hard-capped budget. Nothing else on the hot path reads a budget.

The evaluator task (`run`) wakes every `interval_s` seconds
(LAPIS_BUDGET_INTERVAL_S, default 5), and sooner after a request that used
tokens (`observe`, a request observer: it only sets an event; the evaluation
waits `settle_s` for that request's usage row to commit). Each evaluation
reads every budget from the store (so budgets written on another replica are
seen within one interval), sums the committed usage of its scope over its
current period (lapis.usage.usage_totals, cost in USD), claims and sends the
notifications whose thresholds are crossed (lapis.budgets.store, .notify),
and rebuilds `blocked`. Enforcement therefore lags usage by up to one
interval (Lapis's choice: the hot path never waits on the store), and an
account created inside a blocked scope is blocked from the next evaluation.
A block lifts on its own at the next period's start, without waiting for
an evaluation.

The budget clock is `clock()` (epoch seconds), injected for tests; the
server's is the wall clock plus LAPIS_BUDGET_CLOCK_OFFSET_S, a setting for
tests only (it moves budget periods, not usage timestamps). Budgets need
usage metering (LAPIS_METRICS on): without it no spend is recorded.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Iterator

import aiohttp
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from lapis.budgets import notify
from lapis.budgets.model import Budget, Notification
from lapis.budgets.periods import forecast, iso, utc
from lapis.budgets.store import BudgetStore
from lapis.errors.base import ApiError
from lapis.errors.budgets import budget_exceeded
from lapis.usage import usage_totals

log = logging.getLogger("lapis.budgets")

SETTLE_S = 0.5
STOP_GRACE_S = 2.0


@dataclass(frozen=True, slots=True)
class Block:
    """A spent, hard-capped budget: what the 429 says, and when it lifts."""

    budget: Budget
    spent: float
    period_start: datetime
    until: float  # budget-clock epoch seconds: the next period's start

    def error(self, now: float) -> ApiError:
        seconds = max(1, math.ceil(self.until - now))
        return budget_exceeded(self.budget.name, self.budget.scope, self.budget.amount, self.spent,
                               self.budget.time_grain, iso(self.period_start), iso(utc(self.until)), seconds)


def scope_keys(entry: Any) -> tuple[str, str, str]:
    """The scopes an account is in, as budget scope keys: itself, its group, its subscription."""
    sub = f"/subscriptions/{entry.subscription_id}".lower()
    return entry.arm_id.lower(), f"{sub}/resourcegroups/{entry.resource_group.lower()}", sub


class Budgets:
    def __init__(self, db: Any, directory: Any, interval_s: float = 5.0, clock: Callable[[], float] | None = None,
                 settle_s: float = SETTLE_S, session: Callable[[], aiohttp.ClientSession] | None = None):
        self.db = db
        self.store = BudgetStore(db)
        self.directory = directory  # lapis.dataplane.directory.Directory: accounts by internal id
        self.interval_s = interval_s
        self.settle_s = settle_s
        self.clock = clock or time.time
        self.replica = f"{socket.gethostname()}:{os.getpid()}"
        self.blocked: dict[str, Block] = {}  # account id -> the block its scope is under
        self.spend: dict[str, tuple[Budget, float]] = {}  # budget id -> (budget, spend this period), last seen
        self.evaluations = 0
        self.failures = 0
        self.refused = 0
        self.notices = {"delivered": 0, "failed": 0, "recorded": 0}
        self._claimed: set[tuple[str, str, str, str]] = set()
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()  # one evaluation at a time (the task's, or a write's refresh)
        self._task: asyncio.Task[None] | None = None
        self._sends: set[asyncio.Task[None]] = set()
        self._own_session: aiohttp.ClientSession | None = None
        self._session = session or self._client

    def now(self) -> datetime:
        return utc(self.clock())

    # -- the hot path ------------------------------------------------------------

    def check(self, entry: Any) -> None:
        """Raise the 429 when the account's scope has a spent, hard-capped budget."""
        block = self.blocked.get(entry.id)
        if block is None:
            return
        now = self.clock()
        if now >= block.until:  # the period turned: admit now, the next evaluation drops the block
            return
        self.refused += 1
        raise block.error(now)

    def observe(self, record: Any) -> None:
        """Request observer: tokens were used, so evaluate soon (never blocks)."""
        if record.prompt_tokens or record.completion_tokens:
            self._wake.set()

    async def refresh(self) -> None:
        """Evaluate now (a budget was written here: enforce it before answering)."""
        await self._evaluate_logged()

    # -- the evaluator ---------------------------------------------------------

    async def start(self) -> None:
        """Evaluate once (a restarted server enforces at once), then keep evaluating."""
        await self._evaluate_logged()
        self._task = asyncio.get_running_loop().create_task(self.run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.settled(STOP_GRACE_S)
        for task in list(self._sends):
            task.cancel()
        if self._own_session is not None:
            await self._own_session.close()

    async def settled(self, timeout: float | None = None) -> None:
        """Wait for the notifications being delivered (at most `timeout` seconds)."""
        if self._sends:
            await asyncio.wait(set(self._sends), timeout=timeout)

    async def run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.interval_s)
                await asyncio.sleep(self.settle_s)  # the usage row behind the wake-up commits meanwhile
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            await self._evaluate_logged()

    async def _evaluate_logged(self) -> None:
        try:
            async with self._lock:
                await self.evaluate()
        except Exception:  # noqa: BLE001 - keep the last view and try again next time
            self.failures += 1
            log.exception("evaluating budgets failed")

    async def current(self, budget: Budget, now: datetime) -> tuple[tuple[datetime, datetime] | None, float]:
        """(current period or None, spend in it in USD)."""
        period = budget.period(now)
        if period is None:
            return None, 0.0
        return period, (await usage_totals(self.db, budget.scope, period[0], period[1])).cost

    async def evaluate(self) -> None:
        now = self.now()
        blocks: dict[str, Block] = {}
        spend: dict[str, tuple[Budget, float]] = {}
        for budget in await self.store.all():
            period, spent = await self.current(budget, now)
            spend[budget.id] = (budget, spent)
            if period is None:
                continue
            if budget.hard_cap and spent >= budget.amount:
                block = Block(budget, spent, period[0], period[1].timestamp())
                if budget.scope_key not in blocks or block.until > blocks[budget.scope_key].until:
                    blocks[budget.scope_key] = block
            for note in budget.notifications:
                if note.enabled:
                    await self._maybe_notify(budget, note, period, spent, now)
        self.spend = spend
        self.blocked = self._by_account(blocks)
        self.evaluations += 1

    def _by_account(self, blocks: dict[str, Block]) -> dict[str, Block]:
        if not blocks:
            return {}
        out: dict[str, Block] = {}
        for entry in list(self.directory.by_id.values()):
            found = next((blocks[k] for k in scope_keys(entry) if k in blocks), None)
            if found is not None:
                out[entry.id] = found
        return out

    # -- notifications ---------------------------------------------------------

    async def _maybe_notify(self, budget: Budget, note: Notification, period: tuple[datetime, datetime],
                            spent: float, now: datetime) -> None:
        projected = forecast(spent, period, now) if note.threshold_type == "Forecasted" else spent
        if not note.crossed(projected, budget.amount):
            return
        notice_key = f"{note.name}@{note.threshold:g}"
        marker = (budget.scope_key, budget.name.lower(), notice_key.lower(), iso(period[0]))
        if marker in self._claimed:
            return
        won = await self.store.claim(budget, notice_key, iso(period[0]), round(spent * 1e9), self.replica, iso(now))
        self._claimed.add(marker)
        if won:
            body = notify.payload(budget, note, spent, forecast(spent, period, now), period, now)
            task = asyncio.get_running_loop().create_task(self._send(budget, note, notice_key, body))
            self._sends.add(task)
            task.add_done_callback(self._sends.discard)

    async def _send(self, budget: Budget, note: Notification, notice_key: str, body: dict[str, Any]) -> None:
        if note.webhook_url is None:
            log.info("budget %s crossed %s%% (%s): no webhookUrl, and Lapis sends no email to %s", budget.id,
                     f"{note.threshold:g}", note.name, ", ".join(note.contact_emails) or "nobody")
            status = "recorded"
        else:
            status = "delivered" if await notify.deliver(self._session, note.webhook_url, body) else "failed"
        self.notices[status] += 1
        try:
            await self.store.settle(budget, notice_key, body["period"]["startDate"], status)
        except Exception:  # noqa: BLE001 - the notice went out (or not) either way
            log.exception("recording budget notice %s of %s failed", notice_key, budget.id)

    def _client(self) -> aiohttp.ClientSession:
        if self._own_session is None or self._own_session.closed:
            self._own_session = aiohttp.ClientSession()
        return self._own_session

    # -- /metrics ----------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily("lapis_budget_evaluations", "Budget evaluations completed", value=self.evaluations)
        yield CounterMetricFamily("lapis_budget_evaluation_failures", "Budget evaluations that failed",
                                  value=self.failures)
        notices = CounterMetricFamily("lapis_budget_notifications", "Budget notifications sent by this process, "
                                      "by result", labels=["result"])
        for result, count in sorted(self.notices.items()):
            notices.add_metric([result], count)
        yield notices
        yield CounterMetricFamily("lapis_budget_refused_requests", "Data-plane requests refused by a hard cap",
                                  value=self.refused)
        yield GaugeMetricFamily("lapis_budget_blocked_accounts", "Accounts a spent hard cap blocks now",
                                value=len(self.blocked))
        spent = GaugeMetricFamily("lapis_budget_spend_usd", "Spend in the budget's current period, USD",
                                  labels=["budget_id"])
        amount = GaugeMetricFamily("lapis_budget_amount_usd", "The budget's amount per period, USD",
                                   labels=["budget_id"])
        for budget_id, (budget, value) in sorted(self.spend.items()):
            spent.add_metric([budget_id], value)
            amount.add_metric([budget_id], budget.amount)
        yield spent
        yield amount
