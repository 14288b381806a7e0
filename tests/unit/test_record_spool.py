"""The record spool without a server: frames round-trip in order; a reader
takes only whole frames (a header not written yet, or one that does not match
its payload, waits; a torn one is skipped once its writer is gone); segments
roll over, are deleted once their usage is committed, and their locks go with
them; an observer started again goes on after the committed mark (nothing
twice); replay takes a dead writer's segments above their marks (a stream
once) and leaves those a live writer or reader holds; a writer whose observer
is far behind drops and counts."""

from __future__ import annotations

import os
import zlib

import msgspec

from lapis.catalog import load_catalogue
from lapis.observe.observer import replay_rows
from lapis.observe.record import RequestRecord
from lapis.observe.spool import EARLY, FINAL, HEADER, MANAGEMENT, SpoolReader, SpoolWriter, TextKey, read_segment
from lapis.usage.journal import replay
from lapis.usage.meter import UsageMeter
from lapis.usage.pricing import PriceBook
from support.usage_store import FakeStore, record

encode = msgspec.msgpack.encode
decode = msgspec.msgpack.decode


def spool_files(folder) -> list[str]:
    return sorted(p.name for p in folder.glob("spool-*.bin"))


class Collect:
    def __init__(self) -> None:
        self.frames: list[tuple[int, object]] = []

    def __call__(self, kind: int, payload) -> None:
        self.frames.append((kind, decode(bytes(payload))))


async def read_all(reader: SpoolReader, store: FakeStore, handle) -> int:  # noqa: ANN001
    return await reader.poll(handle, store.usage_mark)


async def test_frames_round_trip_in_order(tmp_path):
    writer = SpoolWriter(tmp_path)
    for n in range(5):
        assert writer.append(FINAL if n % 2 == 0 else EARLY, encode({"n": n}))
    reader = SpoolReader(tmp_path, writer.prefix)
    got = Collect()
    assert await read_all(reader, FakeStore(), got) == 5
    assert got.frames == [(FINAL, {"n": 0}), (EARLY, {"n": 1}), (FINAL, {"n": 2}), (EARLY, {"n": 3}),
                          (FINAL, {"n": 4})]
    assert await read_all(reader, FakeStore(), got) == 0  # nothing new
    writer.append(FINAL, encode({"n": 5}))
    assert await read_all(reader, FakeStore(), got) == 1 and got.frames[-1] == (FINAL, {"n": 5})
    writer.close()


async def test_a_reader_takes_only_whole_frames(tmp_path):
    writer = SpoolWriter(tmp_path)
    writer.append(FINAL, encode("first"))
    mapped, start = writer._map, writer._size
    payload = encode("second")
    mapped[start + HEADER.size:start + HEADER.size + len(payload)] = payload  # the copy, not yet its header
    reader = SpoolReader(tmp_path, writer.prefix)
    got = Collect()
    assert await read_all(reader, FakeStore(), got) == 1
    HEADER.pack_into(mapped, start, len(payload), 12345, FINAL)  # a header seen before its payload checks out
    assert await read_all(reader, FakeStore(), got) == 0 and reader.torn == 0  # read again at the next poll
    HEADER.pack_into(mapped, start, len(payload), zlib.adler32(payload, FINAL), FINAL)
    assert await read_all(reader, FakeStore(), got) == 1
    assert [value for _, value in got.frames] == ["first", "second"]
    writer.close()


async def test_a_torn_frame_of_a_gone_writer_is_skipped_with_the_rest_of_its_segment(tmp_path):
    writer = SpoolWriter(tmp_path)
    writer.append(FINAL, encode("whole"))
    start = writer._size
    HEADER.pack_into(writer._map, start, 10, 999, FINAL)  # kill -9 in the middle of a copy
    writer.close()
    reader = SpoolReader(tmp_path, writer.prefix)
    reader.writer_gone = True
    got = Collect()
    assert await read_all(reader, FakeStore(), got) == 1
    assert reader.torn == 1
    (path,) = tmp_path.glob("spool-*.bin")
    lines, torn = read_segment(path, lambda found: [(n, kind) for n, kind, _ in found])
    assert (lines, torn) == ([(1, FINAL)], 1)


async def test_segments_roll_over_and_go_once_their_usage_is_committed(tmp_path):
    writer = SpoolWriter(tmp_path, segment_bytes=4096)
    store = FakeStore()
    reader = SpoolReader(tmp_path, writer.prefix)
    meter = UsageMeter(store, PriceBook(load_catalogue()), reader)  # type: ignore[arg-type]

    def handle(kind, payload) -> None:  # noqa: ANN001
        meter.observe(msgspec.msgpack.decode(bytes(payload), type=RequestRecord))

    for n in range(30):
        assert writer.append(FINAL, encode(record(f"r{n}")))
    assert writer.count > 2  # rolled over
    assert await read_all(reader, store, handle) == 30
    assert len(reader.segments) == writer.count
    assert [s.done for s in reader.segments] == [True] * (writer.count - 1) + [False]
    assert await meter._write_batch()
    assert len(store.rows) == 30 and store.once()
    assert spool_files(tmp_path) == [reader.segments[0].name]  # the done ones are deleted: the current stays
    current = reader.segments[0]
    assert current.name in store.marks and store.marks[current.name] == current.read  # its last frame is stored
    writer.append(FINAL, encode(record("after")))  # the writer notices deleted files when it moves on
    writer._next()
    assert writer.waiting == 2  # the segment just left and the new one: the deleted ones' locks are gone
    writer.close()


