"""Diagnostic settings and the activity log, stored unchanged on SQLite and PostgreSQL (fixture database_url)."""

from __future__ import annotations

import time

import pytest

from lapis.audit.events import event
from lapis.audit.filter import parse_filter
from lapis.audit.store import ActivityLogStore
from lapis.diagnostics.settings import DiagnosticSetting
from lapis.diagnostics.shaping import iso
from lapis.diagnostics.store import SettingsStore
from lapis.store.sql import SqlStore

SUB = "11111111-2222-3333-4444-555555555555"
ACCOUNT = f"/subscriptions/{SUB}/resourceGroups/RG1/providers/Microsoft.CognitiveServices/accounts/a1"


@pytest.fixture()
async def db(database_url):
    store = await SqlStore.open(database_url)
    yield store.db
    await store.close()


def setting(name: str, url: str, when: str = "2026-01-01T00:00:00Z") -> DiagnosticSetting:
    return DiagnosticSetting("acct1", name, ACCOUNT, "eastus", {"webhookUrl": url, "logs": [], "metrics": []},
                             created_at=when, created_by="admin@lapis.local", updated_at=when,
                             updated_by="admin@lapis.local")


async def test_settings_are_per_account_and_names_ignore_case(db):
    store = SettingsStore(db)
    assert await store.put(setting("Diag", "http://127.0.0.1:1/a"))
    assert not await store.put(setting("DIAG", "http://127.0.0.1:1/b", when="2026-02-01T00:00:00Z"))
    [found] = await store.for_account("acct1")
    assert found.name == "Diag" and found.properties["webhookUrl"] == "http://127.0.0.1:1/b"
    assert (found.created_at, found.updated_at) == ("2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z")
    assert (await store.get("acct1", "diag")).location == "eastus"
    assert await store.get("other-account", "diag") is None
    assert await store.delete("acct1", "dIaG") and not await store.delete("acct1", "diag")
    assert await store.all() == []


def make(action: str, status: int, when: float, caller: str = "admin@lapis.local", group: str = "RG1") -> dict:
    resource = ACCOUNT.replace("RG1", group)
    return event(action=action, localized_action=None, scope=resource, resource_id=resource,
                 category="Administrative", caller=caller, oid="", status=status, method="PUT",
                 client_ip="10.0.0.1", client_request_id="", correlation_id=f"c-{when}", request_id=f"r-{when}",
                 when=when)


async def test_activity_log_lists_newest_first_within_the_window(db):
    store = ActivityLogStore(db)
    t = float(int(time.time()) - 600)
    writes = [make("Microsoft.CognitiveServices/accounts/write", 200, t + i) for i in range(3)]
    writes.append(make("Microsoft.CognitiveServices/accounts/delete", 403, t + 10, caller="app-1", group="RG2"))
    writes.append(make("Microsoft.CognitiveServices/accounts/write", 200, t - 100 * 86400))  # past retention
    await store.add(writes)
    await store.add(writes[:1])  # a retried batch: kept once
    window = parse_filter(f"eventTimestamp ge '{iso(t - 200 * 86400)}' and eventTimestamp le '{iso(t + 10)}'", now=0)
    assert [e["correlationId"] for e in await store.list(SUB, window)] == [f"c-{t + d}" for d in (10, 2, 1, 0)]
    narrow = parse_filter(f"eventTimestamp ge '{iso(t + 1)}' and eventTimestamp le '{iso(t + 1.5)}'", now=0)
    assert [e["correlationId"] for e in await store.list(SUB, narrow)] == [f"c-{t + 1}"]
    failed = parse_filter(f"eventTimestamp ge '{iso(t)}' and eventTimestamp le '{iso(t + 20)}' and "
                          "status eq 'FAILED' and caller eq 'APP-1' and resourceGroupName eq 'rg2'", now=0)
    [denied] = await store.list(SUB, failed)
    assert denied["subStatus"]["value"] == "Forbidden" and denied["caller"] == "app-1"
    paged = await store.list(SUB, window, skip=1, top=2)
    assert [e["correlationId"] for e in paged] == [f"c-{t + 2}", f"c-{t + 1}"]
    assert await store.list("99999999-2222-3333-4444-555555555555", window) == []


@pytest.fixture()
def postgres_url():
    from support.databases import create_database, drop_database

    name, url = create_database()
    yield url
    drop_database(name)


async def test_replicas_share_settings_and_the_activity_log(postgres_url, tmp_path):
    from support.diagnostics_harness import DEMO_ACCOUNT, SUB, start_lapis
    from support.log_receivers import Receiver, until

    shared = {"LAPIS_DATABASE_URL": postgres_url, "LAPIS_KEK_FILE": str(tmp_path / "kek")}  # replicas share both
    first = await start_lapis(tmp_path / "a", **shared)
    second = await start_lapis(tmp_path / "b", **shared)
    hook = await Receiver().start()
    try:
        status, _ = await first.put_setting(DEMO_ACCOUNT, "shared", {
            "webhookUrl": hook.url, "logs": [{"category": "RequestResponse", "enabled": True}]})
        assert status == 200
        key = await second.key(DEMO_ACCOUNT)
        # the other replica hears of the new setting (NOTIFY) and feeds it too
        await until(lambda: second.services.diagnostics.routes.get(
            next(iter(first.services.diagnostics.routes))) is not None)
        _, request_id = await second.chat(key)
        await until(lambda: [r["correlationId"] for r in hook.records()] == [request_id])
        status, body = await second.arm("GET", f"/subscriptions/{SUB}/providers/Microsoft.Insights/eventtypes/"
                                        "management/values", api_version="2015-04-01",
                                        params={"$filter": f"eventTimestamp ge '{iso(time.time() - 600)}'"})
        assert status == 200
        assert "Microsoft.Insights/diagnosticSettings/write" in [e["operationName"]["value"] for e in body["value"]]
    finally:
        await hook.stop()
        await first.client.close()
        await second.client.close()
