"""ServingStore: backends, pools with their members, and faults (lapis.serving.specs).

Tables from migrations/005_serving.sql. Each public write is one transaction.
Names (backend ids, pool names, member ids, fault targets) are compared
case-insensitively and keep the case they were written with.

A backend's secret (upstream API key or client secret) lives in a column of
its own, and only `_seal` (on the way in) and `_unseal` (on the way out) touch
it: encryption at rest wraps those two functions and nothing else.
"""

from __future__ import annotations

import json
from typing import Any
from datetime import datetime, timezone

from lapis.crypto import envelope
from lapis.serving.specs import BackendSpec, FaultSpec, MemberSpec, PoolSpec
from lapis.store.database import Connection, Database, Row


class DeploymentServed(Exception):
    """Another pool already serves this deployment; `args[0]` is that pool's name."""


def _context(backend_id: str) -> str:
    return f"serving_backends.secret:{backend_id.lower()}"


def _seal(keyring: Any, backend_id: str, secret: str) -> str:
    """What the `secret` column holds: sealed under the service data key
    (lapis.crypto), bound to its row; "" stays "" (no secret)."""
    if not secret or keyring is None:
        return secret
    return keyring.seal_service(secret, _context(backend_id))


def _unseal(keyring: Any, backend_id: str, stored: str) -> str:
    """The secret a `secret` column value holds (the inverse of _seal). A
    value written before encryption (plain text) reads as itself."""
    if not stored or keyring is None or not envelope.is_sealed(stored):
        return stored
    return keyring.open_service(stored, _context(backend_id)).decode()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def _backend(row: Row, keyring: Any) -> BackendSpec:
    return BackendSpec(
        id=row["id"], region=row["region"], model=row["model"], kind=row["kind"], url=row["url"],
        upstream_model=row["upstream_model"], deployment=row["deployment"], api_version=row["api_version"],
        auth=json.loads(row["auth"]), secret=_unseal(keyring, row["id"], row["secret"]),
        timeout_s=float(row["timeout_s"]), weight=int(row["weight"]),
    )


def _member(row: Row) -> MemberSpec:
    return MemberSpec(id=row["id"], kind=row["kind"], target=row["target"], priority=int(row["priority"]),
                      weight=int(row["weight"]))


def _fault(row: Row) -> FaultSpec:
    return FaultSpec(
        scope=row["scope"], target=row["target"], rate_429=float(row["rate_429"]), rate_503=float(row["rate_503"]),
        retry_after_s=float(row["retry_after_s"]), latency_ms=float(row["latency_ms"]), hang=bool(row["hang"]),
        cut_after=None if row["cut_after"] is None else int(row["cut_after"]), down=bool(row["down"]),
    )


_MEMBERS = "SELECT * FROM serving_pool_members WHERE subscription_id = ? AND pool_key = ? ORDER BY priority, id_key"
_UPSERT_BACKEND = (
    "INSERT INTO serving_backends (id_key, id, region, model, kind, url, upstream_model, deployment, api_version, "
    "auth, secret, timeout_s, weight, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (id_key) DO UPDATE SET region = excluded.region, model = excluded.model, kind = excluded.kind, "
    "url = excluded.url, upstream_model = excluded.upstream_model, deployment = excluded.deployment, "
    "api_version = excluded.api_version, auth = excluded.auth, secret = excluded.secret, "
    "timeout_s = excluded.timeout_s, weight = excluded.weight, updated_at = excluded.updated_at"
)
_UPSERT_MEMBER = (
    "INSERT INTO serving_pool_members (subscription_id, pool_key, id_key, id, kind, target, priority, weight) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (subscription_id, pool_key, id_key) DO UPDATE SET "
    "kind = excluded.kind, target = excluded.target, priority = excluded.priority, weight = excluded.weight"
)
_UPSERT_FAULT = (
    "INSERT INTO serving_faults (scope, target_key, target, rate_429, rate_503, retry_after_s, latency_ms, hang, "
    "cut_after, down, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (scope, target_key) "
    "DO UPDATE SET target = excluded.target, rate_429 = excluded.rate_429, rate_503 = excluded.rate_503, "
    "retry_after_s = excluded.retry_after_s, latency_ms = excluded.latency_ms, hang = excluded.hang, "
    "cut_after = excluded.cut_after, down = excluded.down, updated_at = excluded.updated_at"
)


