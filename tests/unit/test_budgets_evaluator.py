"""The budget evaluator over a real SQLite store, with a clock the test moves: a
notification goes out once per period (to an aiohttp receiver on 127.0.0.1, also
across a restart and between racing replicas), the hard cap blocks the scope's
accounts and lifts exactly at the period boundary, scopes and forecasts."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest

from lapis.budgets import notify
from lapis.budgets.evaluator import Budgets
from lapis.budgets.manage import budget_json, delete_budget, put_budget
from lapis.errors.base import ApiError
from lapis.store.database import open_database
from lapis.store.metering import MeteringStore
from lapis.store.migrate import migrate
from support.log_receivers import Receiver
from support.server import free_port

UTC = timezone.utc
SUB, OTHER_SUB = "2c6d6e8a-6c61-7069-7300-0000000000aa", "2c6d6e8a-6c61-7069-7300-0000000000bb"
GROUP = f"/subscriptions/{SUB}/resourceGroups/rg1"
NANO = 1_000_000_000


def account(name: str, sub: str = SUB, group: str = "rg1") -> SimpleNamespace:
    arm_id = f"/subscriptions/{sub}/resourceGroups/{group}/providers/Microsoft.CognitiveServices/accounts/{name}"
    return SimpleNamespace(id=f"id-{name}", arm_id=arm_id, subscription_id=sub, resource_group=group)


A1, A2, B1, X1 = account("a1"), account("a2"), account("b1", group="rg2"), account("x1", sub=OTHER_SUB)


class Clock:
    def __init__(self, moment: datetime):
        self.now = moment.timestamp()

    def set(self, moment: datetime) -> None:
        self.now = moment.timestamp()

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
async def db(tmp_path: Path):
    database = await open_database(f"sqlite:///{tmp_path / 'budgets.sqlite3'}")
    await migrate(database)
    yield database
    await database.close()


@pytest.fixture()
async def receiver():
    hook = await Receiver().start()
    yield hook
    await hook.stop()


def evaluator(db, clock: Clock) -> Budgets:
    directory = SimpleNamespace(by_id={a.id: a for a in (A1, A2, B1, X1)})
    return Budgets(db, directory, interval_s=60, clock=clock, settle_s=0)


async def spend(db, entry: SimpleNamespace, usd: float, when: datetime) -> None:
    """One metered request of `entry` costing `usd`, at `when`."""
    row = (str(uuid.uuid4()), int(when.timestamp() * 1000), int(when.strftime("%Y%m%d")), entry.subscription_id,
           entry.resource_group, entry.id, entry.arm_id, "eastus", "d", "gpt-4o-mini", "2024-07-18", "Standard",
           "key1", "ChatCompletions_Create", "{}", 10, 0, 5, round(usd * NANO), 0, 0)
    await MeteringStore(db).add_usage([row])


def budget_body(amount: float = 1.0, start: str = "2026-07-01", **props) -> dict:
    return {"properties": {"category": "Cost", "amount": amount, "timeGrain": "Monthly",
                           "timePeriod": {"startDate": start}, **props}}


def blocked_error(budgets: Budgets, entry) -> ApiError:
    with pytest.raises(ApiError) as caught:
        budgets.check(entry)
    return caught.value


async def test_a_notification_fires_once_at_its_threshold(db, receiver):
    clock = Clock(datetime(2026, 7, 18, 9, 0, tzinfo=UTC))
    budgets = evaluator(db, clock)
    notes = {"Actual_GreaterThanOrEqualTo_80_Percent": {"operator": "GreaterThanOrEqualTo", "threshold": 80,
                                                        "webhookUrl": receiver.url},
             "email-only": {"operator": "GreaterThan", "threshold": 100, "contactEmails": ["ops@contoso.com"]}}
    await put_budget(budgets, GROUP, "team", budget_body(notifications=notes), "r1")
    await spend(db, A1, 0.5, datetime(2026, 7, 10, tzinfo=UTC))
    await budgets.evaluate()
    await budgets.settled()
    assert receiver.bodies == []  # 50%: below the threshold

    await spend(db, A2, 0.3, datetime(2026, 7, 17, tzinfo=UTC))  # 80%: at the threshold, >= crosses it
    await budgets.evaluate()
    await budgets.settled()
    assert len(receiver.bodies) == 1
    sent = receiver.bodies[0]
    assert sent["schemaId"] == "Lapis.BudgetNotification" and sent["budgetName"] == "team"
    assert sent["budgetId"] == f"{GROUP.lstrip('/')}/providers/Microsoft.Consumption/budgets/team"
    assert sent["scope"] == GROUP and sent["amount"] == 1 and sent["timeGrain"] == "Monthly"
    assert sent["notification"]["name"] == "Actual_GreaterThanOrEqualTo_80_Percent"
    assert sent["notification"]["threshold"] == 80 and sent["notification"]["operator"] == "GreaterThanOrEqualTo"
    assert sent["currentSpend"] == {"amount": pytest.approx(0.8), "unit": "USD"}
    assert sent["spentPercent"] == pytest.approx(80.0)
    assert sent["period"] == {"startDate": "2026-07-01T00:00:00Z", "endDate": "2026-08-01T00:00:00Z"}
    assert budgets.notices == {"delivered": 1, "failed": 0, "recorded": 0}

    await spend(db, A1, 0.1, datetime(2026, 7, 18, tzinfo=UTC))
    await budgets.evaluate()
    restarted = evaluator(db, clock)  # a restart, or another replica: the store remembers the claim
    await restarted.evaluate()
    await asyncio.gather(budgets.settled(), restarted.settled())
    assert len(receiver.bodies) == 1
    stored = await budgets.store.notices(await budgets.store.get(GROUP, "team"))
    assert [(n["notice_key"], n["status"]) for n in stored] == [("actual_greaterthanorequalto_80_percent@80",
                                                                 "delivered")]

    await spend(db, A1, 0.2, datetime(2026, 7, 19, tzinfo=UTC))  # 110%: the email-only one is recorded
    await budgets.evaluate()
    await budgets.settled()
    assert budgets.notices["recorded"] == 1 and len(receiver.bodies) == 1

    clock.set(datetime(2026, 8, 5, tzinfo=UTC))  # a new period: July's spend does not count
    await budgets.evaluate()
    await budgets.settled()
    assert len(receiver.bodies) == 1
    await spend(db, B1, 5.0, datetime(2026, 8, 4, tzinfo=UTC))  # another group: not this budget's
    await spend(db, A2, 0.85, datetime(2026, 8, 4, tzinfo=UTC))
    await budgets.evaluate()
    await budgets.settled()
    assert len(receiver.bodies) == 2
    assert receiver.bodies[1]["period"]["startDate"] == "2026-08-01T00:00:00Z"
    assert receiver.bodies[1]["currentSpend"]["amount"] == pytest.approx(0.85)
    await budgets.stop()
    await restarted.stop()


async def test_racing_replicas_send_once(db, receiver):
    clock = Clock(datetime(2026, 7, 18, tzinfo=UTC))
    replicas = [evaluator(db, clock) for _ in range(4)]
    await put_budget(replicas[0], GROUP, "team", budget_body(notifications={
        "n": {"operator": "GreaterThan", "threshold": 50, "webhookUrl": receiver.url}}), "r1")
    await spend(db, A1, 0.9, datetime(2026, 7, 17, tzinfo=UTC))
    await asyncio.gather(*(r.evaluate() for r in replicas))
    await asyncio.gather(*(r.settled() for r in replicas))
    assert len(receiver.bodies) == 1
    assert sum(r.notices["delivered"] for r in replicas) == 1
    await asyncio.gather(*(r.stop() for r in replicas))  # the one that sent closes its HTTP session


async def test_a_webhook_that_fails_is_tried_again_then_given_up(db, monkeypatch):
    monkeypatch.setattr(notify, "BACKOFF_S", 0.01)
    clock = Clock(datetime(2026, 7, 18, tzinfo=UTC))
    budgets = evaluator(db, clock)
    nobody = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
    await put_budget(budgets, GROUP, "team", budget_body(notifications={
        "n": {"operator": "GreaterThan", "threshold": 50, "webhookUrl": nobody}}), "r1")
    await spend(db, A1, 0.9, datetime(2026, 7, 17, tzinfo=UTC))
    await budgets.evaluate()
    await budgets.settled()
    assert budgets.notices["failed"] == 1
    [notice] = await budgets.store.notices(await budgets.store.get(GROUP, "team"))
    assert notice["status"] == "failed"
    await budgets.evaluate()  # at most once: a failed notice is not claimed again
    await budgets.settled()
    assert budgets.notices == {"delivered": 0, "failed": 1, "recorded": 0}
    await budgets.stop()


async def test_the_hard_cap_blocks_then_lifts_at_the_period_boundary(db):
    clock = Clock(datetime(2026, 7, 20, 12, 0, tzinfo=UTC))
    budgets = evaluator(db, clock)
    await put_budget(budgets, GROUP, "cap", budget_body(amount=1.0, hardCap=True), "r1")
    await spend(db, A1, 0.6, datetime(2026, 7, 15, tzinfo=UTC))
    await budgets.evaluate()
    budgets.check(A1)  # 60%: admitted
    await spend(db, A2, 0.6, datetime(2026, 7, 16, tzinfo=UTC))
    await budgets.evaluate()
    error = blocked_error(budgets, A1)
    boundary = datetime(2026, 8, 1, tzinfo=UTC)
    seconds = int(boundary.timestamp() - clock.now)
    assert error.status == 429 and error.code == "BudgetExceeded"
    assert error.headers["retry-after"] == str(seconds) and error.headers["retry-after-ms"] == str(seconds * 1000)
    message = json.loads(error.body)["error"]["message"]
    assert "budget 'cap'" in message and "1.20 USD of 1.00 USD" in message
    assert f"resets at 2026-08-01T00:00:00Z (in {seconds} seconds)" in message
    assert blocked_error(budgets, A2).status == 429  # the whole group
    budgets.check(B1)  # another group
    budgets.check(X1)  # another subscription
    assert budgets.refused == 2

    clock.set(datetime(2026, 7, 31, 23, 59, 59, tzinfo=UTC))
    assert blocked_error(budgets, A1).headers["retry-after"] == "1"
    clock.set(boundary)
    budgets.check(A1)  # the period turned: admitted before any evaluation
    await budgets.evaluate()
    assert budgets.blocked == {}
    assert (await budget_json(budgets, await budgets.store.get(GROUP, "cap")))["properties"]["currentSpend"] == \
        {"amount": 0, "unit": "USD"}

    await spend(db, A2, 1.0, datetime(2026, 8, 1, 0, 0, 1, tzinfo=UTC))
    await budgets.evaluate()
    assert json.loads(blocked_error(budgets, A2).body)["error"]["message"].count("2026-09-01T00:00:00Z") == 1
    await delete_budget(budgets, GROUP, "cap", "r2")  # deleting it lifts the cap at once
    budgets.check(A2)


async def test_scopes_and_what_never_blocks(db):
    clock = Clock(datetime(2026, 7, 20, tzinfo=UTC))
    budgets = evaluator(db, clock)
    sub, a1 = f"/subscriptions/{SUB}", A1.arm_id
    await put_budget(budgets, a1, "one-account", budget_body(amount=0.5, hardCap=True), "r")
    await put_budget(budgets, GROUP, "soft", budget_body(amount=0.1), "r")  # no hard cap
    await spend(db, A1, 0.6, datetime(2026, 7, 19, tzinfo=UTC))
    await budgets.evaluate()
    assert set(budgets.blocked) == {A1.id}
    await put_budget(budgets, sub, "whole-sub", budget_body(amount=0.55, hardCap=True), "r")
    assert set(budgets.blocked) == {A1.id, A2.id, B1.id}  # a write is enforced before it answers
    assert budgets.blocked[A1.id].budget.name == "one-account"  # the account's own budget is named first
    body, created = await put_budget(budgets, sub, "whole-sub", budget_body(amount=10, hardCap=True), "r")
    assert created is False and body["properties"]["currentSpend"]["amount"] == pytest.approx(0.6)
    assert set(budgets.blocked) == {A1.id}
    ended = budget_body(amount=0.01, hardCap=True)
    ended["properties"]["timePeriod"]["endDate"] = "2026-07-19T00:00:00Z"
    await put_budget(budgets, GROUP, "ended", ended, "r")
    assert set(budgets.blocked) == {A1.id}  # a budget past its end date counts nothing


async def test_a_forecasted_threshold(db, receiver):
    clock = Clock(datetime(2026, 7, 11, tzinfo=UTC))  # 10 of 31 days gone
    budgets = evaluator(db, clock)
    await put_budget(budgets, GROUP, "f", budget_body(amount=10, notifications={
        "Forecasted_GreaterThan_100_Percent": {"operator": "GreaterThan", "threshold": 100,
                                               "thresholdType": "Forecasted", "webhookUrl": receiver.url}}), "r")
    await spend(db, A1, 3.0, datetime(2026, 7, 5, tzinfo=UTC))  # on course for 9.30
    await budgets.evaluate()
    await budgets.settled()
    assert receiver.bodies == []
    await spend(db, A1, 0.5, datetime(2026, 7, 6, tzinfo=UTC))  # on course for 10.85
    await budgets.evaluate()
    await budgets.settled()
    assert len(receiver.bodies) == 1
    assert receiver.bodies[0]["forecastSpend"]["amount"] == pytest.approx(3.5 * 3.1)
    assert receiver.bodies[0]["currentSpend"]["amount"] == pytest.approx(3.5)
    await budgets.stop()


async def test_its_numbers_on_metrics(db):
    budgets = evaluator(db, Clock(datetime(2026, 7, 20, tzinfo=UTC)))
    await put_budget(budgets, GROUP, "cap", budget_body(amount=0.1, hardCap=True), "r")
    await spend(db, A1, 0.2, datetime(2026, 7, 19, tzinfo=UTC))
    await budgets.evaluate()
    families = {f.name: f for f in budgets.collect()}
    assert families["lapis_budget_blocked_accounts"].samples[0].value == 2
    [spent] = families["lapis_budget_spend_usd"].samples
    assert spent.labels["budget_id"].endswith("/budgets/cap") and spent.value == pytest.approx(0.2)
    assert families["lapis_budget_evaluations"].samples[0].value == 2  # the write's, and this one
