"""The quota store, run unchanged against SQLite and PostgreSQL (fixture database_url):
capacity sums from deployments, limit overrides, quota requests and their decisions."""

from __future__ import annotations

import pytest

from lapis.store.quota import APPROVED, PENDING, REJECTED, QuotaRequest, QuotaStore
from lapis.store.records import Account, Deployment, ResourceGroup, Subscription
from lapis.store.sql import SqlStore

SUB = "11111111-2222-3333-4444-555555555555"
OTHER = "66666666-7777-8888-9999-000000000000"
T = "2026-01-01T00:00:00Z"


def account(name: str, location: str, sub: str = SUB) -> Account:
    return Account(id=name.ljust(32, "0"), subscription_id=sub, group="rg", name=name, kind="OpenAI", sku_name="S0",
                   location=location, key1="k" * 32, key2="l" * 32, etag='"e"', doc={}, created_at=T, updated_at=T)


def deployment(acct: Account, name: str, model: str, sku: str, capacity: int) -> Deployment:
    return Deployment(acct.id, name, "OpenAI", model, "v", sku, capacity, '"e"', {}, T, T)


def request(req_id: str, sub: str = SUB, created: str = T) -> QuotaRequest:
    return QuotaRequest(id=req_id, subscription_id=sub, location="eastus", usage_name="OpenAI.Standard.gpt-4o-mini",
                        model="gpt-4o-mini", sku="Standard", requested_limit=600, previous_limit=450,
                        created_at=created)


@pytest.fixture()
async def stores(database_url):
    store = await SqlStore.open(database_url)
    for sub in (SUB, OTHER):
        await store.add_subscription(Subscription(sub, sub[:4], "tenant", created_at=T))
        await store.put_group(ResourceGroup(sub, "rg", "eastus", {}, T))
    yield store, QuotaStore(store.db)
    await store.close()


async def test_used_capacity_sums_deployments_of_one_quota(stores):
    store, quota = stores
    east1, east2, west, elsewhere = (account("east1", "eastus"), account("east2", "eastus"),
                                     account("west", "westus"), account("other", "eastus", OTHER))
    for acct in (east1, east2, west, elsewhere):
        await store.save_account(acct)
    for dep in (deployment(east1, "a", "gpt-4o-mini", "Standard", 100),
                deployment(east1, "b", "gpt-4o-mini", "Standard", 20),
                deployment(east2, "c", "gpt-4o-mini", "Standard", 30),
                deployment(east2, "d", "gpt-4o-mini", "GlobalStandard", 7),
                deployment(east2, "e", "gpt-4o", "Standard", 5),
                deployment(west, "f", "gpt-4o-mini", "Standard", 1000),
                deployment(elsewhere, "g", "gpt-4o-mini", "Standard", 2000)):
        await store.save_deployment(dep)

    assert await quota.used_capacity(SUB, "eastus", "gpt-4o-mini", "Standard") == 150
    assert await quota.used_capacity(SUB.upper(), "EastUS", "GPT-4o-Mini", "standard") == 150
    assert await quota.used_capacity(SUB, "eastus", "gpt-4o-mini", "GlobalStandard") == 7
    assert await quota.used_capacity(SUB, "westus", "gpt-4o-mini", "Standard") == 1000
    assert await quota.used_capacity(SUB, "eastus", "gpt-4.1", "Standard") == 0
    assert await quota.usage_in_location(SUB, "eastus") == {
        ("gpt-4o-mini", "standard"): 150, ("gpt-4o-mini", "globalstandard"): 7, ("gpt-4o", "standard"): 5}

    # what is deleted no longer counts
    assert await store.delete_deployment(east1.id, "a")
    assert await quota.used_capacity(SUB, "eastus", "gpt-4o-mini", "Standard") == 50
    assert await store.delete_account(east2.id)
    assert await quota.used_capacity(SUB, "eastus", "gpt-4o-mini", "Standard") == 20
    assert await quota.usage_in_location(SUB, "eastus") == {("gpt-4o-mini", "standard"): 20}


async def test_limit_overrides_upsert(stores):
    _, quota = stores
    name = "OpenAI.Standard.gpt-4o-mini"
    assert await quota.limit_override(SUB, "eastus", name) is None
    await quota.set_limit(SUB, "eastus", name, 600, T)
    await quota.set_limit(SUB, "eastus", name, 700, "2026-01-02T00:00:00Z")
    await quota.set_limit(SUB, "westus", name, 800, T)
    assert await quota.limit_override(SUB, "EastUS", name) == 700
    assert await quota.limit_overrides(SUB, "eastus") == {name: 700}
    assert await quota.limit_overrides(OTHER, "eastus") == {}


async def test_requests_round_trip_and_filter(stores):
    _, quota = stores
    await quota.add_request(request("r2", created="2026-01-02T00:00:00Z"))
    await quota.add_request(request("r1"))
    await quota.add_request(request("r3", OTHER))
    found = await quota.request("R1")
    assert found == request("r1")
    assert found.state == PENDING and found.decided_at is None and found.reason is None
    assert [r.id for r in await quota.requests(SUB)] == ["r1", "r2"]
    assert [r.id for r in await quota.requests()] == ["r1", "r3", "r2"]
    assert [r.id for r in await quota.requests(OTHER, PENDING)] == ["r3"]
    assert await quota.request("missing") is None


async def test_approval_sets_the_limit_in_the_same_transaction(stores):
    _, quota = stores
    await quota.add_request(request("r1"))
    decided = await quota.decide("r1", APPROVED, "2026-02-01T00:00:00Z", "admin@lapis.local", new_limit=600)
    assert decided is not None and decided.state == APPROVED
    assert (decided.decided_at, decided.decided_by, decided.reason) == ("2026-02-01T00:00:00Z", "admin@lapis.local",
                                                                        None)
    assert await quota.limit_override(SUB, "eastus", "OpenAI.Standard.gpt-4o-mini") == 600
    assert await quota.request("r1") == decided
    # a decided request stays decided
    assert await quota.decide("r1", REJECTED, "2026-02-02T00:00:00Z", "someone", reason="late") is None
    assert (await quota.request("r1")).state == APPROVED


async def test_rejection_records_the_reason_and_keeps_the_limit(stores):
    _, quota = stores
    await quota.add_request(request("r1"))
    decided = await quota.decide("r1", REJECTED, "2026-02-01T00:00:00Z", "admin@lapis.local", reason="no capacity")
    assert decided is not None and (decided.state, decided.reason) == (REJECTED, "no capacity")
    assert await quota.limit_overrides(SUB, "eastus") == {}
    assert await quota.decide("missing", APPROVED, T, "admin", new_limit=1) is None
    with pytest.raises(ValueError):
        await quota.decide("r1", PENDING, T, "admin")
