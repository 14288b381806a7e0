"""The usage journal without a server: replay skips a torn last line and the
segments a live process holds, honours each segment's mark (a crash between
the commit and the segment's deletion counts once; two segments with partial
marks), a segment is deleted once its rows are committed (and kept while they
are not), rows beyond memory wait in the journal for the next start, a batch
whose commit failed ambiguously is not added twice, a stream observed before
[DONE] counts once, and streaming calls the hook that observes it before
[DONE] goes out."""

from __future__ import annotations

import msgspec
from msgspec.structs import replace
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from lapis.backends.base import ChatCall, Delta, Usage
from lapis.catalog import load_catalogue
from lapis.dataplane.streaming import BEFORE_DONE, DONE, stream_chat
from lapis.store.metering import USAGE_COLUMNS
from lapis.usage.journal import Journal, _release, read_segment, replay
from lapis.usage.meter import UsageMeter
from lapis.usage.pricing import PriceBook
from support.usage_store import FakeStore, record, row

def lines(*rows: tuple, first: int = 1) -> bytes:
    """Journal lines as Journal.append writes them: the sequence number, then the row."""
    return b"".join(msgspec.json.encode((first + i, *r)) + b"\n" for i, r in enumerate(rows))


def segments(folder) -> list:
    return sorted(p.name for p in folder.glob("journal-*.jsonl"))


def test_a_row_has_every_usage_column():
    assert len(row("x")) == len(USAGE_COLUMNS)


async def test_replay_skips_a_torn_last_line(tmp_path):
    folder = tmp_path / "usage"
    folder.mkdir()
    good = [row("r1", 10), row("r2", 20)]
    torn = lines(row("r3", 30), first=3)[:-8]  # kill -9 (or a full disk) in the middle of the write
    path = folder / "journal-4242-1700000000000-000001.jsonl"
    path.write_bytes(lines(*good) + torn)
    assert read_segment(path) == ([(1, *good[0]), (2, *good[1])], 1)
    store = FakeStore()
    done = await replay(folder, store)
    assert (done.segments, done.lines, done.inserted, done.torn, done.busy) == (1, 2, 2, 1, 0)
    assert store.rows == {"r1": good[0], "r2": good[1]}
    assert not path.exists() and store.marks == {}  # the segment and its mark are gone
    again = await replay(folder, store)
    assert (again.segments, again.lines) == (0, 0)


async def test_replay_after_a_crash_between_commit_and_deletion_counts_once(tmp_path):
    folder = tmp_path / "usage"
    writer = UsageMeter(FakeStore(), PriceBook(load_catalogue()), Journal(folder))  # type: ignore[arg-type]
    store = writer.store
    for rid in ("a", "b"):
        writer.observe(record(rid))
    assert await writer._write_batch()  # committed with its mark; the segment is still current
    writer.observe(record("c"))  # journalled, not committed
    (live,) = segments(folder)
    assert store.marks == {live: 2}
    _release(writer.journal._current)  # type: ignore[arg-type]  # kill -9 now: the lock goes, file and mark stay
    (folder / "junk.txt").write_text("not a journal")
    done = await replay(folder, store)  # type: ignore[arg-type]
    assert (done.lines, done.inserted) == (3, 1)
    assert store.counts == {"a": 1, "b": 1, "c": 1}
    assert [p.name for p in folder.iterdir()] == ["junk.txt"] and store.marks == {}


async def test_replay_of_two_segments_with_partial_marks(tmp_path):
    folder = tmp_path / "usage"
    folder.mkdir()
    first, second = "journal-7-1-000001.jsonl", "journal-7-1-000002.jsonl"
    (folder / first).write_bytes(lines(row("a"), row("b"), row("c")))
    (folder / second).write_bytes(lines(row("d"), row("e"), first=4))
    store = FakeStore()
    await store.add_usage([row("a"), row("b"), row("d")], {first: 2, second: 4})  # what was committed
    done = await replay(folder, store)
    assert (done.segments, done.lines, done.inserted) == (2, 5, 2)
    assert store.counts == {"a": 1, "b": 1, "c": 1, "d": 1, "e": 1}
    assert segments(folder) == [] and store.marks == {}


