"""The record spool: how finished requests reach the observer process, durably.

    LAPIS_HOME/spool/spool-<pid>-<start ms>-<n>.bin

The serving process (SpoolWriter, through lapis.observe.relay) appends one
frame per finished data-plane request: its RequestRecord as msgpack. The
observer process (SpoolReader, lapis.observe.observer) reads the frames as
they appear and hands them to usage metering, the counters and the log
sinks. The spool is also the usage journal of that mode: a frame is copied
into a segment before the answer's last byte (as lapis.usage.journal's lines
are in the inline mode), so a kill -9 of the serving process loses no usage.

Segments. A segment is a file of SEGMENT_BYTES reserved up front
(posix_fallocate) and mapped shared: a frame is one copy into the page
cache, no system call (about a microsecond, with the msgpack encoding).
Frames are 8-byte aligned:

    u32 length of the payload | u32 adler32 of the payload, seeded with the kind | u8 kind | 7 bytes 0 | payload

The writer copies the payload first and the header after it, so a reader
that finds a header whose checksum matches has the whole frame; a header that
is still zero is where the writer will write next, and a header whose checksum
does not match yet is read again at the next poll (the reader may see the
stores in either order on some processors; the checksum makes that harmless).
When a frame does not fit, the writer creates the next segment (n + 1) and
never writes the old one again: a reader that has read a segment to its
first zero header and finds the next segment has read all of it.

Kinds:
    FINAL  the request's record, when it ended (counters, sinks, usage)
    EARLY  a stream's record just before its [DONE]: its usage, before the
           client can see the end (the FINAL record that follows adds no usage);
           never with prompt or response text
    MANAGEMENT  a management write on an account (event, status, account id, ARM id,
           location), for its diagnostic settings' Audit category: in the spool, so
           that it reaches the sinks in order with the requests around it

Prompt and response text (a record's `content`, kept only when a diagnostic
setting asks for it) never reaches the disk in the clear: `TextKey` seals it
(AES-256-GCM) under a key made at the serving process's start, held in
memory only and handed to each observer it starts. Replay needs no text
(usage only), so a key lost with its processes loses nothing that counts.

Exactly once. The reader numbers each segment's frames 1, 2, ... and usage
commits record, in the same transaction as the sums, the highest number
stored per segment (the usage journal's marks, table usage_journal_marks:
the observer's UsageMeter uses the reader as its journal). A segment whose
frames are all committed, and which its writer left, is deleted, then its
mark. Locks: the writer holds a shared flock on each segment from its
creation until the file is gone; the reader holds one on each segment it
reads; replay (`replay()`, at the serving process's start) takes a segment
only with an exclusive lock, so it never takes one that a live writer or
reader holds. A segment of a process that died with its observer is
replayed, above its mark, at the next start on that LAPIS_HOME.
"""

from __future__ import annotations

import concurrent.futures
import fcntl
import logging
import mmap
import os
import struct
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import msgspec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from lapis.usage.journal import Marks, lock

log = logging.getLogger("lapis.observe")

SEGMENT_BYTES = 8 << 20  # reserved per segment: ~10,000 records
HEADER = struct.Struct("<IIB7x")
FINAL, EARLY, MANAGEMENT = 1, 2, 3
OPEN_RETRY_S = 1.0
_POPULATE = getattr(mmap, "MAP_POPULATE", 0)  # Linux; for a shared mapping it maps the pages read-only
_POPULATE_WRITE = getattr(mmap, "MADV_POPULATE_WRITE", 23)  # Linux 5.14+: writable, so no fault at each first write
_CREATE = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
_MAKER = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="lapis-spool")  # makes segments ahead


SEALED = "lapis-spool-sealed"  # the one key of a record's content while it is in the spool


class TextKey:
    """Seals a record's prompt and response text for the spool, and opens it again."""

    def __init__(self, key: bytes | None = None):
        self.key = key or AESGCM.generate_key(bit_length=256)
        self._aead = AESGCM(self.key)

    def seal(self, record: Any) -> Any:
        nonce = os.urandom(12)
        blob = nonce + self._aead.encrypt(nonce, msgspec.json.encode(record.content), record.request_id.encode())
        return msgspec.structs.replace(record, content={SEALED: blob.hex()})

    def open(self, record: Any) -> Any:
        """The record with its text opened (as it is when it carries none)."""
        sealed = record.content.get(SEALED) if record.content else None
        if sealed is None:
            return record
        blob = bytes.fromhex(sealed)
        text = self._aead.decrypt(blob[:12], blob[12:], record.request_id.encode())
        return msgspec.structs.replace(record, content=msgspec.json.decode(text))


