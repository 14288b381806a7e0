"""ActivityLogStore: the activity_log table (migrations/008_diagnostics.sql).

Rows are written in batches by the recorder's queue (lapis.audit.recorder)
and never changed; an id written twice (a retried batch) is kept once.
Events older than RETENTION_DAYS (Azure keeps 90 days) are removed as new
ones arrive, at most once an hour.
"""

from __future__ import annotations

import json
import time
from typing import Any

from lapis.audit.filter import ActivityFilter
from lapis.diagnostics.shaping import iso
from lapis.store.database import Database

RETENTION_DAYS = 90
_INSERT = ("INSERT INTO activity_log (id, subscription_id, event_timestamp, resource_group_key, resource_id_key, "
           "provider_key, correlation_id, caller, status, event) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
           "ON CONFLICT (id) DO NOTHING")


class ActivityLogStore:
    def __init__(self, db: Database):
        self.db = db
        self._pruned = 0.0

    async def add(self, events: list[dict[str, Any]]) -> None:
        async with self.db.transaction() as conn:
            for e in events:
                await conn.execute(
                    _INSERT, e["eventDataId"], e["subscriptionId"].lower(), e["eventTimestamp"],
                    e["resourceGroupName"].lower(), e["resourceId"].lower(),
                    e["resourceProviderName"]["value"].lower(), e["correlationId"].lower(), e["caller"].lower(),
                    e["status"]["value"].lower(), json.dumps(e, separators=(",", ":")))
        if time.time() - self._pruned > 3600:
            self._pruned = time.time()
            async with self.db.transaction() as conn:
                await conn.execute("DELETE FROM activity_log WHERE event_timestamp < ?",
                                   iso(time.time() - RETENTION_DAYS * 86400))

    async def list(self, subscription_id: str, where: ActivityFilter, skip: int = 0,
                   top: int = 200) -> list[dict[str, Any]]:
        """Newest first."""
        sql = ["SELECT event FROM activity_log WHERE subscription_id = ? AND event_timestamp >= ? "
               "AND event_timestamp <= ?"]
        args: list[Any] = [subscription_id.lower(), where.start, where.end]
        for column, value in (("resource_group_key", where.resource_group), ("provider_key", where.resource_provider),
                              ("correlation_id", where.correlation_id), ("caller", where.caller),
                              ("status", where.status)):
            if value is not None:
                sql.append(f"AND {column} = ?")
                args.append(value.lower())
        if where.resource_id is not None:
            key = where.resource_id.lower().rstrip("/")
            sql.append("AND (resource_id_key = ? OR substr(resource_id_key, 1, ?) = ?)")
            args.extend([key, len(key) + 1, key + "/"])
        sql.append("ORDER BY event_timestamp DESC, id LIMIT ? OFFSET ?")
        args.extend([top, skip])
        rows = await self.db.fetch(" ".join(sql), *args)
        return [json.loads(r["event"]) for r in rows]
