"""AssignmentStore: the role_assignments table (migrations/004_rbac.sql).

Ids, principal ids and role definition ids are GUIDs kept lower-case; scopes
keep the spelling they were created with and are compared through
`scope_key` (lower-case), as ARM compares them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from lapis.auth.rbac import CHANGED_CHANNEL, Grant, ancestors, covers, normalize_scope, scope_key
from lapis.store.database import Database, Row, placeholders

__all__ = ["CHANGED_CHANNEL", "AssignmentExists", "AssignmentStore", "RoleAssignment"]


class AssignmentExists(Exception):
    """Another assignment has the same scope, role and principal."""

    def __init__(self, existing: "RoleAssignment | None"):
        super().__init__("the role assignment already exists")
        self.existing = existing


@dataclass(slots=True)
class RoleAssignment:
    id: str  # the GUID name
    scope: str
    role_definition_id: str  # the role's GUID
    principal_id: str
    principal_type: str
    created_at: str
    created_by: str | None = None

    @property
    def grant(self) -> Grant:
        return Grant(self.scope, self.role_definition_id)


def _assignment(row: Row) -> RoleAssignment:
    return RoleAssignment(id=row["id"], scope=row["scope"], role_definition_id=row["role_definition_id"],
                          principal_id=row["principal_id"], principal_type=row["principal_type"],
                          created_at=row["created_at"], created_by=row["created_by"])


def _is_unique_violation(exc: BaseException) -> bool:
    return type(exc).__name__ in ("IntegrityError", "UniqueViolationError")


class AssignmentStore:
    """Role assignments in one database (SQLite or PostgreSQL)."""

    def __init__(self, db: Database):
        self.db = db

    async def get(self, assignment_id: str) -> RoleAssignment | None:
        row = await self.db.fetchrow("SELECT * FROM role_assignments WHERE id = ?", assignment_id.lower())
        return _assignment(row) if row else None

    async def find(self, scope: str, role_definition_id: str, principal_id: str) -> RoleAssignment | None:
        """The assignment of this role to this principal at exactly this scope."""
        row = await self.db.fetchrow(
            "SELECT * FROM role_assignments WHERE scope_key = ? AND role_definition_id = ? AND principal_id = ?",
            scope_key(scope), role_definition_id.lower(), principal_id.lower())
        return _assignment(row) if row else None

    async def create(self, assignment: RoleAssignment) -> RoleAssignment:
        """Insert; AssignmentExists when the (scope, role, principal) is taken
        (checked in the transaction, and by the unique index against a racing replica)."""
        a = RoleAssignment(id=assignment.id.lower(), scope=normalize_scope(assignment.scope),
                           role_definition_id=assignment.role_definition_id.lower(),
                           principal_id=assignment.principal_id.lower(), principal_type=assignment.principal_type,
                           created_at=assignment.created_at, created_by=assignment.created_by)
        try:
            async with self.db.transaction() as conn:
                row = await conn.fetchrow(
                    "SELECT * FROM role_assignments WHERE id = ? OR (scope_key = ? AND role_definition_id = ? "
                    "AND principal_id = ?)", a.id, scope_key(a.scope), a.role_definition_id, a.principal_id)
                if row is not None:
                    raise AssignmentExists(_assignment(row))
                await conn.execute(
                    "INSERT INTO role_assignments (id, scope, scope_key, role_definition_id, principal_id, "
                    "principal_type, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    a.id, a.scope, scope_key(a.scope), a.role_definition_id, a.principal_id, a.principal_type,
                    a.created_at, a.created_by)
        except AssignmentExists:
            raise
        except Exception as exc:
            if _is_unique_violation(exc):
                raise AssignmentExists(await self.get(a.id) or await self.find(
                    a.scope, a.role_definition_id, a.principal_id)) from None
            raise
        return a

    async def delete(self, assignment_id: str) -> RoleAssignment | None:
        """Remove one assignment; the removed row, or None when there was none."""
        async with self.db.transaction() as conn:
            row = await conn.fetchrow("SELECT * FROM role_assignments WHERE id = ?", assignment_id.lower())
            if row is None:
                return None
            await conn.execute("DELETE FROM role_assignments WHERE id = ?", assignment_id.lower())
        return _assignment(row)

    async def for_principal(self, principal_id: str) -> list[RoleAssignment]:
        rows = await self.db.fetch("SELECT * FROM role_assignments WHERE principal_id = ? ORDER BY created_at, id",
                                   principal_id.lower())
        return [_assignment(r) for r in rows]

    async def grants_for(self, principal_id: str) -> Sequence[Grant]:
        """What the Authorizer reads (rbac.GrantSource)."""
        return [a.grant for a in await self.for_principal(principal_id)]

    async def list(self, scope: str | None = None, principal_id: str | None = None, above: bool = True,
                   below: bool = True, role_definition_id: str | None = None) -> list[RoleAssignment]:
        """Assignments relevant to `scope`: at it, plus (by default) those above it
        that it inherits and those below it; all of them when `scope` is None."""
        where: list[str] = []
        args: list[Any] = []
        if scope is not None:
            key = scope_key(scope)
            options = ["scope_key = ?"]
            args.append(key)
            if above:
                higher = ancestors(key)[1:]
                if higher:
                    options.append(f"scope_key IN ({placeholders(higher)})")
                    args.extend(higher)
            if below:
                options.append("scope_key LIKE ?")
                args.append(key.replace("%", "") + "/%")
            where.append("(" + " OR ".join(options) + ")")
        if principal_id is not None:
            where.append("principal_id = ?")
            args.append(principal_id.lower())
        if role_definition_id is not None:
            where.append("role_definition_id = ?")
            args.append(role_definition_id.lower())
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = await self.db.fetch(f"SELECT * FROM role_assignments{clause} ORDER BY created_at, id", *args)
        found = [_assignment(r) for r in rows]
        if scope is None:
            return found
        # LIKE treats `_` (legal in group names) as a wildcard: re-check the prefix exactly.
        return [a for a in found if scope_key(a.scope) == scope_key(scope) or (above and covers(a.scope, scope))
                or (below and covers(scope, a.scope))]
