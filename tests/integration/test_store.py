"""The store, run unchanged against SQLite and PostgreSQL (fixture database_url)."""

from __future__ import annotations

import pytest

from lapis.store.migrate import available, migrate
from lapis.store.records import Account, Deployment, ResourceGroup, Subscription
from lapis.store.sql import Conflict, SqlStore

SUB = "11111111-2222-3333-4444-555555555555"


def account(name: str, subdomain: str | None, account_id: str | None = None) -> Account:
    return Account(id=account_id or name.lower().ljust(32, "0"), subscription_id=SUB, group="RG-One", name=name,
                   kind="OpenAI", sku_name="S0", location="eastus", key1="k1" * 16, key2="k2" * 16, etag='"e"',
                   doc={"properties": {"customSubDomainName": subdomain} if subdomain else {}, "tags": {"a": "b"}},
                   created_at="2026-01-01T00:00:00Z", updated_at="2026-01-01T00:00:00Z")


async def open_store(url: str) -> SqlStore:
    store = await SqlStore.open(url)
    await store.add_subscription(Subscription(SUB, "test", "tenant", created_at="2026-01-01T00:00:00Z"))
    await store.put_group(ResourceGroup(SUB, "RG-One", "eastus", {}, "2026-01-01T00:00:00Z"))
    return store


async def test_migrations_are_versioned_and_idempotent(database_url):
    store = await SqlStore.open(database_url)
    try:
        rows = await store.db.fetch("SELECT version, name FROM schema_migrations ORDER BY version")
        assert [(r["version"], r["name"]) for r in rows] == [(v, n) for v, n, _ in available()]
        assert await migrate(store.db) == []
    finally:
        await store.close()


async def test_accounts_round_trip_case_insensitively(database_url):
    store = await open_store(database_url)
    try:
        assert await store.save_account(account("MyAcct", "MySub")) is True
        found = await store.account(SUB, "rg-one", "myacct")
        assert found is not None and found.name == "MyAcct" and found.group == "RG-One"
        assert found.doc["tags"] == {"a": "b"} and found.subdomain == "MySub"
        found.key1 = "new" * 10
        assert await store.save_account(found) is False
        assert (await store.account_by_id(found.id)).key1 == "new" * 10
        assert [a.name for a in await store.accounts(SUB)] == ["MyAcct"]
    finally:
        await store.close()


async def test_subdomains_are_unique_across_accounts(database_url):
    store = await open_store(database_url)
    try:
        await store.save_account(account("first", "shared"))
        with pytest.raises(Conflict):
            await store.save_account(account("second", "SHARED"))
        assert [a.name for a in await store.accounts()] == ["first"]
    finally:
        await store.close()


async def test_deployments_and_cascading_deletes(database_url):
    store = await open_store(database_url)
    try:
        acct = account("withdeps", "withdeps")
        await store.save_account(acct)
        dep = Deployment(acct.id, "Chat", "OpenAI", "gpt-4o-mini", "2024-07-18", "Standard", 10, '"e"',
                         {"raiPolicyName": "Microsoft.DefaultV2"}, "t", "t")
        assert await store.save_deployment(dep) is True
        dep.capacity = 20
        assert await store.save_deployment(dep) is False
        assert (await store.deployment(acct.id, "chat")).capacity == 20
        assert await store.delete_deployment(acct.id, "CHAT") is True
        assert await store.deployment(acct.id, "chat") is None
        await store.save_deployment(dep)
        assert await store.delete_group(SUB, "rg-one") is True
        assert await store.accounts() == [] and await store.deployments() == []
    finally:
        await store.close()


async def test_settings_keep_their_first_value(database_url):
    store = await open_store(database_url)
    try:
        assert await store.setting("admin_token", "one") == "one"
        assert await store.setting("admin_token", "two") == "one"
    finally:
        await store.close()


async def test_registration_states(database_url):
    store = await open_store(database_url)
    try:
        assert await store.registration(SUB, "Microsoft.CognitiveServices") == "NotRegistered"
        await store.set_registration(SUB, "Microsoft.CognitiveServices", "Registered")
        assert await store.registration(SUB, "microsoft.cognitiveservices") == "Registered"
    finally:
        await store.close()
