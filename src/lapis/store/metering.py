"""MeteringStore: per-minute metric rollups and usage (migrations/006_metering.sql,
011_usage_minutes.sql).

Both tables are written in batches, never per request, each batch in one
transaction of multi-row INSERTs (one statement per ~1,000 rows: one round
trip, and on SQLite one fsync per batch):

    rollups  INSERT ... ON CONFLICT DO UPDATE adds sums and keeps min/max, so
             the partial minutes of several replicas (or of two flushes of one
             replica) add up in one row.
    usage    the batch's rows (USAGE_COLUMNS, one per request) summed in memory
             per minute and USAGE_KEY, then added the same way into
             usage_minutes, together with the journal marks (per segment, the
             highest line sequence number now stored) in the same
             transaction: what makes it exactly once (lapis.usage.journal).

Sums come back as int (PostgreSQL's SUM(bigint) is a numeric, hence `int()`).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Iterable, Mapping, Sequence

from lapis.store.database import Database, Row

ROLLUP_KEYS = ("account_id", "minute", "deployment", "model", "model_version", "region", "status_code",
               "streaming", "operation")
# Value columns, in the order a rollup cell holds them (lapis.metrics.rollup).
ROLLUP_VALUES = ("requests", "prompt_tokens", "generated_tokens", "cached_tokens", "ttfb_sum", "ttfb_min",
                 "ttfb_max", "ttlt_sum", "ttlt_min", "ttlt_max", "tps_sum", "tps_count", "tbt_sum", "tbt_count")
_MINS = ("ttfb_min", "ttlt_min")
_MAXS = ("ttfb_max", "ttlt_max")
USAGE_COLUMNS = ("request_id", "time_ms", "usage_day", "subscription_id", "resource_group", "account_id",
                 "account_arm_id", "location", "deployment", "model", "model_version", "sku", "caller", "operation",
                 "tags", "prompt_tokens", "cached_tokens", "completion_tokens", "cost_input_nano", "cost_cached_nano",
                 "cost_output_nano")
# usage_minutes' key: the minute (time_ms // 60000), then USAGE_COLUMNS[2:15].
USAGE_KEY = ("minute",) + USAGE_COLUMNS[2:15]
USAGE_VALUES = ("requests", "prompt_tokens", "cached_tokens", "completion_tokens", "cost_input_nano",
                "cost_cached_nano", "cost_output_nano")
USAGE_DIMENSIONS = ("usage_day", "resource_group", "account_arm_id", "location", "deployment", "model",
                    "model_version", "sku", "caller", "operation", "tags")
MAX_PARAMETERS = 9_000  # bind parameters per statement: under lapis.store.database.to_dollar_params's 9,999


def _merge(column: str) -> str:
    if column in _MINS:
        return (f"{column} = CASE WHEN excluded.{column} < metric_rollups.{column} THEN excluded.{column} "
                f"ELSE metric_rollups.{column} END")
    if column in _MAXS:
        return (f"{column} = CASE WHEN excluded.{column} > metric_rollups.{column} THEN excluded.{column} "
                f"ELSE metric_rollups.{column} END")
    return f"{column} = metric_rollups.{column} + excluded.{column}"


_ROLLUP_COLUMNS = ROLLUP_KEYS + ROLLUP_VALUES
_USAGE_MINUTE_COLUMNS = USAGE_KEY + USAGE_VALUES
_ROLLUP_TAIL = (f" ON CONFLICT ({', '.join(ROLLUP_KEYS)}) DO UPDATE SET "
                + ", ".join(_merge(c) for c in ROLLUP_VALUES))
_USAGE_TAIL = (f" ON CONFLICT ({', '.join(USAGE_KEY)}) DO UPDATE SET "
               + ", ".join(f"{c} = usage_minutes.{c} + excluded.{c}" for c in USAGE_VALUES))
_MARK_TAIL = " ON CONFLICT (segment) DO UPDATE SET seq = excluded.seq"


def _insert(table: str, columns: Sequence[str], count: int, tail: str) -> str:
    row = "(" + ", ".join("?" for _ in columns) + ")"
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES " + ", ".join(row for _ in range(count)) + tail


@dataclass(frozen=True, slots=True)
class UsageScope:
    """Which metered requests a query covers: a subscription, optionally one
    resource group and optionally one account (its ARM id); any case."""

    subscription_id: str
    resource_group: str | None = None
    account_arm_id: str | None = None


class MeteringStore:
    def __init__(self, db: Database):
        self.db = db

    async def _write(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], tail: str) -> int:
        async with self.db.transaction() as conn:
            return await _insert_all(conn, table, columns, rows, tail)

    # -- rollups --------------------------------------------------------------

    async def add_rollups(self, rows: Sequence[Sequence[Any]]) -> None:
        """Add rows of ROLLUP_KEYS + ROLLUP_VALUES into the table, in one transaction.
        Keys must be unique within one call (the in-memory cells are)."""
        if rows:
            await self._write("metric_rollups", _ROLLUP_COLUMNS, rows, _ROLLUP_TAIL)

    async def rollup_buckets(self, account_id: str, start_minute: int, end_minute: int, step: int) -> list[Row]:
        """Rollups of one account in [start_minute, end_minute), summed per bucket of
        `step` minutes (bucket 0 starts at start_minute) and dimension set."""
        dims = ", ".join(ROLLUP_KEYS[2:])
        sums = ", ".join(
            f"MIN({c}) AS {c}" if c in _MINS else f"MAX({c}) AS {c}" if c in _MAXS else f"SUM({c}) AS {c}"
            for c in ROLLUP_VALUES)
        rows = await self.db.fetch(
            f"SELECT (minute - ?) / ? AS bucket, {dims}, {sums} FROM metric_rollups "
            f"WHERE account_id = ? AND minute >= ? AND minute < ? GROUP BY 1, {dims}",
            start_minute, step, account_id, start_minute, end_minute,
        )
        return [_numbers(r) for r in rows]

    async def deployment_minutes(self, account_id: str, start_minute: int, end_minute: int) -> list[Row]:
        """Tokens per minute and deployment (for provisioned utilization)."""
        rows = await self.db.fetch(
            "SELECT minute, deployment, SUM(prompt_tokens) AS prompt_tokens, SUM(generated_tokens) AS "
            "generated_tokens FROM metric_rollups WHERE account_id = ? AND minute >= ? AND minute < ? "
            "GROUP BY minute, deployment", account_id, start_minute, end_minute,
        )
        return [_numbers(r) for r in rows]

    # -- usage ----------------------------------------------------------------

    async def add_usage(self, rows: Sequence[Sequence[Any]], marks: Mapping[str, int] | None = None,
                        forget: Sequence[str] = ()) -> int:
        """Add rows of USAGE_COLUMNS (one per request), summed per minute, into
        usage_minutes; in the same transaction set the journal `marks` (segment
        -> highest sequence number stored) and delete the marks of the `forget`
        segments (deleted files). The number of requests added."""
        sums = minute_sums(rows)
        if not (sums or marks or forget):
            return 0
        async with self.db.transaction() as conn:
            await _insert_all(conn, "usage_minutes", _USAGE_MINUTE_COLUMNS, sums, _USAGE_TAIL)
            if marks:
                await _insert_all(conn, "usage_journal_marks", ("segment", "seq"), list(marks.items()), _MARK_TAIL)
            for name in forget:
                await conn.execute("DELETE FROM usage_journal_marks WHERE segment = ?", name)
        return len(rows)

    async def usage_mark(self, segment: str) -> int:
        """The highest sequence number of `segment` whose usage is stored; 0 if none."""
        row = await self.db.fetchrow("SELECT seq FROM usage_journal_marks WHERE segment = ?", segment)
        return int(row["seq"]) if row else 0

    async def forget_marks(self, segments: Sequence[str]) -> None:
        """Delete the marks of segments whose files are gone."""
        if segments:
            await self.add_usage((), forget=segments)

    def _where(self, scope: UsageScope, start_ms: int, end_ms: int) -> tuple[str, list[Any]]:
        """A minute counts when its start is in [start_ms, end_ms)."""
        clauses = ["subscription_id = ?", "minute >= ?", "minute < ?"]
        args: list[Any] = [scope.subscription_id.lower(), -(-start_ms // 60000), -(-end_ms // 60000)]
        if scope.resource_group is not None:
            clauses.append("LOWER(resource_group) = ?")
            args.append(scope.resource_group.lower())
        if scope.account_arm_id is not None:
            clauses.append("LOWER(account_arm_id) = ?")
            args.append(scope.account_arm_id.lower())
        return " AND ".join(clauses), args

    async def usage_groups(self, scope: UsageScope, start_ms: int, end_ms: int) -> list[Row]:
        """Usage of the minutes in [start_ms, end_ms) summed per day and USAGE_DIMENSIONS."""
        where, args = self._where(scope, start_ms, end_ms)
        dims = ", ".join(USAGE_DIMENSIONS)
        sums = ", ".join(f"SUM({c}) AS {c}" for c in USAGE_VALUES)
        rows = await self.db.fetch(f"SELECT {dims}, {sums} FROM usage_minutes WHERE {where} GROUP BY {dims}", *args)
        return [_numbers(r) for r in rows]

    async def usage_totals(self, scope: UsageScope, start_ms: int, end_ms: int) -> Row:
        where, args = self._where(scope, start_ms, end_ms)
        sums = ", ".join(f"COALESCE(SUM({c}), 0) AS {c}" for c in USAGE_VALUES)
        row = await self.db.fetchrow(f"SELECT {sums} FROM usage_minutes WHERE {where}", *args)
        return _numbers(row or {})

    # -- retention -------------------------------------------------------------

    async def prune(self, rollups_before_minute: int, usage_before_ms: int) -> tuple[int, int]:
        """Delete rollups and usage minutes older than the given times; how many rows of each.
        A usage minute goes when it ends at or before `usage_before_ms`."""
        async with self.db.transaction() as conn:
            rollups = await conn.execute("DELETE FROM metric_rollups WHERE minute < ?", rollups_before_minute)
            usage = await conn.execute("DELETE FROM usage_minutes WHERE minute < ?", usage_before_ms // 60000)
        return rollups, usage


def minute_sums(rows: Iterable[Sequence[Any]]) -> list[tuple]:
    """Rows of USAGE_COLUMNS summed per USAGE_KEY: rows of USAGE_KEY + USAGE_VALUES."""
    sums: dict[tuple, list[int]] = {}
    for row in rows:
        key = (row[1] // 60000, *row[2:15])
        cell = sums.get(key)
        if cell is None:
            sums[key] = [1, *row[15:21]]
        else:
            cell[0] += 1
            for i in range(1, 7):
                cell[i] += row[14 + i]
    return [(*key, *cell) for key, cell in sums.items()]


async def _insert_all(conn: Any, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], tail: str) -> int:
    per_statement = max(1, MAX_PARAMETERS // len(columns))
    written = 0
    for start in range(0, len(rows), per_statement):
        chunk = rows[start:start + per_statement]
        flat = [value for row in chunk for value in row]
        written += await conn.execute(_insert(table, columns, len(chunk), tail), *flat)
    return written


def _numbers(row: Row) -> Row:
    """PostgreSQL's SUM(bigint) arrives as Decimal: make it an int, as SQLite gives it."""
    out = dict(row)
    for key, value in out.items():
        if isinstance(value, Decimal):
            out[key] = int(value) if value == value.to_integral_value() else float(value)
    return out
