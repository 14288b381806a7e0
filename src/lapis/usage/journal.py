"""The usage journal: each metered request as one line of an append-only file,
written before its answer's last byte, so that a process crash cannot lose it.

    LAPIS_HOME/usage/journal-<pid>-<start ms>-<n>.jsonl

One line is one usage row (lapis.store.metering.USAGE_COLUMNS) as a JSON
array, preceded by the line's sequence number in this process (1, 2, ...,
unique across the process's segments). A segment is a file of SEGMENT_BYTES
reserved up front (posix_fallocate, so a full disk fails the segment's
creation, never a write) and mapped into memory shared with the kernel's page
cache: a line is copied into the mapping, with no system call. Once copied,
the bytes are in the page cache, which belongs to the kernel, not to the
process: a kill -9 does not lose them, and the kernel writes them back to the
disk as it does for write(2). (A write(2) per line cost ~6% of a request's
CPU under load; the copy costs a fraction of a microsecond.) The unused rest of
a segment reads as NUL bytes, which never occur in a JSON line, and readers
drop them. There is no fsync per line (that would cost what the old commit
hold cost): a power loss can lose the lines of the last seconds that the
store has not committed yet. The writer
(lapis.usage.meter) commits rows a few milliseconds after they are
journalled, and each commit is durable, so the window is the same few
milliseconds. When a commit fails the journal is synced to disk (msync and
fsync), so rows kept for a retry survive it too.

Exactly once. The store keeps usage as per-minute sums (no request id to
deduplicate on), so each commit records, in the same transaction as the sums,
each live segment's mark: the highest sequence number of it whose usage is
now stored (`marks()`; table usage_journal_marks). A segment's lines up to its
mark are in the store, the ones above it are not.

Segments. A process appends to its current segment; when the next line does
not fit, it is sealed at once, and when it is old (SEGMENT_S) the writer
seals it as it takes a batch; once
every line up to the segment's last is committed the file is deleted, and its
mark with the next commit (`forgotten()`). When the in-memory queue is full
(the store was down for long), a line is left to the journal alone (`keep()`):
from that line on, the segment "holds": its later lines are journal-only too,
its mark stops below the first of them, and the file is kept for the next
start's replay.

Replay. At start-up, before serving, `replay()` applies each segment found in
the folder: it reads the segment's mark, adds the lines above it (summed) to
the store in one transaction together with the new mark, deletes the file,
then the mark. A crash after that commit but before the deletion replays
nothing twice (the mark says so); a crash before it loses nothing (the file
is there). A torn line (a crash or a full disk in the middle of a write) is
skipped and logged. Each live process holds an exclusive flock on its
segments until it deletes them, so replay skips the segments of a process
that is still running on the same folder (a lock dies with its process, kill
-9 included). A new segment is created under a dot-name, locked, then
renamed, so no replay can take it before its lock is held. Segment names hold
the pid and the start time, so replicas on PostgreSQL, each with its own
LAPIS_HOME, never share a mark; a replica's journal left by a crash is
replayed when that replica, or any process given that home, starts again.
Journals written before version 11 (lines without a sequence number) read
as torn.
"""

from __future__ import annotations

import fcntl
import logging
import mmap
import os
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence

import msgspec

log = logging.getLogger("lapis.usage")

SEGMENT_BYTES = 4 << 20  # reserved per segment; ~8,000 lines
SEGMENT_S = 10.0
OPEN_RETRY_S = 1.0  # after a segment could not be created, lines fail quietly this long
# The sequence number, then USAGE_COLUMNS' types, in order: a line that does not decode to exactly this is torn.
Line = tuple[int, str, int, int, str, str, str, str, str, str, str, str, str, str, str, str, int, int, int, int, int,
             int]
_encode = msgspec.json.encode
_decode = msgspec.json.Decoder(Line).decode
_POPULATE = getattr(mmap, "MAP_POPULATE", 0)  # Linux
_FLAGS = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC  # RDWR: a shared writable mapping needs it


@dataclass(slots=True)
class Segment:
    path: Path
    fd: int
    map: mmap.mmap  # the whole file, shared: what is copied in is the kernel's
    last: int  # the journal's sequence number of its last line (its first is `first`)
    opened: float
    first: int = 0
    size: int = 0
    hold: int = 0  # the first line left to the journal alone (not in memory): keep the file for replay
    marked: int = 0  # the mark committed for it

    @property
    def name(self) -> str:
        return self.path.name


