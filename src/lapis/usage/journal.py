"""The usage journal: each metered request as one line of an append-only file,
written before its answer's last byte, so that a process crash cannot lose it.

    LAPIS_HOME/usage/journal-<pid>-<start ms>-<n>.jsonl

One line is one usage row (lapis.store.metering.USAGE_COLUMNS) as a JSON
array, written with a single write(2) on a file opened O_APPEND: once write
returns, the line is the kernel's, and a kill -9 of the process does not lose
it. There is no fsync per line (that would cost what the old commit hold
cost): a power loss can lose the lines of the last seconds that the store has
not committed yet. The writer (lapis.usage.meter) commits rows a few
milliseconds after they are journalled, and each commit is durable, so the
window is the same few milliseconds. When a commit fails the journal is
fsynced, so rows kept for a retry survive a power loss as well.

Segments. A process appends to its current segment; when it is big or old
(SEGMENT_BYTES, SEGMENT_S) the writer seals it as it takes a batch, and once
every line up to the segment's last is committed the file is deleted. A
segment holding a line that the in-memory queue could not take (the store was
down for long) is not deleted: the next start-up replays it.

Replay. At start-up, before serving, `replay()` applies every segment found in
the folder to the store (INSERT ... ON CONFLICT (request_id) DO NOTHING, so
lines that were already committed count once) and deletes it. A torn line
(a crash or a full disk in the middle of a write) is skipped and logged.
Each live process holds an exclusive flock on its segments until it deletes
them, so replay skips the segments of a process that is still running on the
same folder (a lock dies with its process, kill -9 included). A new segment
is created under a dot-name, locked, then renamed, so no replay can take it
before its lock is held. Replicas on PostgreSQL each have their own
LAPIS_HOME: a replica's journal left by a crash is replayed when that replica,
or any process given that home, starts again.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Sequence

import msgspec

log = logging.getLogger("lapis.usage")

SEGMENT_BYTES = 4 << 20
SEGMENT_S = 10.0
REPLAY_CHUNK = 5_000  # rows per transaction when replaying
OPEN_RETRY_S = 1.0  # after a segment could not be created, lines fail quietly this long
# USAGE_COLUMNS' types, in order: a line that does not decode to exactly this is torn.
Row = tuple[str, int, int, str, str, str, str, str, str, str, str, str, str, str, str, int, int, int, int, int, int]
_encode = msgspec.json.encode
_decode = msgspec.json.Decoder(Row).decode
_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC


@dataclass(slots=True)
class Segment:
    path: Path
    fd: int
    last: int  # the journal's sequence number of its last line
    opened: float
    size: int = 0
    complete: bool = True  # False: a line of it is not in memory (or is torn); keep it for replay


class Journal:
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

    def append(self, row: Sequence[Any]) -> bool:
        """Write one row as one line with one write(2); False if it could not be written."""
        segment = self._current or self._open()
        if segment is None:
            self.failures += 1
            return False
        line = _encode(row) + b"\n"
        try:
            written = os.write(segment.fd, line)
        except OSError:
            written = -1
        if written != len(line):
            self.failures += 1
            log.error("usage journal %s: a line could not be written (%d of %d bytes)", segment.path, written,
                      len(line))
            segment.complete = False  # a torn line inside: replay skips it; the next line starts a new segment
            self._seal()
            return False
        self.seq += 1
        segment.last = self.seq
        segment.size += written
        return True

    def keep(self) -> None:
        """The line just written is not queued in memory: its segment waits for the next start's replay."""
        if self._current is not None:
            self._current.complete = False

    def rotate_if_due(self) -> None:
        """Seal the current segment when it is big or old (the writer calls this as it takes a batch)."""
        current = self._current
        if current is not None and (current.size >= self.segment_bytes
                                    or time.monotonic() - current.opened >= self.segment_s):
            self._seal()

    def committed(self, seq: int) -> None:
        """Every line up to `seq` is in the store: delete the sealed segments that holds."""
        while self._sealed and self._sealed[0].last <= seq:
            self._drop(self._sealed.popleft())

    def sync(self) -> None:
        """fsync every segment not yet deleted (when rows wait for a store that failed)."""
        for segment in (*self._sealed, *([self._current] if self._current else [])):
            try:
                os.fsync(segment.fd)
            except OSError:
                log.exception("fsync of usage journal %s failed", segment.path)

    def close(self, committed_seq: int) -> None:
        """At shutdown: delete what is committed, leave the rest (closed, unlocked) for replay."""
        self._seal()
        self.committed(committed_seq)
        for segment in self._sealed:
            os.close(segment.fd)
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
            os.rename(hidden, self.folder / name)
        except OSError:
            if fd >= 0:
                os.close(fd)
            log.exception("cannot open a usage journal segment in %s; usage stays in memory until it can",
                          self.folder)
            self._open_after = now + OPEN_RETRY_S
            return None
        self._current = Segment(self.folder / name, fd, self.seq, now)
        return self._current

    def _seal(self) -> None:
        if self._current is not None:
            self._sealed.append(self._current)
            self._current = None

    def _drop(self, segment: Segment) -> None:
        if segment.complete:
            try:
                segment.path.unlink()
                self.deleted += 1
            except FileNotFoundError:
                pass
            except OSError:
                log.exception("cannot delete usage journal %s", segment.path)
        else:
            log.warning("usage journal %s kept for the next start's replay", segment.path)
        os.close(segment.fd)  # the lock goes with it


# -- replay -------------------------------------------------------------------


@dataclass(slots=True)
class Replay:
    segments: int = 0  # segments applied and deleted
    lines: int = 0  # rows read
    inserted: int = 0  # rows the store did not have yet (usage a crash would otherwise have lost)
    torn: int = 0  # lines skipped
    busy: int = 0  # segments skipped: a live process holds them (or another replay took them)


def read_segment(path: Path) -> tuple[list[tuple], int]:
    """The rows of one segment, and how many of its lines were torn."""
    rows: list[tuple] = []
    torn = 0
    for number, line in enumerate(path.read_bytes().split(b"\n"), 1):
        if not line:
            continue
        try:
            rows.append(_decode(line))
        except msgspec.DecodeError:
            torn += 1
            log.warning("usage journal %s: line %d is torn, skipped", path, number)
    return rows, torn


async def replay(folder: Path, add_usage: Callable[[Sequence[Sequence[Any]]], Awaitable[int]]) -> Replay:
    """Apply every unlocked segment in `folder` to the store, then delete it.
    A store failure propagates and leaves the segment for the next start."""
    done = Replay()
    if not folder.is_dir():
        return done
    for hidden in folder.glob(".journal-*"):  # created, never renamed: a crash between the two
        _remove_unlocked(hidden)
    for path in sorted(folder.glob("journal-*.jsonl")):
        fd = _lock(path)
        if fd is None:
            done.busy += 1
            continue
        try:
            rows, torn = read_segment(path)
            for start in range(0, len(rows), REPLAY_CHUNK):
                done.inserted += await add_usage(rows[start:start + REPLAY_CHUNK])
            path.unlink(missing_ok=True)  # missing: another process replayed it just before us
        finally:
            os.close(fd)
        done.segments += 1
        done.lines += len(rows)
        done.torn += torn
    return done


def _lock(path: Path) -> int | None:
    """An fd holding the segment's exclusive lock, or None when a live process holds it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _remove_unlocked(path: Path) -> None:
    fd = _lock(path)
    if fd is not None:
        try:
            path.unlink()
        finally:
            os.close(fd)
