"""Metering in the store, run unchanged against SQLite and PostgreSQL (fixture database_url):
usage summed per minute with its journal marks in one transaction, journalled rows committed and
their segment (and mark) deleted, a journal left by a crash replayed above its mark, totals per scope,
rollups of one minute adding up across flushes, and retention."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone

import pytest

from lapis.catalog import load_catalogue
from lapis.metrics.rollup import Rollups
from lapis.observe.record import RequestRecord
from lapis.store.database import open_database
from lapis.store.metering import USAGE_COLUMNS, MeteringStore, UsageScope
from lapis.store.migrate import _statements, available, migrate
from lapis.store.sql import SqlStore
from lapis.usage import usage_totals
from lapis.usage.journal import Journal, _release
from lapis.usage.meter import UsageMeter
from lapis.usage.pricing import PriceBook, prices_for

SUB = "11111111-2222-3333-4444-555555555555"
ARM = f"/subscriptions/{SUB}/resourceGroups/RG1/providers/Microsoft.CognitiveServices/accounts/acct"
OTHER_ARM = f"/subscriptions/{SUB}/resourceGroups/rg2/providers/Microsoft.CognitiveServices/accounts/other"


def record(request_id: str, prompt: int, completion: int, cached: int = 0, streaming: bool = False,
           arm_id: str = ARM, model: str = "gpt-4o", at: float | None = None) -> RequestRecord:
    group = arm_id.split("/")[4]
    return RequestRecord(
        time=at if at is not None else time.time(), request_id=request_id, operation="chat",
        operation_name="ChatCompletions_Create", api_version="2024-10-21", status=200, streaming=streaming,
        duration_ms=12.0, ttfb_ms=3.0, caller="key1", account_id=arm_id.rsplit("/", 1)[-1].ljust(32, "0"),
        account_name=arm_id.rsplit("/", 1)[-1], account_arm_id=arm_id, subscription_id=SUB, resource_group=group,
        location="eastus", tags={"team": "search"}, deployment="dep", model=model, model_version="2024-11-20",
        sku="Standard", prompt_tokens=prompt, completion_tokens=completion, cached_tokens=cached)


@pytest.fixture()
async def store(database_url):
    sql = await SqlStore.open(database_url)
    yield sql
    await sql.close()


async def test_usage_is_summed_per_minute_with_its_marks(store):
    metering = MeteringStore(store.db)
    meter = UsageMeter(metering, PriceBook(load_catalogue()))
    minute = 29_000_000 * 60.0
    for rid, prompt, at in (("r1", 100, minute + 1), ("r2", 50, minute + 59), ("r3", 7, minute + 60)):
        meter.observe(record(rid, prompt, 10, at=at))
    assert await metering.add_usage(meter._rows[:2], {"journal-1-2-000001.jsonl": 2}) == 2
    assert await metering.add_usage(meter._rows[2:], {"journal-1-2-000001.jsonl": 3}) == 1
    await metering.add_usage(meter._rows[:1])  # another replica's request of the same minute and dimensions
    stored = await store.db.fetch("SELECT minute, requests, prompt_tokens, completion_tokens FROM usage_minutes "
                                  "ORDER BY minute")
    assert [tuple(int(v) for v in r.values()) for r in stored] == [(29_000_000, 3, 250, 30), (29_000_001, 1, 7, 10)]
    assert await metering.usage_mark("journal-1-2-000001.jsonl") == 3
    assert await metering.usage_mark("journal-9-9-000001.jsonl") == 0
    await metering.forget_marks(["journal-1-2-000001.jsonl"])
    assert await metering.usage_mark("journal-1-2-000001.jsonl") == 0
    totals = await usage_totals(store, f"/subscriptions/{SUB}", datetime(2000, 1, 1), datetime(2100, 1, 1))
    assert (totals.requests, totals.prompt_tokens, totals.completion_tokens) == (4, 257, 40)
    start = datetime.fromtimestamp(minute + 60, timezone.utc)  # a minute counts when it starts in the range
    later = await usage_totals(store, f"/subscriptions/{SUB}", start, datetime(2100, 1, 1))
    assert (later.requests, later.prompt_tokens) == (1, 7)


async def test_the_writer_commits_journalled_rows_and_deletes_the_segment(store, tmp_path):
    metering = MeteringStore(store.db)
    journal = Journal(tmp_path / "usage", segment_s=0)
    meter = UsageMeter(metering, PriceBook(load_catalogue()), journal)
    writer = asyncio.get_running_loop().create_task(meter.run())
    meter.observe(record("plain", 1000, 200, cached=400))
    meter.observe(record("streamed", 10, 5, streaming=True))
    meter.observe(record("no-tokens", 0, 0))
    assert journal.seq == 2 and len(list((tmp_path / "usage").glob("journal-*.jsonl"))) == 1
    await meter.close(writer)
    assert writer.done() and meter.pending == 0 and meter.batches >= 1
    assert list((tmp_path / "usage").iterdir()) == []  # every line committed: the segment is gone
    assert await store.db.fetch("SELECT * FROM usage_journal_marks") == []  # the segment's mark went with it
    stored = await store.db.fetchrow("SELECT SUM(requests) AS requests, SUM(cost_input_nano) AS cost_in, "
                                     "SUM(cost_cached_nano) AS cost_cached, SUM(cost_output_nano) AS cost_out "
                                     "FROM usage_minutes")
    prices = prices_for(load_catalogue().model("gpt-4o"), "Standard")
    assert tuple(int(v) for v in stored.values()) == (
        2, round(600 * prices.input) + round(10 * prices.input), round(400 * prices.cached_input),
        round(200 * prices.output) + round(5 * prices.output))


async def test_a_journal_left_by_a_crash_is_replayed_once(store, tmp_path):
    metering = MeteringStore(store.db)
    crashed = UsageMeter(metering, PriceBook(load_catalogue()), Journal(tmp_path / "usage"))
    for rid, prompt in (("done-1", 100), ("done-2", 50), ("journalled-only", 7)):
        crashed.observe(record(rid, prompt, 10))
    segment = crashed.journal._current  # type: ignore[union-attr]
    await metering.add_usage(crashed._rows[:2], {segment.path.name: 2})  # the writer committed two rows: kill -9
    _release(segment)  # the process dies: its mapping and its lock go, the file stays
    with open(segment.path, "ab") as cut:
        cut.write(b'["torn-by-the-cr')  # a write the crash cut short
    restarted = UsageMeter(metering, PriceBook(load_catalogue()), Journal(tmp_path / "usage"))
    await restarted.open()
    assert (restarted.replayed, restarted.recovered, restarted.torn) == (3, 1, 1)
    totals = await usage_totals(store, f"/subscriptions/{SUB}", datetime(2000, 1, 1), datetime(2100, 1, 1))
    assert (totals.requests, totals.prompt_tokens, totals.completion_tokens) == (3, 157, 30)
    assert list((tmp_path / "usage").iterdir()) == []
    assert await metering.usage_mark(segment.path.name) == 0


async def test_totals_by_scope_and_time(store):
    metering = MeteringStore(store.db)
    meter = UsageMeter(metering, PriceBook(load_catalogue()))
    old = datetime(2026, 1, 1, tzinfo=timezone.utc).timestamp()
    meter.observe(record("a", 100, 10))
    meter.observe(record("b", 200, 20, arm_id=OTHER_ARM))
    meter.observe(record("c", 400, 40, at=old))
    await metering.add_usage(meter._rows)
    start, end = datetime(2026, 2, 1), datetime(2100, 1, 1)
    whole = await usage_totals(store.db, f"/subscriptions/{SUB.upper()}", start, end)
    group = await usage_totals(store, f"/subscriptions/{SUB}/resourcegroups/rg1", start, end)
    account = await usage_totals(store, OTHER_ARM.upper(), start, end)
    everything = await usage_totals(store, UsageScope(SUB), datetime(2025, 1, 1), end)
    assert (whole.requests, whole.prompt_tokens, whole.completion_tokens) == (2, 300, 30)
    assert (group.requests, group.prompt_tokens) == (1, 100)
    assert (account.requests, account.prompt_tokens) == (1, 200)
    assert everything.requests == 3
    prices = prices_for(load_catalogue().model("gpt-4o"), "Standard")
    assert whole.cost_nano == sum(round(p * prices.input) + round(c * prices.output) for p, c in ((100, 10), (200, 20)))
    spec = load_catalogue().model("gpt-4o")
    assert whole.cost == pytest.approx((300 * spec.price_in_per_1k + 30 * spec.price_out_per_1k) / 1000)
    with pytest.raises(ValueError):
        await usage_totals(store, "/providers/Microsoft.Management/managementGroups/x", start, end)


async def test_many_rows_span_several_statements(store):
    metering = MeteringStore(store.db)
    rows = [(f"id{i}", 1_700_000_000_000 + i, 20231114, SUB, "rg1", "a" * 32, ARM, "eastus", f"dep{i % 1500}",
             "gpt-4o", "v", "Standard", "key1", "ChatCompletions_Create", "{}", 3, 0, 2, 1, 0, 1) for i in range(3500)]
    assert len(rows[0]) == len(USAGE_COLUMNS)
    assert await metering.add_usage(rows) == 3500
    assert (await store.db.fetchrow("SELECT COUNT(*) AS n FROM usage_minutes"))["n"] == 1500
    totals = await usage_totals(store, f"/subscriptions/{SUB}", datetime(2000, 1, 1), datetime(2100, 1, 1))
    assert (totals.requests, totals.prompt_tokens, totals.cost_nano) == (3500, 3 * 3500, 2 * 3500)


async def test_rollups_of_one_minute_add_up_across_flushes(store):
    metering = MeteringStore(store.db)
    rollups = Rollups(metering)
    key = ("a" * 32, "acct", "dep", "gpt-4o", "v1", "eastus", 200, False, "ChatCompletions_Create")
    minute = 29_000_000
    rollups.observe(minute, key, 100, 10, 0, 5.0, 50.0)
    rollups.observe(minute, key, 300, 30, 20, 9.0, 20.0)
    assert await rollups.flush()
    rollups.observe(minute, key, 1, 1, 0, 2.0, 90.0)  # a later flush (or another replica) of the same minute
    rollups.observe(minute + 1, key, 7, 0, 0, 1.0, 1.0)
    assert await rollups.flush()
    rows = await metering.rollup_buckets("a" * 32, minute, minute + 2, 1)
    by_bucket = {r["bucket"]: r for r in rows}
    first = by_bucket[0]
    assert (first["requests"], first["prompt_tokens"], first["generated_tokens"], first["cached_tokens"]) == \
        (3, 401, 41, 20)
    assert (first["ttfb_min"], first["ttfb_max"], first["ttlt_min"], first["ttlt_max"]) == (2.0, 9.0, 20.0, 90.0)
    assert first["ttfb_sum"] == pytest.approx(16.0)
    assert by_bucket[1]["requests"] == 1
    two = await metering.rollup_buckets("a" * 32, minute, minute + 2, 2)
    assert [(r["bucket"], r["requests"]) for r in two] == [(0, 4)]
    assert rollups.cells == {} and rollups.flushes == 2


async def test_retention_removes_what_is_old(store):
    metering = MeteringStore(store.db)
    rollups = Rollups(metering)
    key = ("a" * 32, "acct", "dep", "gpt-4o", "v1", "eastus", 200, False, "ChatCompletions_Create")
    rollups.observe(100, key, 1, 1, 0, 1.0, 1.0)
    rollups.observe(200, key, 1, 1, 0, 1.0, 1.0)
    await rollups.flush()
    meter = UsageMeter(metering, PriceBook(load_catalogue()))
    meter.observe(record("old", 1, 1, at=1000.0))
    meter.observe(record("new", 1, 1, at=5000.0))
    await metering.add_usage(meter._rows)
    assert await metering.prune(150, 2_000_000) == (1, 1)
    assert [r["bucket"] for r in await metering.rollup_buckets("a" * 32, 0, 1000, 1)] == [200]
    assert [r["minute"] for r in await store.db.fetch("SELECT minute FROM usage_minutes")] == [5000 // 60]


async def test_migration_11_moves_usage_records_into_minutes(database_url):
    db = await open_database(database_url)
    try:
        async with db.transaction() as conn:  # the schema as version 10 left it
            for version, _name, sql in available():
                if version <= 10:
                    for statement in _statements(sql):
                        await conn.execute(statement)
            await conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                               "applied_at TEXT NOT NULL)")
            for version, name, _sql in available():
                if version <= 10:
                    await conn.execute("INSERT INTO schema_migrations VALUES (?, ?, 'then')", version, name)
            for rid, ms, prompt in (("a", 60_000 * 7 + 5, 10), ("b", 60_000 * 7 + 59_999, 20), ("c", 60_000 * 8, 40)):
                await conn.execute(f"INSERT INTO usage_records ({', '.join(USAGE_COLUMNS)}) VALUES "
                                   f"({', '.join('?' for _ in USAGE_COLUMNS)})",
                                   rid, ms, 19700101, SUB, "rg1", "a" * 32, ARM, "eastus", "dep", "gpt-4o", "v",
                                   "Standard", "key1", "ChatCompletions_Create", "{}", prompt, 0, 1, prompt, 0, 1)
        assert 11 in await migrate(db)
        rows = await db.fetch("SELECT minute, requests, prompt_tokens, cost_input_nano FROM usage_minutes "
                              "ORDER BY minute")
        assert [tuple(int(v) for v in r.values()) for r in rows] == [(7, 2, 30, 30), (8, 1, 40, 40)]
        assert await db.fetch("SELECT request_id FROM usage_records") == []  # moved, not kept twice
    finally:
        await db.close()