async def test_an_observer_started_again_goes_on_after_the_committed_mark(tmp_path):
    writer = SpoolWriter(tmp_path, segment_bytes=4096)
    store = FakeStore()
    kind = RequestRecord

    def meter_for(reader: SpoolReader) -> UsageMeter:
        return UsageMeter(store, PriceBook(load_catalogue()), reader)  # type: ignore[arg-type]

    first = SpoolReader(tmp_path, writer.prefix)
    meter = meter_for(first)
    for n in range(12):
        writer.append(FINAL, encode(record(f"a{n}")))
    await first.poll(lambda k, p: meter.observe(msgspec.msgpack.decode(bytes(p), type=kind)), store.usage_mark)
    assert await meter._write_batch()
    for n in range(12):
        writer.append(FINAL, encode(record(f"b{n}")))  # written while no observer reads (it died)
    for segment in first.segments:  # kill -9 of the observer: its maps and locks go
        segment.map.close()
        os.close(segment.fd)
    second = SpoolReader(tmp_path, writer.prefix)
    second.start_at_oldest()
    again = meter_for(second)
    await second.poll(lambda k, p: again.observe(msgspec.msgpack.decode(bytes(p), type=kind)), store.usage_mark)
    assert await again._write_batch()
    assert len(store.rows) == 24 and store.once()  # every request once: the second skipped what the first stored
    writer.close()


async def test_replay_takes_a_dead_writers_segments_once_and_a_stream_once(tmp_path):
    writer = SpoolWriter(tmp_path, segment_bytes=4096)
    stream = record("s1", streaming=True)
    writer.append(EARLY, encode(stream))  # its usage, before [DONE]
    for n in range(10):
        writer.append(FINAL, encode(record(f"r{n}")))
    writer.append(FINAL, encode(stream))  # the stream's final record: no usage of its own
    writer.append(MANAGEMENT, encode(({"operation": "write"}, 200, "a", "/arm", "eastus")))  # no usage of its own
    writer.close()  # the writer dies without an observer: its locks go, the files stay
    store = FakeStore()
    meter = UsageMeter(store, PriceBook(load_catalogue()), None)  # type: ignore[arg-type]
    early: set[str] = set()
    done = await replay(tmp_path, store, "spool-*.bin",
                        lambda path: read_segment(path, lambda found: replay_rows(found, meter.row, early)))
    assert done.inserted == 11 and done.busy == 0
    assert store.counts == {**{f"r{n}": 1 for n in range(10)}, "s1": 1}
    assert spool_files(tmp_path) == [] and store.marks == {}


async def test_replay_leaves_segments_a_live_writer_or_reader_holds(tmp_path):
    writer = SpoolWriter(tmp_path / "w")
    writer.append(FINAL, encode(record("live")))
    store = FakeStore()
    done = await replay(tmp_path / "w", store, "spool-*.bin", lambda path: read_segment(path, lambda f: []))
    assert done.busy == 1 and spool_files(tmp_path / "w")
    dead = SpoolWriter(tmp_path / "r")
    dead.append(FINAL, encode(record("read")))
    reader = SpoolReader(tmp_path / "r", dead.prefix)
    await reader.poll(lambda k, p: None, store.usage_mark)
    dead.close()  # the writer died; its observer still reads
    done = await replay(tmp_path / "r", store, "spool-*.bin", lambda path: read_segment(path, lambda f: []))
    assert done.busy == 1 and spool_files(tmp_path / "r")
    writer.close()
    reader.close(0)


async def test_a_writer_whose_observer_is_far_behind_drops_and_counts(tmp_path):
    writer = SpoolWriter(tmp_path, segment_bytes=1024, max_segments=2)
    written = sum(writer.append(FINAL, encode("x" * 100)) for _ in range(40))
    assert writer.failures == 40 - written > 0
    assert len(spool_files(tmp_path)) == 2
    writer.close()
    assert not list(tmp_path.glob(".spool-*"))  # the segment made ahead is removed, not left behind


async def test_prompt_text_is_sealed_in_the_spool_and_opened_by_the_observer(tmp_path):
    writer = SpoolWriter(tmp_path)
    words = "the secret prompt words"
    original = msgspec.structs.replace(record("t1"), content={"requestContent": words})
    key = TextKey()
    assert writer.append(FINAL, encode(key.seal(original)))
    (path,) = tmp_path.glob("spool-*.bin")
    assert words.encode() not in path.read_bytes()
    got = Collect()
    await read_all(SpoolReader(tmp_path, writer.prefix), FakeStore(), got)
    (_, raw), = got.frames
    sealed = msgspec.convert(raw, type=type(original))
    assert sealed.content != original.content
    assert TextKey(key.key).open(sealed) == original  # the observer gets the same key at its start
    assert TextKey().open(original) == original  # a record without sealed text passes as it is
    writer.close()
