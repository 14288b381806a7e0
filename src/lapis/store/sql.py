"""SqlStore: the records of lapis.store.records on SQLite or PostgreSQL.

One class serves both databases (lapis.store.database hides the driver).
Each public write is one transaction. Lookups by name use the lower-cased
*_key columns, because Azure names are case-insensitive.

Secrets are sealed at rest (lapis.crypto): an account's key1/key2 under its
own data key, secret settings under the service data key. `_seal_keys` and
`_open_keys` are the only paths between those columns and the records;
callers see plaintext. An account whose customer-managed key is disabled
reads back `locked`, with empty keys, and cannot be saved until the key is
enabled again (Locked), so nothing is ever overwritten with what could not
be read. Deleting an account deletes its data key.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lapis.crypto import fields, kek
from lapis.crypto.envelope import is_sealed
from lapis.crypto.keyring import KeyUnavailable, Keyring, account_key_id
from lapis.store.database import Database, Row, open_database
from lapis.store.migrate import migrate
from lapis.store.records import Account, Deployment, ResourceGroup, Subscription


class Conflict(Exception):
    """A uniqueness rule would be broken (e.g. a custom subdomain in use)."""


class Locked(Exception):
    """The account's secrets cannot be opened now (its customer-managed key is disabled)."""


def _account(row: Row, keys: tuple[str, str], locked: str = "") -> Account:
    return Account(
        id=row["id"], subscription_id=row["subscription_id"], group=row["group_name"], name=row["name"],
        kind=row["kind"], sku_name=row["sku_name"], location=row["location"], key1=keys[0],
        key2=keys[1], etag=row["etag"], doc=json.loads(row["doc"]), created_at=row["created_at"],
        updated_at=row["updated_at"], locked=locked,
    )


def _deployment(row: Row) -> Deployment:
    return Deployment(
        account_id=row["account_id"], name=row["name"], model_format=row["model_format"],
        model_name=row["model_name"], model_version=row["model_version"], sku_name=row["sku_name"],
        capacity=int(row["capacity"]), etag=row["etag"], doc=json.loads(row["doc"]),
        created_at=row["created_at"], updated_at=row["updated_at"],
    )


_ACCOUNT_SELECT = (
    "SELECT a.*, g.name AS group_name FROM accounts a JOIN resource_groups g "
    "ON g.subscription_id = a.subscription_id AND g.name_key = a.group_key"
)


