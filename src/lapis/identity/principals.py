"""The directory's principals: service principals and managed identities.

Tables from migrations/003_identity.sql.

Service principals carry an app id, an object id and one client secret, of
which only a salted scrypt hash is stored. `create_sp` with a display name
that already exists resets that app's secret and keeps its ids, as
`az ad sp create-for-rbac` does for an existing app.

Managed identities:
    SystemAssigned   one per account (resource_id = the account's ARM id, principal_id = the
                     `identity.principalId` the account shows), and the server's own
                     workload identity (resource_id WORKLOAD_RESOURCE)
    UserAssigned     a Microsoft.ManagedIdentity/userAssignedIdentities resource (resource_id = its ARM id)
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

from lapis.store.database import Database, Row

SYSTEM_ASSIGNED, USER_ASSIGNED = "SystemAssigned", "UserAssigned"
WORKLOAD_RESOURCE = "/lapis/workload"
WORKLOAD_NAME = "lapis-workload"
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def hash_secret(secret: str) -> str:
    """`scrypt$n$r$p$salt$hash` (base64): what the table keeps instead of the secret."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, dklen=32, **_SCRYPT)
    b64 = base64.b64encode
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${b64(salt).decode()}${b64(digest).decode()}"


def secret_matches(secret: str, stored: str) -> bool:
    """Constant-time comparison of a presented secret with a stored hash."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        want = base64.b64decode(digest)
        got = hashlib.scrypt(secret.encode(), salt=base64.b64decode(salt), dklen=len(want), n=int(n), r=int(r),
                             p=int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


def _check(secret: str, stored: str | None) -> bool:
    """secret_matches, doing the same work for an unknown app (no timing hint)."""
    return secret_matches(secret, stored or hash_secret(secrets.token_hex(8))) and stored is not None


def new_client_secret() -> str:
    """A 40-character secret in Entra's style (`xxx8Q~...`)."""
    return secrets.token_urlsafe(3)[:3] + "8Q~" + secrets.token_urlsafe(26)[:34]


@dataclass(frozen=True, slots=True)
class ServicePrincipal:
    app_id: str
    object_id: str
    tenant_id: str
    display_name: str
    created_at: str


@dataclass(frozen=True, slots=True)
class ManagedIdentity:
    principal_id: str  # the object id
    client_id: str
    tenant_id: str
    kind: str
    resource_id: str
    name: str
    created_at: str


def _sp(row: Row) -> ServicePrincipal:
    return ServicePrincipal(app_id=row["app_id"], object_id=row["object_id"], tenant_id=row["tenant_id"],
                            display_name=row["display_name"], created_at=row["created_at"])


def _mi(row: Row) -> ManagedIdentity:
    return ManagedIdentity(principal_id=row["principal_id"], client_id=row["client_id"], tenant_id=row["tenant_id"],
                           kind=row["kind"], resource_id=row["resource_id"], name=row["name"],
                           created_at=row["created_at"])


def user_assigned_id(sub: str, group: str, name: str) -> str:
    provider = "Microsoft.ManagedIdentity/userAssignedIdentities"
    return f"/subscriptions/{sub}/resourceGroups/{group}/providers/{provider}/{name}"


