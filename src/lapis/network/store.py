"""EndpointStore: the private_endpoints table (migrations/010_private_endpoints.sql).

Every write announces itself on CHANGED_CHANNEL (PostgreSQL NOTIFY), so each
replica opens or closes its own listeners (lapis.network.private_endpoints).
Names compare without case, as ARM names do; an address and port belong to
one endpoint at most (the unique index refuses a second: `ListenerTaken`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from lapis.store.database import Database, Row

CHANGED_CHANNEL = "lapis_private_endpoints"  # PostgreSQL channel: "private endpoints changed"


class ListenerTaken(Exception):
    """Another private endpoint already has this address and port."""


@dataclass(slots=True)
class PrivateEndpoint:
    subscription_id: str
    resource_group: str  # as created
    name: str
    location: str
    account_id: str  # the bound account's internal id
    address: str
    port: int
    doc: dict[str, Any] = field(default_factory=dict)  # tags, subnet, connection, ipConfigurations, guid, etag
    created_at: str = ""
    updated_at: str = ""

    @property
    def listener(self) -> tuple[str, int]:
        return self.address, self.port


def _endpoint(row: Row) -> PrivateEndpoint:
    return PrivateEndpoint(subscription_id=row["subscription_id"], resource_group=row["resource_group"],
                           name=row["name"], location=row["location"], account_id=row["account_id"],
                           address=row["address"], port=int(row["port"]), doc=json.loads(row["doc"]),
                           created_at=row["created_at"], updated_at=row["updated_at"])


class EndpointStore:
    def __init__(self, db: Database):
        self.db = db

    async def get(self, sub_id: str, group: str, name: str) -> PrivateEndpoint | None:
        row = await self.db.fetchrow("SELECT * FROM private_endpoints WHERE subscription_id = ? AND group_key = ? "
                                     "AND name_key = ?", sub_id, group.lower(), name.lower())
        return _endpoint(row) if row else None

    async def in_scope(self, sub_id: str, group: str | None = None) -> list[PrivateEndpoint]:
        if group is None:
            rows = await self.db.fetch("SELECT * FROM private_endpoints WHERE subscription_id = ? "
                                       "ORDER BY group_key, name_key", sub_id)
        else:
            rows = await self.db.fetch("SELECT * FROM private_endpoints WHERE subscription_id = ? AND group_key = ? "
                                       "ORDER BY name_key", sub_id, group.lower())
        return [_endpoint(r) for r in rows]

    async def for_accounts(self, account_ids: list[str]) -> list[PrivateEndpoint]:
        if not account_ids:
            return []
        marks = ", ".join("?" for _ in account_ids)
        rows = await self.db.fetch(f"SELECT * FROM private_endpoints WHERE account_id IN ({marks}) "
                                   "ORDER BY name_key", *account_ids)
        return [_endpoint(r) for r in rows]

    async def all(self) -> list[PrivateEndpoint]:
        return [_endpoint(r) for r in await self.db.fetch("SELECT * FROM private_endpoints")]

    async def put(self, endpoint: PrivateEndpoint) -> bool:
        """Insert or replace; True when created. Raises ListenerTaken when another
        endpoint holds the address and port."""
        async with self.db.transaction() as conn:
            other = await conn.fetchrow(
                "SELECT subscription_id, group_key, name_key FROM private_endpoints WHERE address = ? AND port = ?",
                endpoint.address, endpoint.port)
            key = (endpoint.subscription_id, endpoint.resource_group.lower(), endpoint.name.lower())
            if other is not None and (other["subscription_id"], other["group_key"], other["name_key"]) != key:
                raise ListenerTaken(f"{endpoint.address}:{endpoint.port}")
            removed = await conn.execute("DELETE FROM private_endpoints WHERE subscription_id = ? AND group_key = ? "
                                         "AND name_key = ?", *key)
            try:
                await conn.execute(
                    "INSERT INTO private_endpoints (subscription_id, group_key, name_key, resource_group, name, "
                    "location, account_id, address, port, doc, created_at, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    *key, endpoint.resource_group, endpoint.name, endpoint.location, endpoint.account_id,
                    endpoint.address, endpoint.port, json.dumps(endpoint.doc), endpoint.created_at,
                    endpoint.updated_at)
            except Exception as exc:  # sqlite3.IntegrityError / asyncpg.UniqueViolationError
                if "unique" in str(exc).lower() or "duplicate" in str(exc).lower():
                    raise ListenerTaken(f"{endpoint.address}:{endpoint.port}") from exc  # taken meanwhile
                raise
        await self.db.notify(CHANGED_CHANNEL, "changed")
        return removed == 0

    async def delete(self, sub_id: str, group: str, name: str) -> bool:
        async with self.db.transaction() as conn:
            removed = await conn.execute("DELETE FROM private_endpoints WHERE subscription_id = ? AND group_key = ? "
                                         "AND name_key = ?", sub_id, group.lower(), name.lower())
        await self.db.notify(CHANGED_CHANNEL, "changed")
        return removed > 0
