"""Metering in the store, run unchanged against SQLite and PostgreSQL (fixture database_url):
usage written exactly once per request id, journalled rows committed and their segment deleted,
a journal left by a crash replayed once, totals per scope,
rollups of one minute adding up across flushes, and retention."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import datetime, timezone

import pytest

from lapis.catalog import load_catalogue
from lapis.metrics.rollup import Rollups
from lapis.observe.record import RequestRecord
from lapis.store.metering import USAGE_COLUMNS, MeteringStore, UsageScope
from lapis.store.sql import SqlStore
from lapis.usage import usage_totals
from lapis.usage.journal import Journal
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


async def test_a_request_id_is_written_once(store):
    metering = MeteringStore(store.db)
    meter = UsageMeter(metering, PriceBook(load_catalogue()))
    for rid, prompt in (("r1", 100), ("r2", 50)):
        meter.observe(record(rid, prompt, 10))
    rows = list(meter._rows)
    assert await metering.add_usage(rows) == 2
    assert await metering.add_usage(rows) == 0  # the same batch again: an ambiguous failure retried
    assert await metering.add_usage([rows[0]]) == 0
    totals = await usage_totals(store, f"/subscriptions/{SUB}", datetime(2000, 1, 1), datetime(2100, 1, 1))
    assert (totals.requests, totals.prompt_tokens, totals.completion_tokens) == (2, 150, 20)


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
    stored = await store.db.fetch("SELECT request_id, cost_input_nano, cost_cached_nano, cost_output_nano "
                                  "FROM usage_records ORDER BY request_id")
    assert [r["request_id"] for r in stored] == ["plain", "streamed"]
    prices = prices_for(load_catalogue().model("gpt-4o"), "Standard")
    plain = stored[0]
    assert (plain["cost_input_nano"], plain["cost_cached_nano"], plain["cost_output_nano"]) == (
        round(600 * prices.input), round(400 * prices.cached_input), round(200 * prices.output))


async def test_a_journal_left_by_a_crash_is_replayed_once(store, tmp_path):
    metering = MeteringStore(store.db)
    crashed = UsageMeter(metering, PriceBook(load_catalogue()), Journal(tmp_path / "usage"))
    for rid, prompt in (("done-1", 100), ("done-2", 50), ("journalled-only", 7)):
        crashed.observe(record(rid, prompt, 10))
    await metering.add_usage(crashed._rows[:2])  # the writer committed two rows, then kill -9
    segment = crashed.journal._current  # type: ignore[union-attr]
    os.close(segment.fd)  # its lock dies with the process
    with open(segment.path, "ab") as cut:
        cut.write(b'["torn-by-the-cr')  # a write the crash cut short
    restarted = UsageMeter(metering, PriceBook(load_catalogue()), Journal(tmp_path / "usage"))
    await restarted.open()
    assert (restarted.replayed, restarted.recovered, restarted.torn) == (3, 1, 1)
    totals = await usage_totals(store, f"/subscriptions/{SUB}", datetime(2000, 1, 1), datetime(2100, 1, 1))
    assert (totals.requests, totals.prompt_tokens, totals.completion_tokens) == (3, 157, 30)
    assert list((tmp_path / "usage").iterdir()) == []


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
    rows = [(f"id{i}", 1_700_000_000_000 + i, 20231114, SUB, "rg1", "a" * 32, ARM, "eastus", "dep", "gpt-4o",
             "v", "Standard", "key1", "ChatCompletions_Create", "{}", 3, 0, 2, 1, 0, 1) for i in range(3500)]
    assert len(rows[0]) == len(USAGE_COLUMNS)
    assert await metering.add_usage(rows) == 3500
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
    assert [r["request_id"] for r in await store.db.fetch("SELECT request_id FROM usage_records")] == ["new"]