async def test_a_replay_that_fails_after_its_commit_counts_once_at_the_next_start(tmp_path):
    folder = tmp_path / "usage"
    folder.mkdir()
    (folder / "journal-1-2-000001.jsonl").write_bytes(lines(row("a"), row("b")))
    store = FakeStore()
    store.lose_answer = True  # the replay's commit goes through, its answer is lost: the file stays
    try:
        await replay(folder, store)
    except ConnectionError:
        pass
    assert len(segments(folder)) == 1 and store.marks == {"journal-1-2-000001.jsonl": 2}
    done = await replay(folder, store)
    assert (done.lines, done.inserted) == (2, 0)
    assert store.counts == {"a": 1, "b": 1} and segments(folder) == []


async def test_replay_leaves_a_live_process_segment_alone(tmp_path):
    folder = tmp_path / "usage"
    live = Journal(folder)
    assert live.append(row("live"))
    store = FakeStore()
    done = await replay(folder, store)
    assert (done.busy, done.segments) == (1, 0)
    assert store.rows == {} and len(segments(folder)) == 1
    live.close(0)  # stopped before its row was committed: the segment stays, unlocked
    done = await replay(folder, store)
    assert (done.segments, done.inserted) == (1, 1) and segments(folder) == []


async def test_a_store_failure_leaves_the_segment_for_the_next_start(tmp_path):
    folder = tmp_path / "usage"
    folder.mkdir()
    path = folder / "journal-1-2-000001.jsonl"
    path.write_bytes(lines(row("a")))
    store = FakeStore()
    store.fail = True
    try:
        await replay(folder, store)
    except ConnectionError:
        pass
    else:
        raise AssertionError("a store failure must not pass silently")
    assert path.exists()


async def test_a_segment_is_deleted_once_its_rows_commit(tmp_path):
    folder = tmp_path / "usage"
    store = FakeStore()
    meter = UsageMeter(store, PriceBook(load_catalogue()), Journal(folder, segment_s=0))  # type: ignore[arg-type]
    for rid in ("r1", "r2", "r3"):
        meter.observe(record(rid))
    meter.observe(replace(record("no-tokens"), prompt_tokens=0, completion_tokens=0))  # nothing to meter
    (name,) = segments(folder)
    assert len(read_segment(folder / name)[0]) == 3
    store.fail = True
    assert not await meter._write_batch()
    assert segments(folder) == [name]  # not committed: kept
    assert meter.failures == 1 and meter.pending == 3
    store.fail = False
    assert await meter._write_batch()
    assert sorted(store.rows) == ["r1", "r2", "r3"]
    assert segments(folder) == [] and meter.journal.deleted == 1  # type: ignore[union-attr]
    meter.observe(record("r4"))  # a new segment
    assert len(segments(folder)) == 1 and segments(folder) != [name]
    await meter.close(None)
    assert "r4" in store.rows and segments(folder) == []
    assert store.once() and store.marks == {}  # deleted segments' marks are deleted too


async def test_a_batch_committed_despite_an_error_is_not_added_again(tmp_path):
    folder = tmp_path / "usage"
    store = FakeStore()
    meter = UsageMeter(store, PriceBook(load_catalogue()), Journal(folder))  # type: ignore[arg-type]
    meter.observe(record("r1"))
    meter.observe(record("r2"))
    store.lose_answer = True
    assert not await meter._write_batch()  # committed, but the writer cannot know: rows kept
    assert meter.pending == 2
    meter.observe(record("r3"))
    assert await meter._write_batch()  # its mark is stored: r1 and r2 are not added again
    assert store.counts == {"r1": 1, "r2": 1, "r3": 1} and meter.duplicates == 2
    await meter.close(None)
    assert segments(folder) == [] and store.once()


async def test_rows_beyond_memory_wait_in_the_journal_for_the_next_start(tmp_path):
    folder = tmp_path / "usage"
    store = FakeStore()
    meter = UsageMeter(store, PriceBook(load_catalogue()), Journal(folder), max_pending=1)  # type: ignore[arg-type]
    meter.observe(record("queued"))
    meter.observe(record("journal-only"))
    assert await meter._write_batch()  # memory has room again, but the segment holds
    meter.observe(record("after"))
    assert (meter.pending, meter.deferred, meter.dropped) == (0, 2, 0)
    await meter.close(None)
    assert sorted(store.rows) == ["queued"]
    assert len(segments(folder)) == 1  # holds rows memory never had: kept
    assert list(store.marks.values()) == [1]  # its mark stops below the first of them
    restarted = UsageMeter(store, PriceBook(load_catalogue()), Journal(folder))  # type: ignore[arg-type]
    await restarted.open()
    assert sorted(store.rows) == ["after", "journal-only", "queued"] and store.once()
    assert (restarted.replayed, restarted.recovered) == (3, 2) and segments(folder) == []