class Principals:
    """Service principals and managed identities of one tenant, in one database."""

    def __init__(self, db: Database, tenant: str):
        self.db = db
        self.tenant = tenant

    # -- service principals -----------------------------------------------------

    async def create_sp(self, display_name: str) -> tuple[str, str, str]:
        """(app_id, object_id, password). An existing display name gets a new secret, same ids."""
        password = new_client_secret()
        hashed = await asyncio.to_thread(hash_secret, password)
        key = display_name.lower()
        async with self.db.transaction() as conn:
            row = await conn.fetchrow("SELECT app_id, object_id FROM service_principals WHERE display_key = ? "
                                      "ORDER BY created_at LIMIT 1", key)
            if row is not None:
                await conn.execute("UPDATE service_principals SET secret_hash = ? WHERE app_id = ?", hashed,
                                   row["app_id"])
                return row["app_id"], row["object_id"], password
            app_id, object_id = str(uuid.uuid4()), str(uuid.uuid4())
            await conn.execute(
                "INSERT INTO service_principals (app_id, object_id, tenant_id, display_name, display_key, "
                "secret_hash, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                app_id, object_id, self.tenant, display_name, key, hashed, _now())
        return app_id, object_id, password

    async def sp(self, app_id: str) -> ServicePrincipal | None:
        row = await self.db.fetchrow("SELECT * FROM service_principals WHERE app_id = ?", app_id.lower())
        return _sp(row) if row else None

    async def sps(self) -> list[ServicePrincipal]:
        return [_sp(r) for r in await self.db.fetch("SELECT * FROM service_principals ORDER BY created_at")]

    async def check_secret(self, app_id: str, secret: str) -> ServicePrincipal | None:
        """The principal when `secret` is its client secret; None otherwise (unknown app included)."""
        row = await self.db.fetchrow("SELECT * FROM service_principals WHERE app_id = ?", app_id.lower())
        ok = await asyncio.to_thread(_check, secret, row["secret_hash"] if row else None)
        return _sp(row) if ok and row else None

    # -- managed identities -----------------------------------------------------

    async def _insert_mi(self, kind: str, resource_id: str, name: str, principal_id: str | None = None,
                         replace: bool = False) -> ManagedIdentity:
        """Register the identity of `resource_id` unless it exists (idempotent across replicas)."""
        key = resource_id.lower()
        async with self.db.transaction() as conn:
            row = await conn.fetchrow("SELECT * FROM managed_identities WHERE resource_key = ?", key)
            if row is not None and (not replace or principal_id in (None, row["principal_id"])):
                return _mi(row)
            if row is not None:
                await conn.execute("DELETE FROM managed_identities WHERE resource_key = ?", key)
            await conn.execute(
                "INSERT INTO managed_identities (principal_id, client_id, tenant_id, kind, resource_id, resource_key, "
                "name, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                principal_id or str(uuid.uuid4()), str(uuid.uuid4()), self.tenant, kind, resource_id, key, name,
                _now())
            row = await conn.fetchrow("SELECT * FROM managed_identities WHERE resource_key = ?", key)
            if row is None:  # the principal id belongs to another resource: roll back
                raise ValueError(f"principal id {principal_id} is already registered for another resource")
        return _mi(row)

    async def ensure_system_assigned(self, account_arm_id: str, principal_id: str) -> ManagedIdentity:
        """The account's system-assigned identity, registered under the principal id the account shows."""
        name = account_arm_id.rstrip("/").rsplit("/", 1)[-1]
        return await self._insert_mi(SYSTEM_ASSIGNED, account_arm_id, name, principal_id, replace=True)

    async def workload(self) -> ManagedIdentity:
        """The server's own identity: what a managed-identity request naming no identity gets."""
        return await self._insert_mi(SYSTEM_ASSIGNED, WORKLOAD_RESOURCE, WORKLOAD_NAME)

    async def create_user_assigned(self, sub: str, group: str, name: str) -> tuple[ManagedIdentity, bool]:
        """(identity, created): PUT semantics, an existing one is returned unchanged."""
        resource_id = user_assigned_id(sub, group, name)
        existing = await self.by_resource_id(resource_id)
        if existing is not None:
            return existing, False
        return await self._insert_mi(USER_ASSIGNED, resource_id, name), True

    async def delete(self, resource_id: str) -> bool:
        async with self.db.transaction() as conn:
            return await conn.execute("DELETE FROM managed_identities WHERE resource_key = ?",
                                      resource_id.lower()) > 0

    async def by_client_id(self, client_id: str) -> ManagedIdentity | None:
        row = await self.db.fetchrow("SELECT * FROM managed_identities WHERE client_id = ?", client_id.lower())
        return _mi(row) if row else None

    async def by_object_id(self, object_id: str) -> ManagedIdentity | None:
        row = await self.db.fetchrow("SELECT * FROM managed_identities WHERE principal_id = ?", object_id.lower())
        return _mi(row) if row else None

    async def by_resource_id(self, resource_id: str) -> ManagedIdentity | None:
        row = await self.db.fetchrow("SELECT * FROM managed_identities WHERE resource_key = ?", resource_id.lower())
        return _mi(row) if row else None

    async def managed_identities(self, kind: str | None = None) -> list[ManagedIdentity]:
        if kind is None:
            rows = await self.db.fetch("SELECT * FROM managed_identities ORDER BY created_at")
        else:
            rows = await self.db.fetch("SELECT * FROM managed_identities WHERE kind = ? ORDER BY created_at", kind)
        return [_mi(r) for r in rows]