class SqlStore:
    def __init__(self, db: Database, keyring: Keyring):
        self.db = db
        self.keyring = keyring

    @classmethod
    async def open(cls, url: str, kek_file: Path | None = None) -> "SqlStore":
        """Open, migrate, start the keyring under the KEK in `kek_file` (default: the
        settings' kek_file) and seal any secret an older Lapis stored in the clear."""
        if kek_file is None:
            from lapis import settings

            kek_file = settings.load().kek_file
        service_kek = kek.load_or_create(kek_file)
        db = await open_database(url)
        try:
            if db.dialect == "sqlite":
                await db.fetch("PRAGMA secure_delete = ON")  # freed bytes are zeroed, not left behind
            await migrate(db)
            keyring = Keyring(db, service_kek)
            await keyring.start()
            await fields.seal_plaintext(db, keyring)
        except BaseException:
            await db.close()
            raise
        return cls(db, keyring)

    # -- sealed columns -----------------------------------------------------

    async def _seal_keys(self, account: Account) -> tuple[str, str]:
        key_id = account_key_id(account.id)
        return (await self.keyring.seal(key_id, account.key1, fields.account_secret(account.id, "key1")),
                await self.keyring.seal(key_id, account.key2, fields.account_secret(account.id, "key2")))

    async def _open_keys(self, row: Row) -> Account:
        try:
            keys = await self.keyring.open_all(
                [(row[c], fields.account_secret(row["id"], c)) for c in ("key1", "key2")])
        except KeyUnavailable as gone:
            return _account(row, ("", ""), f"{gone.vault}/{gone.name}/{gone.version}")
        return _account(row, (keys[0], keys[1]))

    async def close(self) -> None:
        await self.db.close()

    # -- settings -----------------------------------------------------------

    async def setting(self, name: str, default: str) -> str:
        """Return the stored value, storing `default` first if there is none.
        Names in fields.SECRET_SETTINGS are stored sealed."""
        secret = name in fields.SECRET_SETTINGS
        stored_default = self.keyring.seal_service(default, fields.setting(name)) if secret else default
        async with self.db.transaction() as conn:
            row = await conn.fetchrow("SELECT value FROM settings WHERE name = ?", name)
            if row is None:
                await conn.execute("INSERT INTO settings (name, value) VALUES (?, ?)", name, stored_default)
                return default
        value = row["value"]
        if secret and is_sealed(value):
            return self.keyring.open_service(value, fields.setting(name)).decode()
        return value

    # -- subscriptions --------------------------------------------------------

    async def add_subscription(self, sub: Subscription) -> bool:
        """Insert unless present; True when inserted."""
        async with self.db.transaction() as conn:
            if await conn.fetchrow("SELECT id FROM subscriptions WHERE id = ?", sub.id):
                return False
            await conn.execute(
                "INSERT INTO subscriptions (id, display_name, tenant_id, state, openai_approved, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                sub.id, sub.display_name, sub.tenant_id, sub.state, int(sub.openai_approved), sub.created_at,
            )
            return True

    async def subscription(self, sub_id: str) -> Subscription | None:
        row = await self.db.fetchrow("SELECT * FROM subscriptions WHERE id = ?", sub_id.lower())
        return _subscription(row) if row else None

    async def subscriptions(self) -> list[Subscription]:
        return [_subscription(r) for r in await self.db.fetch("SELECT * FROM subscriptions ORDER BY created_at, id")]

    async def approve_subscription(self, sub_id: str, approved: bool = True) -> bool:
        async with self.db.transaction() as conn:
            count = await conn.execute(
                "UPDATE subscriptions SET openai_approved = ? WHERE id = ?", int(approved), sub_id.lower()
            )
            return count > 0

    # -- provider registrations ---------------------------------------------

    async def registration(self, sub_id: str, namespace: str) -> str:
        row = await self.db.fetchrow(
            "SELECT state FROM provider_registrations WHERE subscription_id = ? AND namespace_key = ?",
            sub_id, namespace.lower(),
        )
        return row["state"] if row else "NotRegistered"

    async def set_registration(self, sub_id: str, namespace: str, state: str) -> None:
        async with self.db.transaction() as conn:
            count = await conn.execute(
                "UPDATE provider_registrations SET state = ?, namespace = ? WHERE subscription_id = ? "
                "AND namespace_key = ?", state, namespace, sub_id, namespace.lower(),
            )
            if count == 0:
                await conn.execute(
                    "INSERT INTO provider_registrations (subscription_id, namespace_key, namespace, state) "
                    "VALUES (?, ?, ?, ?)", sub_id, namespace.lower(), namespace, state,
                )

    # -- resource groups ----------------------------------------------------

    async def put_group(self, group: ResourceGroup) -> bool:
        """Create or update (location is fixed once created); True when created."""
        async with self.db.transaction() as conn:
            row = await conn.fetchrow(
                "SELECT name FROM resource_groups WHERE subscription_id = ? AND name_key = ?",
                group.subscription_id, group.name.lower(),
            )
            if row:
                await conn.execute(
                    "UPDATE resource_groups SET tags = ? WHERE subscription_id = ? AND name_key = ?",
                    json.dumps(group.tags), group.subscription_id, group.name.lower(),
                )
                return False
            await conn.execute(
                "INSERT INTO resource_groups (subscription_id, name_key, name, location, tags, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                group.subscription_id, group.name.lower(), group.name, group.location, json.dumps(group.tags),
                group.created_at,
            )
            return True

    async def group(self, sub_id: str, name: str) -> ResourceGroup | None:
        row = await self.db.fetchrow(
            "SELECT * FROM resource_groups WHERE subscription_id = ? AND name_key = ?", sub_id, name.lower()
        )
        return _group(row) if row else None

    async def groups(self, sub_id: str) -> list[ResourceGroup]:
        rows = await self.db.fetch(
            "SELECT * FROM resource_groups WHERE subscription_id = ? ORDER BY name_key", sub_id
        )
        return [_group(r) for r in rows]

    async def delete_group(self, sub_id: str, name: str) -> bool:
        """Delete a group and everything in it (ARM deletes contained resources)."""
        async with self.db.transaction() as conn:
            await conn.execute(
                "DELETE FROM deployments WHERE account_id IN (SELECT id FROM accounts WHERE subscription_id = ? "
                "AND group_key = ?)", sub_id, name.lower(),
            )
            gone = await conn.fetch("SELECT id FROM accounts WHERE subscription_id = ? AND group_key = ?", sub_id,
                                    name.lower())
            for row in gone:
                await conn.execute("DELETE FROM data_keys WHERE id = ?", account_key_id(row["id"]))
            await conn.execute("DELETE FROM accounts WHERE subscription_id = ? AND group_key = ?", sub_id, name.lower())
            count = await conn.execute(
                "DELETE FROM resource_groups WHERE subscription_id = ? AND name_key = ?", sub_id, name.lower()
            )
            return count > 0

    # -- accounts -----------------------------------------------------------

    async def save_account(self, account: Account) -> bool:
        """Insert or replace an account; True when inserted. Raises Conflict
        when its custom subdomain belongs to another account, Locked when its
        keys could not be opened (they would be lost)."""
        if account.locked:
            raise Locked(account.locked)
        subdomain = account.subdomain.lower() if account.subdomain else None
        key1, key2 = await self._seal_keys(account)
        async with self.db.transaction() as conn:
            if subdomain:
                owner = await conn.fetchrow("SELECT id FROM accounts WHERE subdomain_key = ?", subdomain)
                if owner and owner["id"] != account.id:
                    raise Conflict(subdomain)
            values = (
                account.kind, account.sku_name, account.location, subdomain, key1, key2,
                account.etag, json.dumps(account.doc), account.updated_at,
            )
            count = await conn.execute(
                "UPDATE accounts SET kind = ?, sku_name = ?, location = ?, subdomain_key = ?, key1 = ?, key2 = ?, "
                "etag = ?, doc = ?, updated_at = ? WHERE id = ?", *values, account.id,
            )
            if count:
                return False
            try:
                await conn.execute(
                    "INSERT INTO accounts (kind, sku_name, location, subdomain_key, key1, key2, etag, doc, "
                    "updated_at, id, subscription_id, group_key, name_key, name, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    *values, account.id, account.subscription_id, account.group.lower(), account.name.lower(),
                    account.name, account.created_at,
                )
            except Exception as exc:  # sqlite3.IntegrityError / asyncpg.UniqueViolationError
                if "subdomain" in str(exc).lower():
                    raise Conflict(subdomain) from exc  # another writer took it meanwhile
                raise
            return True

    async def account(self, sub_id: str, group: str, name: str) -> Account | None:
        row = await self.db.fetchrow(
            f"{_ACCOUNT_SELECT} WHERE a.subscription_id = ? AND a.group_key = ? AND a.name_key = ?",
            sub_id, group.lower(), name.lower(),
        )
        return await self._open_keys(row) if row else None

    async def account_by_id(self, account_id: str) -> Account | None:
        row = await self.db.fetchrow(f"{_ACCOUNT_SELECT} WHERE a.id = ?", account_id)
        return await self._open_keys(row) if row else None

    async def accounts(self, sub_id: str | None = None, group: str | None = None) -> list[Account]:
        where, args = [], []
        if sub_id is not None:
            where.append("a.subscription_id = ?")
            args.append(sub_id)
        if group is not None:
            where.append("a.group_key = ?")
            args.append(group.lower())
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = await self.db.fetch(f"{_ACCOUNT_SELECT}{clause} ORDER BY a.created_at, a.name_key", *args)
        return [await self._open_keys(r) for r in rows]

    async def delete_account(self, account_id: str) -> bool:
        async with self.db.transaction() as conn:
            await conn.execute("DELETE FROM deployments WHERE account_id = ?", account_id)
            await conn.execute("DELETE FROM data_keys WHERE id = ?", account_key_id(account_id))
            deleted = await conn.execute("DELETE FROM accounts WHERE id = ?", account_id) > 0
        self.keyring.evict([account_key_id(account_id)])
        return deleted

    # -- deployments --------------------------------------------------------

    async def save_deployment(self, dep: Deployment) -> bool:
        """Insert or replace; True when inserted."""
        async with self.db.transaction() as conn:
            values = (dep.model_format, dep.model_name, dep.model_version, dep.sku_name, dep.capacity, dep.etag,
                      json.dumps(dep.doc), dep.updated_at)
            count = await conn.execute(
                "UPDATE deployments SET model_format = ?, model_name = ?, model_version = ?, sku_name = ?, "
                "capacity = ?, etag = ?, doc = ?, updated_at = ? WHERE account_id = ? AND name_key = ?",
                *values, dep.account_id, dep.name.lower(),
            )
            if count:
                return False
            await conn.execute(
                "INSERT INTO deployments (model_format, model_name, model_version, sku_name, capacity, etag, doc, "
                "updated_at, account_id, name_key, name, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                *values, dep.account_id, dep.name.lower(), dep.name, dep.created_at,
            )
            return True

    async def deployment(self, account_id: str, name: str) -> Deployment | None:
        row = await self.db.fetchrow(
            "SELECT * FROM deployments WHERE account_id = ? AND name_key = ?", account_id, name.lower()
        )
        return _deployment(row) if row else None

    async def deployments(self, account_id: str | None = None) -> list[Deployment]:
        if account_id is None:
            rows = await self.db.fetch("SELECT * FROM deployments ORDER BY account_id, created_at, name_key")
        else:
            rows = await self.db.fetch(
                "SELECT * FROM deployments WHERE account_id = ? ORDER BY created_at, name_key", account_id
            )
        return [_deployment(r) for r in rows]

    async def delete_deployment(self, account_id: str, name: str) -> bool:
        async with self.db.transaction() as conn:
            count = await conn.execute(
                "DELETE FROM deployments WHERE account_id = ? AND name_key = ?", account_id, name.lower()
            )
            return count > 0


def _subscription(row: Row) -> Subscription:
    return Subscription(id=row["id"], display_name=row["display_name"], tenant_id=row["tenant_id"],
                        state=row["state"], openai_approved=bool(row["openai_approved"]),
                        created_at=row["created_at"])


def _group(row: Row) -> ResourceGroup:
    return ResourceGroup(subscription_id=row["subscription_id"], name=row["name"], location=row["location"],
                         tags=json.loads(row["tags"]), created_at=row["created_at"])


async def open_store(url: str, kek_file: Path | None = None) -> SqlStore:
    return await SqlStore.open(url, kek_file)


def dump(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))