def segment_name(prefix: str, n: int) -> str:
    return f"{prefix}{n:06d}.bin"


def new_prefix() -> str:
    return f"spool-{os.getpid()}-{int(time.time() * 1000)}-"


# -- writing (the serving process) -----------------------------------------------


class SpoolWriter:
    """This process's segments. Not thread-safe: the event loop's thread only.

    The next segment is made ahead, in a thread, once the current one is half
    full (creating, reserving and mapping one takes milliseconds): moving on
    is then a rename. It gets its name (its number) only then, so that a
    reader never sees a next segment before the writer has left the last.
    """

    def __init__(self, folder: Path, segment_bytes: int = SEGMENT_BYTES, max_segments: int = 64):
        self.folder = folder
        self.segment_bytes = segment_bytes
        self.max_segments = max_segments  # segments on disk, at most: beyond, the observer is far behind
        self.prefix = new_prefix()
        self.frames = 0  # frames written
        self.failures = 0  # frames that could not be written (no segment, or too many waiting)
        self.count = 0  # segments created
        self._map: mmap.mmap | None = None
        self._size = 0
        self._held: list[tuple[int, Path]] = []  # (fd holding the shared lock, path) of every segment not deleted
        self._open_after = 0.0
        self._spare: concurrent.futures.Future[tuple[int, mmap.mmap]] | None = None  # the next one, being made
        self._ahead = segment_bytes // 2  # when to start making it
        self._spare_path = folder / f".{self.prefix}spare.bin"  # hidden: replay removes it if left by a crash

    def append(self, kind: int, payload: bytes) -> bool:
        """Copy one frame in; False when it could not be written."""
        end = self._size + HEADER.size + len(payload)
        mapped = self._map
        if mapped is None or end > self.segment_bytes:
            mapped = self._next()
            if mapped is None or HEADER.size + len(payload) > self.segment_bytes:
                self.failures += 1
                return False
            end = HEADER.size + len(payload)
        start = self._size
        mapped[start + HEADER.size:end] = payload
        HEADER.pack_into(mapped, start, len(payload), zlib.adler32(payload, kind), kind)
        self._size = (end + 7) & ~7
        self.frames += 1
        if self._size > self._ahead and self._spare is None:
            self._spare = _MAKER.submit(self._make, self._spare_path)
        return True

    @property
    def waiting(self) -> int:
        """Segments on disk that the observer has not finished (the current one included)."""
        return len(self._held)

    def _next(self) -> mmap.mmap | None:
        """Leave the current segment and create the next one."""
        self._leave()
        self._forget_deleted()
        now = time.monotonic()
        if now < self._open_after or len(self._held) >= self.max_segments:
            return None
        spare, self._spare = self._spare, None
        name = segment_name(self.prefix, self.count + 1)
        try:
            fd, mapped = spare.result() if spare is not None else self._make(self._spare_path)
            os.rename(self._spare_path, self.folder / name)
        except (OSError, ValueError):
            log.exception("cannot create a spool segment in %s; records are dropped until it can", self.folder)
            self._open_after = now + OPEN_RETRY_S
            return None
        self.count += 1
        self._held.append((fd, self.folder / name))
        self._map, self._size = mapped, 0
        return mapped

    def _make(self, hidden: Path) -> tuple[int, mmap.mmap]:
        """A new segment under a hidden name: locked, reserved, mapped (run in a thread, or here)."""
        fd = -1
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(hidden, _CREATE, 0o600)
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            os.posix_fallocate(fd, 0, self.segment_bytes)  # reserved: a full disk fails here, not in a copy
            mapped = mmap.mmap(fd, self.segment_bytes, mmap.MAP_SHARED | _POPULATE, mmap.PROT_READ | mmap.PROT_WRITE)
            try:  # mapped writable now: no page fault per page on the request path (Linux 5.14+)
                mapped.madvise(_POPULATE_WRITE)
            except OSError:
                pass
            return fd, mapped
        except (OSError, ValueError):
            if fd >= 0:
                os.close(fd)
                hidden.unlink(missing_ok=True)
            raise

    def _leave(self) -> None:
        if self._map is not None:
            self._map.close()  # the fd (and its lock) stays until the observer deletes the file
            self._map = None

    def _forget_deleted(self) -> None:
        kept = []
        for fd, path in self._held:
            if os.fstat(fd).st_nlink == 0:
                os.close(fd)
            else:
                kept.append((fd, path))
        self._held = kept

    def close(self) -> None:
        """After the observer finished (or could not): unmap and unlock; what is left stays for replay."""
        self._leave()
        if self._spare is not None:
            try:
                fd, mapped = self._spare.result()
                mapped.close()
                os.close(fd)
            except (OSError, ValueError):
                pass
            self._spare_path.unlink(missing_ok=True)
            self._spare = None
        self._forget_deleted()
        for fd, path in self._held:
            os.close(fd)
            log.warning("spool segment %s kept for the next start's replay", path)
        self._held = []