class ServingStore:
    """The serving tables of one database (SQLite or PostgreSQL)."""

    def __init__(self, db: Database, keyring: Any = None):
        self.db = db
        self.keyring = keyring  # lapis.crypto.keyring.Keyring: seals backend secrets at rest

    # -- backends -------------------------------------------------------------

    async def put_backend(self, spec: BackendSpec) -> bool:
        """Insert or replace (the id keeps the case it was created with); True when inserted."""
        now = _now()
        async with self.db.transaction() as conn:
            existing = await conn.fetchrow("SELECT id FROM serving_backends WHERE id_key = ?", spec.id.lower())
            await conn.execute(
                _UPSERT_BACKEND, spec.id.lower(), spec.id, spec.region, spec.model, spec.kind, spec.url,
                spec.upstream_model, spec.deployment, spec.api_version, json.dumps(spec.auth, sort_keys=True),
                _seal(self.keyring, spec.id, spec.secret), float(spec.timeout_s), int(spec.weight), now, now,
            )
            return existing is None

    async def backend(self, backend_id: str) -> BackendSpec | None:
        row = await self.db.fetchrow("SELECT * FROM serving_backends WHERE id_key = ?", backend_id.lower())
        return _backend(row, self.keyring) if row else None

    async def backends(self) -> list[BackendSpec]:
        rows = await self.db.fetch("SELECT * FROM serving_backends ORDER BY region, model, id_key")
        return [_backend(r, self.keyring) for r in rows]

    async def delete_backend(self, backend_id: str) -> bool:
        async with self.db.transaction() as conn:
            return await conn.execute("DELETE FROM serving_backends WHERE id_key = ?", backend_id.lower()) > 0

    async def pools_with_backend(self, backend_id: str) -> list[tuple[str, str]]:
        """(subscription id, pool name) of every pool that lists the backend as a member."""
        rows = await self.db.fetch(
            "SELECT DISTINCT p.subscription_id, p.name FROM serving_pools p JOIN serving_pool_members m "
            "ON m.subscription_id = p.subscription_id AND m.pool_key = p.name_key "
            "WHERE m.kind = ? AND LOWER(m.target) = ? ORDER BY p.subscription_id, p.name",
            "backend", backend_id.lower(),
        )
        return [(r["subscription_id"], r["name"]) for r in rows]

    # -- pools and members ----------------------------------------------------

    async def put_pool(self, spec: PoolSpec) -> bool:
        """Insert or replace a pool and its members (exactly spec.members afterwards);
        True when inserted. The name keeps the case it was created with. Raises
        DeploymentServed when another pool serves the deployment (one pool per deployment)."""
        sub, key, now = spec.subscription_id.lower(), spec.name.lower(), _now()
        async with self.db.transaction() as conn:
            other = await conn.fetchrow("SELECT subscription_id, name_key, name FROM serving_pools "
                                        "WHERE deployment_key = ?", spec.deployment_id.lower())
            if other and (other["subscription_id"], other["name_key"]) != (sub, key):
                raise DeploymentServed(other["name"])
            count = await conn.execute(
                "UPDATE serving_pools SET deployment_id = ?, deployment_key = ?, updated_at = ? "
                "WHERE subscription_id = ? AND name_key = ?",
                spec.deployment_id, spec.deployment_id.lower(), now, sub, key,
            )
            if not count:
                await conn.execute(
                    "INSERT INTO serving_pools (subscription_id, name_key, name, deployment_id, deployment_key, "
                    "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    sub, key, spec.name, spec.deployment_id, spec.deployment_id.lower(), now, now,
                )
            await conn.execute("DELETE FROM serving_pool_members WHERE subscription_id = ? AND pool_key = ?", sub, key)
            for member in spec.members:
                await _put_member(conn, sub, key, member)
            return not count

    async def pool(self, name: str, subscription_id: str) -> PoolSpec | None:
        row = await self.db.fetchrow("SELECT * FROM serving_pools WHERE subscription_id = ? AND name_key = ?",
                                     subscription_id.lower(), name.lower())
        if row is None:
            return None
        members = await self.db.fetch(_MEMBERS, row["subscription_id"], row["name_key"])
        return _pool(row, members)

    async def pool_for_deployment(self, deployment_id: str) -> PoolSpec | None:
        """The pool serving a deployment (by its ARM id, any case), if any."""
        row = await self.db.fetchrow("SELECT * FROM serving_pools WHERE deployment_key = ?", deployment_id.lower())
        return await self.pool(row["name"], row["subscription_id"]) if row else None

    async def pools(self, subscription_id: str | None = None) -> list[PoolSpec]:
        """A subscription's pools (every subscription's when None), with members, by name."""
        where, args = ("WHERE subscription_id = ? ", [subscription_id.lower()]) if subscription_id else ("", [])
        rows = await self.db.fetch(f"SELECT * FROM serving_pools {where}ORDER BY subscription_id, name_key", *args)
        members = await self.db.fetch(
            f"SELECT * FROM serving_pool_members {where}ORDER BY subscription_id, pool_key, priority, id_key", *args)
        by_pool: dict[tuple[str, str], list[Row]] = {}
        for m in members:
            by_pool.setdefault((m["subscription_id"], m["pool_key"]), []).append(m)
        return [_pool(r, by_pool.get((r["subscription_id"], r["name_key"]), [])) for r in rows]

    async def delete_pool(self, name: str, subscription_id: str) -> bool:
        sub, key = subscription_id.lower(), name.lower()
        async with self.db.transaction() as conn:
            await conn.execute("DELETE FROM serving_pool_members WHERE subscription_id = ? AND pool_key = ?", sub, key)
            return await conn.execute(
                "DELETE FROM serving_pools WHERE subscription_id = ? AND name_key = ?", sub, key) > 0

    async def put_member(self, pool_name: str, subscription_id: str, member: MemberSpec) -> bool | None:
        """Insert or replace one member; True when inserted, None when the pool does not exist."""
        sub, key = subscription_id.lower(), pool_name.lower()
        async with self.db.transaction() as conn:
            if not await conn.fetchrow("SELECT name FROM serving_pools WHERE subscription_id = ? AND name_key = ?",
                                       sub, key):
                return None
            existing = await conn.fetchrow(
                "SELECT id FROM serving_pool_members WHERE subscription_id = ? AND pool_key = ? AND id_key = ?",
                sub, key, member.id.lower())
            await _put_member(conn, sub, key, member)
            await conn.execute("UPDATE serving_pools SET updated_at = ? WHERE subscription_id = ? AND name_key = ?",
                               _now(), sub, key)
            return existing is None

    async def delete_member(self, pool_name: str, subscription_id: str, member_id: str) -> bool:
        async with self.db.transaction() as conn:
            return await conn.execute(
                "DELETE FROM serving_pool_members WHERE subscription_id = ? AND pool_key = ? AND id_key = ?",
                subscription_id.lower(), pool_name.lower(), member_id.lower()) > 0

    # -- faults ---------------------------------------------------------------

    async def put_fault(self, spec: FaultSpec) -> bool:
        """Insert or replace the fault of (scope, target); True when inserted."""
        async with self.db.transaction() as conn:
            existing = await conn.fetchrow("SELECT target FROM serving_faults WHERE scope = ? AND target_key = ?",
                                           spec.scope, spec.target.lower())
            await conn.execute(
                _UPSERT_FAULT, spec.scope, spec.target.lower(), spec.target, float(spec.rate_429),
                float(spec.rate_503), float(spec.retry_after_s), float(spec.latency_ms), int(spec.hang),
                spec.cut_after, int(spec.down), _now(),
            )
            return existing is None

    async def fault(self, scope: str, target: str) -> FaultSpec | None:
        row = await self.db.fetchrow("SELECT * FROM serving_faults WHERE scope = ? AND target_key = ?",
                                     scope, target.lower())
        return _fault(row) if row else None

    async def faults(self) -> list[FaultSpec]:
        return [_fault(r) for r in await self.db.fetch("SELECT * FROM serving_faults ORDER BY scope, target_key")]

    async def delete_fault(self, scope: str, target: str) -> bool:
        async with self.db.transaction() as conn:
            return await conn.execute("DELETE FROM serving_faults WHERE scope = ? AND target_key = ?",
                                      scope, target.lower()) > 0

    async def reset_faults(self) -> int:
        """Remove every fault; how many there were."""
        async with self.db.transaction() as conn:
            return await conn.execute("DELETE FROM serving_faults")


async def _put_member(conn: Connection, sub: str, pool_key: str, member: MemberSpec) -> None:
    await conn.execute(_UPSERT_MEMBER, sub, pool_key, member.id.lower(), member.id, member.kind, member.target,
                       int(member.priority), int(member.weight))


def _pool(row: Row, members: list[Row]) -> PoolSpec:
    return PoolSpec(name=row["name"], subscription_id=row["subscription_id"], deployment_id=row["deployment_id"],
                    members=tuple(_member(m) for m in members))
