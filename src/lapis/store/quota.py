"""QuotaStore: limit overrides, quota increase requests, and capacity in use.

Tables from migrations/002_quota.sql. Usage is never stored: it is read from
the deployments (their sku.capacity, in the location of their account), so
deleting a deployment, an account or a group frees its capacity at once.
Model and SKU names are compared case-insensitively, like every Azure name.
"""

from __future__ import annotations

from dataclasses import dataclass

from lapis.store.database import Database, Row

PENDING, APPROVED, REJECTED = "Pending", "Approved", "Rejected"
STATES = (PENDING, APPROVED, REJECTED)

_CAPACITY = (
    "SELECT COALESCE(SUM(d.capacity), 0) AS used FROM deployments d JOIN accounts a ON a.id = d.account_id "
    "WHERE a.subscription_id = ? AND a.location = ? AND LOWER(d.model_name) = ? AND LOWER(d.sku_name) = ?"
)
_UPSERT_LIMIT = (
    "INSERT INTO quota_limits (subscription_id, location, usage_name, limit_value, updated_at) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (subscription_id, location, usage_name) "
    "DO UPDATE SET limit_value = excluded.limit_value, updated_at = excluded.updated_at"
)


@dataclass(slots=True)
class QuotaRequest:
    """One quota increase request and, once decided, its outcome."""

    id: str
    subscription_id: str
    location: str
    usage_name: str  # e.g. "OpenAI.Standard.gpt-4o-mini"
    model: str
    sku: str
    requested_limit: int
    previous_limit: int  # the limit when the request was filed
    state: str = PENDING
    created_at: str = ""
    decided_at: str | None = None
    decided_by: str | None = None
    reason: str | None = None


def _request(row: Row) -> QuotaRequest:
    return QuotaRequest(
        id=row["id"], subscription_id=row["subscription_id"], location=row["location"],
        usage_name=row["usage_name"], model=row["model"], sku=row["sku"],
        requested_limit=int(row["requested_limit"]), previous_limit=int(row["previous_limit"]), state=row["state"],
        created_at=row["created_at"], decided_at=row["decided_at"], decided_by=row["decided_by"],
        reason=row["reason"],
    )


class QuotaStore:
    """The quota tables of one database (SQLite or PostgreSQL)."""

    def __init__(self, db: Database):
        self.db = db

    # -- capacity in use ------------------------------------------------------

    async def used_capacity(self, sub_id: str, location: str, model: str, sku: str) -> int:
        """Sum of sku.capacity over the subscription's deployments of `model` with
        SKU `sku` whose account is in `location`."""
        row = await self.db.fetchrow(_CAPACITY, sub_id.lower(), location.lower(), model.lower(), sku.lower())
        return int(row["used"]) if row else 0

    async def usage_in_location(self, sub_id: str, location: str) -> dict[tuple[str, str], int]:
        """(lower-cased model, lower-cased sku) -> capacity in use, for every pair in use."""
        rows = await self.db.fetch(
            "SELECT LOWER(d.model_name) AS model, LOWER(d.sku_name) AS sku, SUM(d.capacity) AS used "
            "FROM deployments d JOIN accounts a ON a.id = d.account_id "
            "WHERE a.subscription_id = ? AND a.location = ? GROUP BY LOWER(d.model_name), LOWER(d.sku_name)",
            sub_id.lower(), location.lower(),
        )
        return {(r["model"], r["sku"]): int(r["used"]) for r in rows}

    # -- limit overrides ------------------------------------------------------

    async def limit_override(self, sub_id: str, location: str, usage_name: str) -> int | None:
        row = await self.db.fetchrow(
            "SELECT limit_value FROM quota_limits WHERE subscription_id = ? AND location = ? AND usage_name = ?",
            sub_id.lower(), location.lower(), usage_name,
        )
        return int(row["limit_value"]) if row else None

    async def limit_overrides(self, sub_id: str, location: str) -> dict[str, int]:
        """usage name -> overridden limit, for one subscription and location."""
        rows = await self.db.fetch(
            "SELECT usage_name, limit_value FROM quota_limits WHERE subscription_id = ? AND location = ?",
            sub_id.lower(), location.lower(),
        )
        return {r["usage_name"]: int(r["limit_value"]) for r in rows}

    async def set_limit(self, sub_id: str, location: str, usage_name: str, limit: int, updated_at: str) -> None:
        """Insert or replace the override (one statement: safe against a concurrent writer)."""
        async with self.db.transaction() as conn:
            await conn.execute(_UPSERT_LIMIT, sub_id.lower(), location.lower(), usage_name, limit, updated_at)

    # -- quota increase requests ----------------------------------------------

    async def add_request(self, req: QuotaRequest) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(
                "INSERT INTO quota_requests (id, subscription_id, location, usage_name, model, sku, requested_limit, "
                "previous_limit, state, created_at, decided_at, decided_by, reason) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                req.id, req.subscription_id.lower(), req.location.lower(), req.usage_name, req.model, req.sku,
                req.requested_limit, req.previous_limit, req.state, req.created_at, req.decided_at,
                req.decided_by, req.reason,
            )

    async def request(self, req_id: str) -> QuotaRequest | None:
        row = await self.db.fetchrow("SELECT * FROM quota_requests WHERE id = ?", req_id.lower())
        return _request(row) if row else None

    async def requests(self, sub_id: str | None = None, state: str | None = None) -> list[QuotaRequest]:
        """A subscription's requests (all subscriptions' when None), oldest first."""
        where, args = [], []
        if sub_id is not None:
            where.append("subscription_id = ?")
            args.append(sub_id.lower())
        if state is not None:
            where.append("state = ?")
            args.append(state)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = await self.db.fetch(f"SELECT * FROM quota_requests{clause} ORDER BY created_at, id", *args)
        return [_request(r) for r in rows]

    async def decide(self, req_id: str, state: str, decided_at: str, decided_by: str, reason: str | None = None,
                     new_limit: int | None = None) -> QuotaRequest | None:
        """Move a Pending request to `state` and, when `new_limit` is given, set the
        limit override it asked for, both in one transaction. None when the request
        does not exist or is no longer Pending (someone decided first)."""
        if state not in (APPROVED, REJECTED):
            raise ValueError(f"a decision is Approved or Rejected, not {state!r}")
        async with self.db.transaction() as conn:
            changed = await conn.execute(
                "UPDATE quota_requests SET state = ?, decided_at = ?, decided_by = ?, reason = ? "
                "WHERE id = ? AND state = ?", state, decided_at, decided_by, reason, req_id.lower(), PENDING,
            )
            if not changed:
                return None
            row = await conn.fetchrow("SELECT * FROM quota_requests WHERE id = ?", req_id.lower())
            assert row is not None
            req = _request(row)
            if new_limit is not None:
                await conn.execute(_UPSERT_LIMIT, req.subscription_id, req.location, req.usage_name, new_limit,
                                   decided_at)
            return req
