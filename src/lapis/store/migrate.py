"""Versioned schema migrations.

Each file `migrations/NNN_name.sql` is one version. `migrate()` applies, in
order and each in its own transaction, every version the database has not
recorded in `schema_migrations`. Files are never edited once released: a
change to the schema is a new file.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from importlib import resources

from lapis.store.database import Database

_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")


def available() -> list[tuple[int, str, str]]:
    """(version, filename, sql) for every packaged migration, in order."""
    folder = resources.files("lapis.store") / "migrations"
    found = []
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text()))
    return sorted(found)


def _statements(sql: str) -> list[str]:
    lines = [line for line in sql.splitlines() if not line.strip().startswith("--")]
    return [part.strip() for part in "\n".join(lines).split(";") if part.strip()]


async def migrate(db: Database) -> list[int]:
    """Bring the schema up to date; return the versions applied now."""
    async with db.transaction() as conn:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
            "applied_at TEXT NOT NULL)"
        )
    done = {row["version"] for row in await db.fetch("SELECT version FROM schema_migrations")}
    applied = []
    for version, name, sql in available():
        if version in done:
            continue
        async with db.transaction() as conn:
            for statement in _statements(sql):
                await conn.execute(statement)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                version, name, datetime.now(timezone.utc).isoformat(),
            )
        applied.append(version)
    return applied