class Marks:
    """The marks bookkeeping a journal shares with the record spool's reader
    (lapis.observe.spool.SpoolReader): each live segment's committed mark, and
    the names of deleted segments whose marks the next commit removes."""

    _forget: list[str]

    def _live(self) -> Iterable[Any]:
        """The segments not deleted yet (each with `name` and `marked`)."""
        raise NotImplementedError

    def marked(self, marks: dict[str, int]) -> None:
        """`marks` are committed."""
        for segment in self._live():
            segment.marked = marks.get(segment.name, segment.marked)

    def forgotten(self) -> list[str]:
        """The segments deleted since the last call: their marks can go."""
        names, self._forget = self._forget, []
        return names

    def unforget(self, names: list[str]) -> None:
        """Marks that could not be deleted after all: try again with the next commit."""
        self._forget[:0] = names


class Journal(Marks):
    """This process's segments. Not thread-safe: the event loop's thread only."""

    def __init__(self, folder: Path, segment_bytes: int = SEGMENT_BYTES, segment_s: float = SEGMENT_S):
        self.folder = folder
        self.segment_bytes = segment_bytes
        self.segment_s = segment_s
        self.seq = 0  # lines written, ever: each line's sequence number
        self.failures = 0  # lines that could not be written
        self.deleted = 0  # segments deleted once committed
        self._current: Segment | None = None
        self._sealed: deque[Segment] = deque()
        self._prefix = f"journal-{os.getpid()}-{int(time.time() * 1000)}-"
        self._count = 0
        self._open_after = 0.0  # monotonic time before which no segment is created (after a failure)
        self._forget: list[str] = []  # segments deleted whose marks are still stored

    def append(self, row: Sequence[Any]) -> bool:
        """Copy one row into the journal as one line; False if it could not be written."""
        line = _encode((self.seq + 1, *row)) + b"\n"
        segment = self._current or self._open()
        if segment is not None and segment.size + len(line) > self.segment_bytes:
            self._seal()  # full: the line goes to a new segment
            segment = self._open()
        if segment is None or len(line) > self.segment_bytes:
            self.failures += 1
            return False
        start = segment.size
        segment.map[start:start + len(line)] = line
        self.seq += 1
        segment.last = self.seq
        segment.size = start + len(line)
        return True

    @property
    def written(self) -> int:
        """Usage lines journalled (lapis_usage_journal_writes)."""
        return self.seq

    def keep(self) -> None:
        """The line just written is not queued in memory: its segment now holds (see above)."""
        if self._current is not None and not self._current.hold:
            self._current.hold = self.seq

    @property
    def holding(self) -> bool:
        """True when the current segment holds: a line written to it now must be left to it alone."""
        return self._current is not None and bool(self._current.hold)

    def marks(self, upto: int) -> dict[str, int]:
        """The marks a commit of every queued line up to `upto` sets: per live segment
        whose mark moves, the highest sequence number of it then stored."""
        out = {}
        for segment in self._live():
            mark = min(segment.last, upto, segment.hold - 1 if segment.hold else upto)
            if mark >= segment.first and mark > segment.marked:
                out[segment.name] = mark
        return out

    def _live(self) -> tuple[Segment, ...]:
        return (*self._sealed, *([self._current] if self._current else []))

    def rotate_if_due(self) -> None:
        """Seal the current segment when it is old (the writer calls this as it takes a batch)."""
        current = self._current
        if current is not None and time.monotonic() - current.opened >= self.segment_s:
            self._seal()

    def committed(self, seq: int) -> None:
        """Every line up to `seq` is in the store: delete the sealed segments that holds."""
        while self._sealed and self._sealed[0].last <= seq:
            self._drop(self._sealed.popleft())

    def sync(self) -> None:
        """msync and fsync every segment not yet deleted (when rows wait for a store that failed)."""
        for segment in self._live():
            try:
                segment.map.flush()
                os.fsync(segment.fd)
            except OSError:
                log.exception("fsync of usage journal %s failed", segment.path)

    def close(self, committed_seq: int) -> None:
        """At shutdown: delete what is committed, leave the rest (closed, unlocked) for replay."""
        self._seal()
        self.committed(committed_seq)
        for segment in self._sealed:
            _release(segment)
            log.warning("usage journal %s kept for the next start's replay", segment.path)
        self._sealed.clear()

    def _open(self) -> Segment | None:
        now = time.monotonic()
        if now < self._open_after:
            return None
        self._count += 1
        name = f"{self._prefix}{self._count:06d}.jsonl"
        hidden = self.folder / f".{name}"
        fd = -1
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(hidden, _FLAGS, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.posix_fallocate(fd, 0, self.segment_bytes)  # blocks reserved: no SIGBUS on a full disk later
            # MAP_POPULATE: the pages are mapped now, not by a fault on each first line in them.
            mapped = mmap.mmap(fd, self.segment_bytes, mmap.MAP_SHARED | _POPULATE, mmap.PROT_READ | mmap.PROT_WRITE)
            os.rename(hidden, self.folder / name)
        except (OSError, ValueError):
            if fd >= 0:
                os.close(fd)
                hidden.unlink(missing_ok=True)
            log.exception("cannot open a usage journal segment in %s; usage stays in memory until it can",
                          self.folder)
            self._open_after = now + OPEN_RETRY_S
            return None
        self._current = Segment(self.folder / name, fd, mapped, self.seq, now, first=self.seq + 1)
        return self._current

    def _seal(self) -> None:
        if self._current is not None:
            self._sealed.append(self._current)
            self._current = None

    def _drop(self, segment: Segment) -> None:
        if not segment.hold:
            try:
                segment.path.unlink()
                self.deleted += 1
                self._forget.append(segment.name)
            except FileNotFoundError:
                pass
            except OSError:
                log.exception("cannot delete usage journal %s", segment.path)
        else:
            log.warning("usage journal %s kept for the next start's replay", segment.path)
        _release(segment)


def _release(segment: Segment) -> None:
    """Unmap and close (the lock goes with the fd; what was copied in stays in the file)."""
    segment.map.close()
    os.close(segment.fd)


# -- replay -------------------------------------------------------------------


@dataclass(slots=True)
class Replay:
    segments: int = 0  # segments applied and deleted
    lines: int = 0  # lines read
    inserted: int = 0  # lines above their segment's mark: usage a crash would otherwise have lost
    torn: int = 0  # lines skipped
    busy: int = 0  # segments skipped: a live process holds them (or another replay took them)


class MarkedStore(Protocol):
    """What replay needs of lapis.store.metering.MeteringStore."""

    async def usage_mark(self, segment: str) -> int: ...

    async def add_usage(self, rows: Sequence[Sequence[Any]], marks: Mapping[str, int] | None = None,
                        forget: Sequence[str] = ()) -> int: ...

    async def forget_marks(self, segments: Sequence[str]) -> None: ...


def read_segment(path: Path) -> tuple[list[tuple], int]:
    """The lines of one segment (sequence number, then the row), and how many were torn.
    NUL bytes are the unused, reserved rest of a segment: dropped."""
    lines: list[tuple] = []
    torn = 0
    for number, line in enumerate(path.read_bytes().replace(b"\0", b"").split(b"\n"), 1):
        if not line:
            continue
        try:
            lines.append(_decode(line))
        except msgspec.DecodeError:
            torn += 1
            log.warning("usage journal %s: line %d is torn, skipped", path, number)
    return lines, torn


async def replay(folder: Path, store: MarkedStore, pattern: str = "journal-*.jsonl",
                 read: Callable[[Path], tuple[list[tuple], int]] = read_segment) -> Replay:
    """Apply every unlocked segment in `folder` above its mark, then delete it and its mark.
    A store failure propagates and leaves the segment for the next start. `read` gives a
    segment's lines as (sequence number, *row): the record spool's segments
    (lapis.observe.spool) are replayed by this too."""
    done = Replay()
    if not folder.is_dir():
        return done
    for hidden in folder.glob(f".{pattern}"):  # created, never renamed: a crash between the two
        _remove_unlocked(hidden)
    for path in sorted(folder.glob(pattern)):
        fd = lock(path)
        if fd is None:
            done.busy += 1
            continue
        try:
            lines, torn = read(path)
            mark = await store.usage_mark(path.name)
            new = [line[1:] for line in lines if line[0] > mark]
            if new:
                await store.add_usage(new, {path.name: max(line[0] for line in lines)})
            path.unlink(missing_ok=True)  # missing: another process replayed it just before us
        finally:
            os.close(fd)
        await store.forget_marks([path.name])  # a crash before this leaves a mark nobody reads: harmless
        done.segments += 1
        done.lines += len(lines)
        done.inserted += len(new)
        done.torn += torn
    return done


def lock(path: Path, how: int = fcntl.LOCK_EX) -> int | None:
    """An fd holding the segment's lock (exclusive: replay; shared: lapis.observe.spool's reader),
    or None when the file is gone or another process holds a lock that excludes it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, how | fcntl.LOCK_NB)
        if os.fstat(fd).st_nlink == 0:  # replayed and deleted by another process since we opened it
            raise FileNotFoundError(path)
    except OSError:
        os.close(fd)
        return None
    return fd


def _remove_unlocked(path: Path) -> None:
    fd = lock(path)
    if fd is not None:
        try:
            path.unlink()
        finally:
            os.close(fd)