# -- reading (the observer process) ---------------------------------------------


def frames(data: Any, start: int = 0) -> Iterator[tuple[int, int, Any]]:
    """(offset after the frame, kind, payload) of each whole frame from `start`, until the
    first header that is zero or does not match its payload (a frame being written, or torn)."""
    stop = len(data)
    offset = start
    size = HEADER.size
    while offset + size <= stop:
        length, checksum, kind = HEADER.unpack_from(data, offset)
        if length == 0 or offset + size + length > stop:
            return
        payload = data[offset + size:offset + size + length]
        if zlib.adler32(payload, kind) != checksum:
            return
        offset = (offset + size + length + 7) & ~7
        yield offset, kind, payload


@dataclass(slots=True)
class Segment:
    path: Path
    fd: int
    map: mmap.mmap
    base: int  # the reader's sequence number before this segment's first frame
    offset: int = 0  # where the next frame starts
    read: int = 0  # frames read (the last one's number in the segment)
    skip: int = 0  # frames at the start already stored (its mark when the reader opened it)
    done: bool = False  # its writer left it: no frame will follow
    hold: int = 0  # first frame (reader sequence number) left to replay alone
    marked: int = 0  # the mark committed for it (frame number in the segment)
    stuck_since: float = 0.0  # when a header that does not match was first seen there

    @property
    def name(self) -> str:
        return self.path.name


