"""SettingsStore: the diagnostic_settings table (migrations/008_diagnostics.sql).

Settings are keyed by the account's internal id, so a setting belongs to one
account and goes when the account is deleted and re-created (Azure keeps
orphaned settings and revives them on a namesake; Lapis does not). Names
compare without case, as ARM names do.
"""

from __future__ import annotations

import json

from lapis.diagnostics.settings import DiagnosticSetting
from lapis.store.database import Database, Row

CHANGED_CHANNEL = "lapis_diagnostics"  # PostgreSQL channel: "an account's settings changed"


def _setting(row: Row) -> DiagnosticSetting:
    return DiagnosticSetting(account_id=row["account_id"], name=row["name"], resource_id=row["resource_id"],
                             location=row["location"], properties=json.loads(row["properties"]),
                             created_at=row["created_at"], created_by=row["created_by"],
                             updated_at=row["updated_at"], updated_by=row["updated_by"])


class SettingsStore:
    def __init__(self, db: Database):
        self.db = db

    async def get(self, account_id: str, name: str) -> DiagnosticSetting | None:
        row = await self.db.fetchrow("SELECT * FROM diagnostic_settings WHERE account_id = ? AND name_key = ?",
                                     account_id, name.lower())
        return _setting(row) if row else None

    async def for_account(self, account_id: str) -> list[DiagnosticSetting]:
        rows = await self.db.fetch("SELECT * FROM diagnostic_settings WHERE account_id = ? ORDER BY name_key",
                                   account_id)
        return [_setting(r) for r in rows]

    async def all(self) -> list[DiagnosticSetting]:
        rows = await self.db.fetch("SELECT * FROM diagnostic_settings ORDER BY account_id, name_key")
        return [_setting(r) for r in rows]

    async def put(self, setting: DiagnosticSetting) -> bool:
        """Insert or replace; True when created. The creation stamp survives a replace."""
        async with self.db.transaction() as conn:
            row = await conn.fetchrow("SELECT created_at, created_by, name FROM diagnostic_settings "
                                      "WHERE account_id = ? AND name_key = ?", setting.account_id, setting.name.lower())
            if row is not None:
                setting.created_at, setting.created_by, setting.name = row["created_at"], row["created_by"], row["name"]
                await conn.execute(
                    "UPDATE diagnostic_settings SET resource_id = ?, location = ?, properties = ?, updated_at = ?, "
                    "updated_by = ? WHERE account_id = ? AND name_key = ?", setting.resource_id, setting.location,
                    json.dumps(setting.properties), setting.updated_at, setting.updated_by, setting.account_id,
                    setting.name.lower())
            else:
                await conn.execute(
                    "INSERT INTO diagnostic_settings (account_id, name_key, name, resource_id, location, properties, "
                    "created_at, created_by, updated_at, updated_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    setting.account_id, setting.name.lower(), setting.name, setting.resource_id, setting.location,
                    json.dumps(setting.properties), setting.created_at, setting.created_by, setting.updated_at,
                    setting.updated_by)
        await self.db.notify(CHANGED_CHANNEL, setting.account_id)
        return row is None

    async def delete(self, account_id: str, name: str) -> bool:
        async with self.db.transaction() as conn:
            removed = await conn.execute("DELETE FROM diagnostic_settings WHERE account_id = ? AND name_key = ?",
                                         account_id, name.lower())
        await self.db.notify(CHANGED_CHANNEL, account_id)
        return removed > 0