async def test_a_journal_that_cannot_be_written_leaves_rows_in_memory(tmp_path):
    blocked = tmp_path / "usage"
    blocked.write_text("a file where the folder should be")
    store = FakeStore()
    meter = UsageMeter(store, PriceBook(load_catalogue()), Journal(blocked))  # type: ignore[arg-type]
    meter.observe(record("r1"))
    meter.observe(record("r2"))
    assert (meter.pending, meter.dropped, meter.journal.failures, meter.journal.seq) == (2, 0, 2, 0)  # type: ignore
    await meter.close(None)
    assert sorted(store.rows) == ["r1", "r2"]


async def test_a_stream_observed_before_done_counts_once(tmp_path):
    folder = tmp_path / "usage"
    store = FakeStore()
    meter = UsageMeter(store, PriceBook(load_catalogue()), Journal(folder))  # type: ignore[arg-type]
    meter.observe(record("s1", streaming=True), early=True)  # streaming's hook, before [DONE]
    meter.observe(record("s1", streaming=True))  # the middleware's record after the stream
    meter.observe(record("s2", streaming=True))  # a stream its client left: observed once, at the end
    assert meter.pending == 2 and meter.journal.seq == 2  # type: ignore[union-attr]
    (name,) = segments(folder)
    written, torn = read_segment(folder / name)
    assert [line[:2] for line in written] == [(1, "s1"), (2, "s2")] and torn == 0
    await meter.close(None)
    assert sorted(store.rows) == ["s1", "s2"] and store.once()


class Wire:
    """A response's payload writer: the bytes that went out, in order."""

    def __init__(self) -> None:
        self.sent = bytearray()
        self.buffer_size = self.output_size = 0
        self.length = None

    async def write_headers(self, status_line, headers) -> None:
        pass

    def send_headers(self) -> None:
        pass

    async def write(self, data, *args, **kwargs) -> None:
        self.sent += data

    async def drain(self) -> None:
        pass

    async def write_eof(self, data=b"") -> None:
        self.sent += data

    def enable_chunking(self) -> None:
        pass

    def enable_compression(self, *args, **kwargs) -> None:
        pass


async def test_streaming_calls_the_hook_just_before_done():
    seen: list[tuple] = []
    wire = Wire()

    def before_done(request, used) -> None:
        seen.append((used, bytes(wire.sent)))

    async def items():
        yield Delta(0, "Hello")
        yield Delta(0, " there", finish_reason="stop")
        yield Usage(11, 2)

    app = web.Application()
    app[BEFORE_DONE] = before_done
    request = make_mocked_request("POST", "/", app=app, writer=wire)
    call = ChatCall("gpt-4o-mini", "2024-07-18", [{"role": "user", "content": "hi"}], 16)
    response, used = await stream_chat(request, items(), call, "gpt-4o-mini", 11, True, {})
    (hooked, sent_then), = seen
    assert hooked == used == (11, 2)  # the engine's usage, as the client's usage chunk says
    assert b'"prompt_tokens":11' in sent_then and DONE not in sent_then  # the usage chunk went, [DONE] not yet
    assert bytes(wire.sent).endswith(DONE)


async def test_a_full_segment_rolls_over_and_every_line_replays(tmp_path):
    """Segments are reserved up front and mapped: a line that does not fit opens the next segment,
    and the reserved, unused rest of a file (NUL bytes) is not a line."""
    folder = tmp_path / "usage"
    journal = Journal(folder, segment_bytes=1024)
    first_size = len(lines(row("r00")))
    for i in range(12):
        assert journal.append(row(f"r{i:02d}"))
    names = segments(folder)
    assert len(names) >= 2 and journal.failures == 0
    assert all((folder / n).stat().st_size == 1024 for n in names)  # reserved whole
    per_file = [read_segment(folder / n) for n in names]
    assert all(torn == 0 for _, torn in per_file)
    seen = [line[1] for got, _ in per_file for line in got]
    assert seen == [f"r{i:02d}" for i in range(12)] and len(per_file[0][0]) == 1024 // first_size
    assert [line[0] for got, _ in per_file for line in got] == list(range(1, 13))
    for segment in (*journal._sealed, journal._current):  # the process dies: mappings and locks go
        _release(segment)  # type: ignore[arg-type]
    store = FakeStore()
    done = await replay(folder, store)  # type: ignore[arg-type]
    assert (done.lines, done.inserted, done.torn) == (12, 12, 0) and sorted(store.rows) == seen
    assert segments(folder) == []