class SpoolReader(Marks):
    """The frames of one writer's segments, in order; and the usage journal of the observer's
    UsageMeter (lapis.usage.meter): it answers marks() and committed() as Journal does."""

    TORN_AFTER_S = 2.0  # a header that still does not match after this is a torn frame

    def __init__(self, folder: Path, prefix: str):
        self.folder = folder
        self.prefix = prefix
        self.seq = 0  # frames read, ever (the UsageMeter's sequence numbers)
        self.failures = 0  # always 0: the writer journals, this reads (the UsageMeter's counter)
        self.deleted = 0  # segments deleted once committed
        self.torn = 0  # frames found torn (a crash in the middle of a copy)
        self.written = 0  # usage rows taken from the spool (lapis_usage_journal_writes)
        self.segments: list[Segment] = []  # open, oldest first
        self._next = 1  # the number of the next segment to open
        self._forget: list[str] = []
        self.writer_gone = False  # the writer left for good: every segment is done once read

    def start_at_oldest(self) -> None:
        """A reader that follows a running writer (an observer started again): begin at its
        oldest segment left, not at its first."""
        found = sorted(self.folder.glob(f"{self.prefix}*.bin"))
        if found:
            self._next = int(found[0].stem.rsplit("-", 1)[1])

    async def _open_next(self, mark_of: Callable[[str], Any]) -> bool:
        name = segment_name(self.prefix, self._next)
        path = self.folder / name
        if not path.exists():
            return False
        fd = lock(path, fcntl.LOCK_SH)
        if fd is None:  # a replay holds it (its writer is dead), or took it already
            self._next += 1
            log.warning("spool segment %s is being replayed by another process; skipped", path)
            return True
        mapped = mmap.mmap(fd, 0, mmap.MAP_SHARED, mmap.PROT_READ)
        if self.segments:
            self.segments[-1].done = True  # its writer went on to this one
        mark = await mark_of(name)
        self.segments.append(Segment(path, fd, mapped, self.seq, skip=mark, marked=mark))
        self._next += 1
        return True

    async def poll(self, handle: Callable[[int, Any], None], mark_of: Callable[[str], Any]) -> int:
        """Hand every new whole frame to handle(kind, payload), oldest first; how many."""
        while await self._open_next(mark_of):  # a segment that has a next one is done (see above)
            pass
        if self.writer_gone:
            for segment in self.segments:
                segment.done = True
        return sum(self._read(segment, handle) for segment in self.segments)

    def _read(self, segment: Segment, handle: Callable[[int, Any], None]) -> int:
        count = 0
        for offset, kind, payload in frames(segment.map, segment.offset):
            segment.offset = offset
            segment.read += 1
            self.seq += 1
            count += 1
            if segment.read > segment.skip:
                handle(kind, payload)
        if count:
            segment.stuck_since = 0.0
        if self._stuck(segment):
            self.torn += 1
            log.warning("spool segment %s: a torn frame at offset %d; the rest of it is skipped", segment.path,
                        segment.offset)
            segment.offset = len(segment.map)  # nothing after a torn frame can be trusted
        return count

    def _stuck(self, segment: Segment) -> bool:
        """A header is there but does not match its payload, for too long (or its writer is gone)."""
        if segment.offset + HEADER.size > len(segment.map):
            return False
        length = HEADER.unpack_from(segment.map, segment.offset)[0]
        if length == 0:
            return False
        if self.writer_gone or segment.done:
            return True
        now = time.monotonic()
        if not segment.stuck_since:
            segment.stuck_since = now
        return now - segment.stuck_since >= self.TORN_AFTER_S

    # -- the UsageMeter's journal ---------------------------------------------------

    def append(self, _row: Any) -> bool:
        self.written += 1
        return True  # the frame it came from is its journal line

    def keep(self) -> None:
        """The frame just read is not queued in memory: its segment holds (lapis.usage.journal)."""
        if self.segments and not self.segments[-1].hold:
            self.segments[-1].hold = self.seq

    @property
    def holding(self) -> bool:
        return bool(self.segments) and bool(self.segments[-1].hold)

    def marks(self, upto: int) -> dict[str, int]:
        out = {}
        for s in self.segments:
            mark = min(s.base + s.read, upto, s.hold - 1 if s.hold else upto) - s.base
            if mark > s.marked:
                out[s.name] = mark
        return out

    def _live(self) -> list[Segment]:
        return self.segments

    def rotate_if_due(self) -> None:
        return None

    def committed(self, seq: int) -> None:
        """Delete the segments that are done and whose every frame is stored."""
        kept = []
        for s in self.segments:
            if s.done and s.base + s.read <= seq and not s.hold:
                self._delete(s)
            else:
                kept.append(s)
        self.segments = kept

    def _delete(self, s: Segment) -> None:
        try:
            s.path.unlink()
            self.deleted += 1
            self._forget.append(s.name)
        except FileNotFoundError:
            pass
        s.map.close()
        os.close(s.fd)

    def sync(self) -> None:
        for s in self.segments:
            try:
                os.fsync(s.fd)
            except OSError:
                log.exception("fsync of spool segment %s failed", s.path)

    def close(self, committed_seq: int) -> None:
        self.committed(committed_seq)
        for s in self.segments:
            s.map.close()
            os.close(s.fd)
            log.warning("spool segment %s kept for the next start's replay", s.path)
        self.segments = []


# -- replay (the serving process, before it serves) --------------------------------


def read_segment(path: Path, rows_of: Callable[[list[tuple[int, int, bytes]]], list[tuple]]) -> tuple[list[tuple], int]:
    """The usage lines of one segment, (frame number, *row) as lapis.usage.journal.replay takes
    them, and how many frames were torn (a header there that does not match its payload)."""
    data = path.read_bytes()
    found = []
    offset = 0
    for number, (offset, kind, payload) in enumerate(frames(data), 1):
        found.append((number, kind, bytes(payload)))
    torn = 1 if offset + HEADER.size <= len(data) and HEADER.unpack_from(data, offset)[0] != 0 else 0
    if torn:
        log.warning("spool segment %s: a torn frame at offset %d; the rest of it is skipped", path, offset)
    return rows_of(found), torn
