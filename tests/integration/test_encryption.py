"""Encryption at rest: no secret Lapis stores can be read off the disk or the database.

A real server on SQLite runs the day's business (an account, a regenerated
key, a service principal and its token, data-plane calls); then every byte
of the database file, its WAL, and every file under LAPIS_HOME except the
KEK itself is searched for the secrets, and so is the server's log. On
PostgreSQL the same is done over the text of every column of every table.
Older databases holding secrets in the clear are sealed at start-up, and a
process holding another KEK refuses the database instead of guessing.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest
import requests

from lapis.crypto import fields
from lapis.crypto.keyring import WrongKek
from lapis.identity.signing import SigningKeys, new_private_pem
from lapis.store.records import ResourceGroup, Subscription
from lapis.store.sql import SqlStore
from support.databases import create_database, drop_database
from support.server import DEFAULT_SUBSCRIPTION, LapisProcess, start_server

SUB = f"/subscriptions/{DEFAULT_SUBSCRIPTION}"
TENANT = "2c6d6e8a-6c61-7069-7300-000000000000"
V = "2024-10-21"


def business(server: LapisProcess) -> list[str]:
    """Create, regenerate, call, make a service principal and use it; the secrets seen on the way."""
    server.arm("POST", f"{SUB}/providers/Microsoft.CognitiveServices/register")
    server.arm("PUT", f"{SUB}/resourceGroups/rg", {"location": "eastus"})
    path = server.account_path("rg", "sealed1")
    assert server.arm("PUT", path, {"kind": "OpenAI", "sku": {"name": "S0"}, "location": "eastus",
                                    "properties": {"customSubDomainName": "sealed1"}}).status_code == 201
    assert server.arm("PUT", f"{path}/deployments/chat", {"sku": {"name": "Standard", "capacity": 5}, "properties": {
        "model": {"format": "OpenAI", "name": "gpt-4o-mini"}}}).status_code == 201
    first = server.arm("POST", f"{path}/listKeys").json()
    second = server.arm("POST", f"{path}/regenerateKey", {"keyName": "Key1"}).json()
    assert second["key1"] != first["key1"] and second["key2"] == first["key2"]
    for key, status in ((first["key1"], 401), (second["key1"], 200), (second["key2"], 200)):
        answer = requests.post(f"{server.url}/accounts/sealed1/openai/deployments/chat/chat/completions",
                               params={"api-version": V}, headers={"api-key": key}, timeout=30,
                               json={"messages": [{"role": "user", "content": "hello"}]})
        assert answer.status_code == status
    admin = {"Authorization": f"Bearer {server.admin_token}"}
    sp = requests.post(f"{server.url}/lapis/admin/servicePrincipals", json={"displayName": "scanner"}, headers=admin,
                       timeout=30).json()
    token = requests.post(f"{server.url}/{TENANT}/oauth2/v2.0/token", timeout=30, data={
        "grant_type": "client_credentials", "client_id": sp["appId"], "client_secret": sp["password"],
        "scope": "https://cognitiveservices.azure.com/.default"})
    assert token.status_code == 200
    header = requests.get(f"{server.url}/lapis/admin/identity/environment", headers=admin,
                          timeout=30).json()["IDENTITY_HEADER"]
    return [first["key1"], first["key2"], second["key1"], sp["password"], header]


async def private_pems(database_url: str, kek_file: Path) -> list[str]:
    """The signing keys' PEM text, opened with the server's KEK (what must not be on disk)."""
    store = await SqlStore.open(database_url, kek_file)
    try:
        rows = await store.db.fetch("SELECT kid, private_pem FROM signing_keys")
        assert rows and all(r["private_pem"].startswith("lapis:v1:service:") for r in rows)
        return [await store.keyring.open(r["private_pem"], fields.signing_key(r["kid"])) for r in rows]
    finally:
        await store.close()


def pem_fragments(pems: list[str]) -> list[str]:
    """Every base64 line of every private key: any of them on disk would leak key material."""
    return [line for pem in pems for line in pem.splitlines() if line and not line.startswith("-----")]


def files_under(home: Path) -> dict[str, bytes]:
    return {str(p.relative_to(home)): p.read_bytes() for p in home.rglob("*")
            if p.is_file() and p != home / "keys" / "kek"}


@pytest.fixture(scope="module")
def sqlite_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    home = tmp_path_factory.mktemp("sealed") / "home"
    server = start_server(home)
    try:
        secrets = business(server)
        while_running = files_under(home)
    finally:
        server.stop()
    url = f"sqlite:///{home / 'data' / 'lapis.sqlite3'}"
    after = files_under(home)  # read before opening the database again
    pems = asyncio.run(private_pems(url, home / "keys" / "kek"))
    return {"home": home, "secrets": secrets, "pems": pems, "running": while_running, "after": after,
            "log": server.log()}


def test_the_database_file_and_its_wal_hold_no_secret(sqlite_run):
    files = sqlite_run["running"]
    assert "data/lapis.sqlite3" in files and "data/lapis.sqlite3-wal" in files
    for name in ("data/lapis.sqlite3", "data/lapis.sqlite3-wal"):
        for secret in sqlite_run["secrets"]:
            assert secret.encode() not in files[name], name
        for fragment in pem_fragments(sqlite_run["pems"]):
            assert fragment.encode() not in files[name], name
        assert b"PRIVATE KEY" not in files[name]
    assert b"lapis:v1:acct-" in files["data/lapis.sqlite3"] + files["data/lapis.sqlite3-wal"]


def test_no_file_under_lapis_home_holds_a_secret(sqlite_run):
    for files in (sqlite_run["running"], sqlite_run["after"]):
        assert "server.json" in files and "server.log" in files
        for name, raw in files.items():
            for secret in sqlite_run["secrets"] + pem_fragments(sqlite_run["pems"]):
                assert secret.encode() not in raw, name
            assert b"PRIVATE KEY" not in raw, name


def test_the_kek_file_is_the_only_key_and_is_owner_only(sqlite_run):
    kek = sqlite_run["home"] / "keys" / "kek"
    assert kek.stat().st_mode & 0o777 == 0o600
    assert (kek.parent.stat().st_mode & 0o777) == 0o700


def test_the_server_log_holds_no_key_or_secret(sqlite_run):
    log = sqlite_run["log"]
    assert "Lapis is listening" in log  # it is the server's log, and it was written
    for secret in sqlite_run["secrets"] + pem_fragments(sqlite_run["pems"]):
        assert secret not in log


async def _all_column_text(url: str) -> str:
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        tables = [r["table_name"] for r in await conn.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")]
        assert {"accounts", "signing_keys", "settings", "service_principals", "data_keys"} <= set(tables)
        text = []
        for table in tables:
            for row in await conn.fetch(f'SELECT * FROM "{table}"'):
                text.extend(str(value) for value in row.values())
        return "\n".join(text)
    finally:
        await conn.close()


def test_postgresql_rows_hold_no_secret(tmp_path):
    name, url = create_database()
    home = tmp_path / "home"
    try:
        server = start_server(home, LAPIS_DATABASE_URL=url)
        try:
            secrets = business(server)
        finally:
            server.stop()
        text = asyncio.run(_all_column_text(url))
        assert "lapis:v1:acct-" in text and "lapis:v1:service:" in text
        for secret in secrets + pem_fragments(asyncio.run(private_pems(url, home / "keys" / "kek"))):
            assert secret not in text
        assert "PRIVATE KEY" not in text
        for secret in secrets:
            assert secret not in server.log()
    finally:
        drop_database(name)


async def test_secrets_an_older_lapis_stored_in_the_clear_are_sealed_at_start(database_url, tmp_path):
    kek_file = tmp_path / "kek"
    store = await SqlStore.open(database_url, kek_file)
    kid, pem = new_private_pem()
    plain = (uuid.uuid4().hex, uuid.uuid4().hex)
    try:
        await store.add_subscription(Subscription("11111111-0000-0000-0000-000000000001", "old", TENANT,
                                                  created_at="2026-01-01T00:00:00Z"))
        await store.put_group(ResourceGroup("11111111-0000-0000-0000-000000000001", "rg", "eastus", {}, "2026"))
        async with store.db.transaction() as conn:  # what a Lapis before migration 007 wrote
            await conn.execute(
                "INSERT INTO accounts (id, subscription_id, group_key, name_key, name, kind, sku_name, location, "
                "subdomain_key, key1, key2, etag, doc, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
                "?, ?, ?, ?, ?)", "a" * 32, "11111111-0000-0000-0000-000000000001", "rg", "old", "old", "OpenAI",
                "S0", "eastus", None, plain[0], plain[1], '"e"', json.dumps({"properties": {}}), "2026", "2026")
            await conn.execute("INSERT INTO signing_keys (kid, private_pem, created_at, retired_at) VALUES "
                               "(?, ?, ?, NULL)", kid, pem, "2026-01-01T00:00:00+00:00")
            await conn.execute("INSERT INTO settings (name, value) VALUES (?, ?)", "admin_token", "legacy-admin-token")
    finally:
        await store.close()
    again = await SqlStore.open(database_url, kek_file)
    try:
        row = await again.db.fetchrow("SELECT key1, key2 FROM accounts WHERE id = ?", "a" * 32)
        assert row["key1"].startswith("lapis:v1:acct-") and row["key2"].startswith("lapis:v1:acct-")
        pem_row = await again.db.fetchrow("SELECT private_pem FROM signing_keys WHERE kid = ?", kid)
        assert pem_row["private_pem"].startswith("lapis:v1:service:")
        setting = await again.db.fetchrow("SELECT value FROM settings WHERE name = 'admin_token'")
        assert setting["value"].startswith("lapis:v1:service:")
        account = await again.account_by_id("a" * 32)
        assert (account.key1, account.key2) == plain
        assert await again.setting("admin_token", "unused") == "legacy-admin-token"
        keys = await SigningKeys.load_or_create(again.db, sealer=again.keyring)
        assert keys.lookup(kid) is not None
    finally:
        await again.close()
    if database_url.startswith("sqlite:///"):
        path = Path(database_url[len("sqlite:///"):])
        raw = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
        for secret in (*plain, "legacy-admin-token", *pem_fragments([pem])):
            assert secret.encode() not in raw


async def test_another_kek_is_refused_and_says_how_to_fix_it(database_url, tmp_path):
    first = await SqlStore.open(database_url, tmp_path / "first")  # makes the service data key
    await first.close()
    with pytest.raises(WrongKek) as caught:
        await SqlStore.open(database_url, tmp_path / "second")
    assert "LAPIS_KEK_FILE" in str(caught.value) and str(tmp_path / "second") in str(caught.value)


async def test_deleting_an_account_deletes_its_data_key(database_url, tmp_path):
    from lapis.store.records import Account

    store = await SqlStore.open(database_url, tmp_path / "kek")
    try:
        sub = "11111111-0000-0000-0000-000000000002"
        await store.add_subscription(Subscription(sub, "s", TENANT, created_at="2026"))
        await store.put_group(ResourceGroup(sub, "rg", "eastus", {}, "2026"))
        account = Account(id="b" * 32, subscription_id=sub, group="rg", name="gone", kind="OpenAI", sku_name="S0",
                          location="eastus", key1="k" * 32, key2="j" * 32, etag='"e"', created_at="2026",
                          updated_at="2026")
        await store.save_account(account)
        assert await store.db.fetchrow("SELECT id FROM data_keys WHERE id = ?", "acct-" + "b" * 32)
        assert await store.delete_account(account.id)
        assert await store.db.fetchrow("SELECT id FROM data_keys WHERE id = ?", "acct-" + "b" * 32) is None
    finally:
        await store.close()


async def test_a_disabled_customer_key_locks_the_account_in_the_store(database_url, tmp_path):
    from lapis.crypto.keyring import VaultRef
    from lapis.store.records import Account
    from lapis.store.sql import Locked

    store = await SqlStore.open(database_url, tmp_path / "kek")
    try:
        sub = "11111111-0000-0000-0000-000000000003"
        await store.add_subscription(Subscription(sub, "s", TENANT, created_at="2026"))
        await store.put_group(ResourceGroup(sub, "rg", "eastus", {}, "2026"))
        account = Account(id="c" * 32, subscription_id=sub, group="rg", name="cmk", kind="OpenAI", sku_name="S0",
                          location="eastus", key1="1" * 32, key2="2" * 32, etag='"e"', created_at="2026",
                          updated_at="2026")
        await store.save_account(account)
        made = await store.keyring.vault.create_key("kv1", "k1")
        assert await store.keyring.rewrap("acct-" + "c" * 32, VaultRef("kv1", "k1"))
        assert not await store.keyring.rewrap("acct-" + "c" * 32, VaultRef("kv1", "k1"))  # already so
        assert (await store.account_by_id(account.id)).key1 == "1" * 32
        await store.keyring.vault.update("kv1", "k1", None, enabled=False)
        locked = await store.account_by_id(account.id)
        assert locked.locked == f"kv1/k1/{made.version}" and (locked.key1, locked.key2) == ("", "")
        with pytest.raises(Locked):
            await store.save_account(locked)
        await store.keyring.vault.update("kv1", "k1", made.version, enabled=True)
        back = await store.account_by_id(account.id)
        assert (back.locked, back.key1, back.key2) == ("", "1" * 32, "2" * 32)
        assert await store.keyring.rewrap("acct-" + "c" * 32, None)  # back to the service KEK
        await store.keyring.vault.update("kv1", "k1", None, enabled=False)
        assert (await store.account_by_id(account.id)).key2 == "2" * 32
    finally:
        await store.close()
