"""The budget store on SQLite and PostgreSQL: budgets keyed without case, eTags, and
the notification claim that replicas race for (exactly one wins; here replicas are
separate connections to one database, each with its own evaluator)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest

from lapis.budgets.evaluator import Budgets
from lapis.budgets.model import parse_budget
from lapis.budgets.store import BudgetStore, EtagMismatch
from lapis.store.database import open_database
from lapis.store.metering import MeteringStore
from lapis.store.migrate import migrate
from support.log_receivers import Receiver

NOW = datetime(2026, 7, 18, tzinfo=timezone.utc)
SUB = "2c6d6e8a-6c61-7069-7300-0000000000cc"
GROUP = f"/subscriptions/{SUB}/resourceGroups/Team-RG"


def budget(name: str = "Cap", amount: float = 1.0, **props):
    body = {"properties": {"category": "Cost", "amount": amount, "timeGrain": "Monthly",
                           "timePeriod": {"startDate": "2026-07-01"}, **props}}
    return parse_budget(GROUP, name, body, NOW)


@pytest.fixture()
async def databases(database_url: str):
    """Five connections (pools) to one fresh database, migrated."""
    first = await open_database(database_url)
    await migrate(first)
    others = [await open_database(database_url) for _ in range(4)]
    yield [first, *others]
    for db in [first, *others]:
        await db.close()


async def test_budgets_by_scope_and_name_any_case(databases):
    store = BudgetStore(databases[0])
    stored, created = await store.put(budget(), None, "2026-07-18T00:00:00Z")
    assert created and stored.etag.startswith('"') and stored.created_at == "2026-07-18T00:00:00Z"
    again, created = await store.put(budget(name="CAP", amount=2.0), stored.etag, "2026-07-19T00:00:00Z")
    assert not created and again.name == "Cap" and again.etag != stored.etag  # the first spelling stays
    with pytest.raises(EtagMismatch):
        await store.put(budget(), stored.etag, "2026-07-20T00:00:00Z")
    found = await BudgetStore(databases[1]).get(GROUP.upper(), "cap")
    assert found is not None and found.amount == 2.0 and found.created_at == "2026-07-18T00:00:00Z"
    assert [b.name for b in await store.at_scope(GROUP.lower())] == ["Cap"]
    assert await store.delete(GROUP, "CAP") and not await store.delete(GROUP, "cap")
    assert await store.all() == []


async def test_one_claim_wins(databases):
    stores = [BudgetStore(db) for db in databases]
    target = budget()
    await stores[0].put(target, None, "t")
    won = await asyncio.gather(*(s.claim(target, "n@80", "2026-07-01T00:00:00Z", 5, f"replica-{i}", "t")
                                 for i, s in enumerate(stores) for _ in range(3)))
    assert won.count(True) == 1
    assert not await stores[0].claim(target, "N@80", "2026-07-01T00:00:00Z", 5, "late", "t")  # any case
    assert await stores[0].claim(target, "n@80", "2026-08-01T00:00:00Z", 5, "next period", "t")
    await stores[1].settle(target, "n@80", "2026-07-01T00:00:00Z", "delivered")
    assert [(n["period_start"], n["status"]) for n in await stores[0].notices(target)] == [
        ("2026-07-01T00:00:00Z", "delivered"), ("2026-08-01T00:00:00Z", "claimed")]


async def test_replicas_evaluating_together_send_one_notification(databases):
    receiver = await Receiver().start()
    try:
        note = {"n": {"operator": "GreaterThan", "threshold": 50, "webhookUrl": receiver.url}}
        await BudgetStore(databases[0]).put(budget(notifications=note), None, "t")
        arm_id = f"{GROUP}/providers/Microsoft.CognitiveServices/accounts/a1"
        row = (str(uuid.uuid4()), int(datetime(2026, 7, 10, tzinfo=timezone.utc).timestamp() * 1000), 20260710,
               SUB, "Team-RG", "id-a1", arm_id, "eastus", "d", "gpt-4o-mini", "2024-07-18", "Standard", "key1",
               "ChatCompletions_Create", "{}", 10, 0, 5, 900_000_000, 0, 0)
        await MeteringStore(databases[0]).add_usage([row])
        directory = SimpleNamespace(by_id={})
        replicas = [Budgets(db, directory, clock=lambda: NOW.timestamp(), settle_s=0) for db in databases]
        await asyncio.gather(*(r.evaluate() for r in replicas))
        await asyncio.gather(*(r.settled() for r in replicas))
        assert len(receiver.bodies) == 1
        assert receiver.bodies[0]["currentSpend"]["amount"] == pytest.approx(0.9)
        for replica in replicas:
            await replica.stop()
    finally:
        await receiver.stop()
