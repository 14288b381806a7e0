"""BudgetStore: the budgets and budget_notices tables (migrations/009_budgets.sql).

Budgets are keyed by scope and name compared without case, as ARM compares
them. A notice is the durable claim "notification N of budget B went out for
the period starting P": `claim()` inserts it with ON CONFLICT DO NOTHING, so
of any number of replicas (and of a process and its restarted self) exactly
one sees True and sends. The claim is taken before the webhook is called:
a crash between the two loses that notification rather than sending it twice
(at most once, Lapis's choice; a failed delivery is retried in-process and
its final status kept in the row).
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

from lapis.budgets.model import Budget, from_stored
from lapis.store.database import Database, Row

FILETIME_EPOCH = 116444736000000000  # 100-ns ticks from 1601 to 1970


class EtagMismatch(Exception):
    """The PUT named an eTag that is no longer the budget's."""


def new_etag() -> str:
    """Like Azure's: a quoted hex timestamp ("1d34d012214157f")."""
    return f'"{time.time_ns() // 100 + FILETIME_EPOCH:x}"'


def _budget(row: Row) -> Budget:
    return from_stored(row["scope"], row["name"], json.loads(row["properties"]), row["etag"], row["created_at"],
                       row["updated_at"])


class BudgetStore:
    def __init__(self, db: Database):
        self.db = db

    async def get(self, scope: str, name: str) -> Budget | None:
        row = await self.db.fetchrow("SELECT * FROM budgets WHERE scope_key = ? AND name_key = ?", scope.lower(),
                                     name.lower())
        return _budget(row) if row else None

    async def at_scope(self, scope: str) -> list[Budget]:
        rows = await self.db.fetch("SELECT * FROM budgets WHERE scope_key = ? ORDER BY name_key", scope.lower())
        return [_budget(r) for r in rows]

    async def all(self) -> list[Budget]:
        return [_budget(r) for r in await self.db.fetch("SELECT * FROM budgets ORDER BY scope_key, name_key")]

    async def put(self, budget: Budget, if_match: str | None, now: str) -> tuple[Budget, bool]:
        """Insert or replace; (the budget as stored, created?). `if_match`, when
        given, must be the stored eTag (EtagMismatch otherwise)."""
        etag = new_etag()
        properties = json.dumps(budget.properties(), separators=(",", ":"))
        async with self.db.transaction() as conn:
            row = await conn.fetchrow("SELECT name, etag, created_at FROM budgets WHERE scope_key = ? AND "
                                      "name_key = ?", budget.scope_key, budget.name.lower())
            if row is not None and if_match and if_match != row["etag"]:
                raise EtagMismatch(row["name"])
            if row is not None:
                await conn.execute("UPDATE budgets SET properties = ?, etag = ?, updated_at = ? WHERE scope_key = ? "
                                   "AND name_key = ?", properties, etag, now, budget.scope_key, budget.name.lower())
                name, created_at = row["name"], row["created_at"]
            else:
                await conn.execute(
                    "INSERT INTO budgets (scope_key, name_key, scope, name, properties, etag, created_at, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (scope_key, name_key) DO UPDATE SET "
                    "properties = excluded.properties, etag = excluded.etag, updated_at = excluded.updated_at",
                    budget.scope_key, budget.name.lower(), budget.scope, budget.name, properties, etag, now, now)
                name, created_at = budget.name, now
        return replace(budget, name=name, etag=etag, created_at=created_at, updated_at=now), row is None

    async def delete(self, scope: str, name: str) -> bool:
        """Remove the budget and its notices (a namesake created later starts afresh)."""
        async with self.db.transaction() as conn:
            removed = await conn.execute("DELETE FROM budgets WHERE scope_key = ? AND name_key = ?", scope.lower(),
                                         name.lower())
            await conn.execute("DELETE FROM budget_notices WHERE scope_key = ? AND name_key = ?", scope.lower(),
                               name.lower())
        return removed > 0

    # -- notices ---------------------------------------------------------------

    async def claim(self, budget: Budget, notice_key: str, period_start: str, spend_nano: int, by: str,
                    now: str) -> bool:
        """True for the one caller that may send this notice (see the module docstring)."""
        async with self.db.transaction() as conn:
            inserted = await conn.execute(
                "INSERT INTO budget_notices (scope_key, name_key, notice_key, period_start, claimed_at, claimed_by, "
                "spend_nano, status) VALUES (?, ?, ?, ?, ?, ?, ?, 'claimed') ON CONFLICT (scope_key, name_key, "
                "notice_key, period_start) DO NOTHING", budget.scope_key, budget.name.lower(), notice_key.lower(),
                period_start, now, by, spend_nano)
        return inserted == 1

    async def settle(self, budget: Budget, notice_key: str, period_start: str, status: str) -> None:
        async with self.db.transaction() as conn:
            await conn.execute("UPDATE budget_notices SET status = ? WHERE scope_key = ? AND name_key = ? AND "
                               "notice_key = ? AND period_start = ?", status, budget.scope_key, budget.name.lower(),
                               notice_key.lower(), period_start)

    async def notices(self, budget: Budget) -> list[dict[str, Any]]:
        return await self.db.fetch("SELECT * FROM budget_notices WHERE scope_key = ? AND name_key = ? ORDER BY "
                                   "period_start, notice_key", budget.scope_key, budget.name.lower())
