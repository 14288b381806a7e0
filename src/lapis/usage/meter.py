"""Usage metering: every request that used tokens, kept durably, exactly once.

The choice: a journal line before the answer, a batched commit after it.

* `observe()` (on the hot path, synchronous) prices the request, writes its
  row as one line of this process's journal (lapis.usage.journal: one
  write(2), no fsync), appends the row to the in-memory batch and wakes the
  writer. It runs before the answer's last byte: the envelope middleware
  emits a non-streamed answer's record before aiohttp sends its status line,
  and a stream's row is observed by streaming's BEFORE_DONE hook just before
  `data: [DONE]` (Metering.stream_done); the record the middleware emits
  after the stream is then skipped (`_early`). So a client never sees the end
  of an answer whose usage a process crash could lose, and nothing waits for
  a commit. (An in-band error stream, or one whose client left, is observed
  when its handler returns, microseconds after its last byte.)
* The writer task waits BATCH_WAIT_S after a wake-up, takes whatever
  accumulated, sums it per minute and dimensions, and adds the sums into
  usage_minutes in one transaction, together with the journal's marks (per
  segment, the highest line sequence number now stored). Nothing waits for
  it, so batches are large and commits few, and the store's work is per
  minute and dimension set, not per request. Once every line of a sealed
  journal segment is committed, the segment is deleted (and its mark with
  the next commit).
* At start-up (`open()`, before serving) every segment left in the folder by
  an earlier process, crashed or not, is applied above its mark and deleted.
* Exactly once: a line is either at or below its segment's committed mark
  (stored, never replayed) or above it (replayed). A batch whose commit
  failed ambiguously (it went through, its answer did not) is not written
  again if its mark is found stored (rows the journal could not take have no
  mark: for them such a retry could count twice). A stream observed twice
  counts once (`_early`). A request whose line was written but whose answer a
  crash stopped is counted though its client saw an error: the usage happened
  (the tokens were generated) and Azure bills such requests too.
* Durability: a process crash (kill -9) loses nothing the journal has; a
  power loss can lose rows journalled in the last BATCH_WAIT_S plus one
  commit (the store's commit is durable; the journal is fsynced only when a
  commit fails, so rows kept for a retry survive it too).
* If the store fails, the rows are kept and retried every RETRY_S, and
  `failures` counts it. Memory is bounded (MAX_PENDING rows): beyond it a
  journalled row is left to the journal alone (`deferred`; its segment is
  replayed at the next start), and a row that could not be journalled either
  is dropped (`dropped`); so is every later line of that segment, so that its
  mark can stop below them (lapis.usage.journal). All of these are on /metrics.
* Without a journal (`journal=None`) rows live in memory until committed:
  a crash loses up to one batch.
* In the observer process (LAPIS_OBSERVER=process, lapis.observe.relay) the
  journal is the serving process's record spool (lapis.observe.spool's
  SpoolReader answers as a Journal does): the serving process writes each
  record there before the answer's last byte, and this meter, in the
  observer, prices, batches and commits it with the spool's marks.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any, Callable

from lapis.observe.record import RequestRecord
from lapis.store.metering import MeteringStore
from lapis.usage.journal import Journal, read_segment, replay
from lapis.usage.pricing import PriceBook

log = logging.getLogger("lapis.usage")

MAX_PENDING = 200_000
MAX_EARLY = 10_000  # streams observed before [DONE] whose final record has not come yet
BATCH_WAIT_S = 0.25  # the journal makes rows durable; commits are only for queries: few, large
RETRY_S = 1.0
CLOSE_ATTEMPTS = 3


class UsageMeter:
    def __init__(self, store: MeteringStore, prices: PriceBook, journal: Journal | Any = None,
                 max_pending: int = MAX_PENDING, batch_wait_s: float = BATCH_WAIT_S):
        self.store = store
        self.prices = prices
        self.journal = journal
        self.max_pending = max_pending
        self.batch_wait_s = batch_wait_s
        self.batches = 0  # transactions committed
        self.written = 0  # rows (requests) added to the store
        self.duplicates = 0  # rows of a failed batch found committed after all (not written again)
        self.failures = 0  # batches the store refused (kept and retried)
        self.deferred = 0  # rows left to the journal alone: memory was full
        self.dropped = 0  # rows neither journalled nor queued
        self.replayed = 0  # rows read back from journals at start-up
        self.recovered = 0  # of those, rows above their segment's mark (not stored yet)
        self.torn = 0  # journal lines skipped at replay
        self._rows: list[tuple] = []
        self._retry: list[tuple] = []
        self._unsure: tuple[str, int] | None = None  # the highest mark of the failed batch in _retry
        self._early: set[str] = set()
        self._wake = asyncio.Event()
        self._closing = False
        self._tags: dict[str, tuple[dict, str]] = {}
        self._day = (0.0, 0.0, 0)  # (start, end, yyyymmdd) of the last UTC day seen

    @property
    def pending(self) -> int:
        return len(self._rows) + len(self._retry)

    async def open(self) -> None:
        """Before serving: replay the journal segments earlier processes left."""
        if self.journal is not None:
            await self.replay(self.journal.folder)

    async def replay(self, folder: Path, pattern: str = "journal-*.jsonl",
                     read: Callable[[Path], tuple[list[tuple], int]] = read_segment) -> None:
        """Apply the segments in `folder` that no live process holds (lapis.usage.journal.replay)."""
        try:
            done = await replay(folder, self.store, pattern, read)
        except Exception:  # noqa: BLE001 - serve anyway: what was not applied stays for the next start
            self.failures += 1
            log.exception("replaying the usage journal in %s failed", folder)
            return
        self.replayed += done.lines
        self.recovered += done.inserted
        self.torn += done.torn
        if done.segments or done.busy:
            log.info("usage journal %s: %d segments replayed (%d rows, %d new, %d torn lines), %d held by live "
                     "processes", folder, done.segments, done.lines, done.inserted, done.torn, done.busy)

    def observe(self, r: RequestRecord, early: bool = False) -> None:
        """Journal and queue `r`'s row. `early`: a stream about to send [DONE]; its
        final record, observed later, is then skipped."""
        if not (r.prompt_tokens or r.completion_tokens) or not r.account_id:
            return
        if r.streaming and self._early and not early and r.request_id in self._early:
            self._early.discard(r.request_id)
            return
        row = self.row(r)
        journal = self.journal
        journalled = journal is not None and journal.append(row)
        if len(self._rows) + len(self._retry) >= self.max_pending or journalled and journal.holding:
            if not journalled:
                self.dropped += 1
                return
            self.journal.keep()  # type: ignore[union-attr]
            self.deferred += 1
        else:
            self._rows.append(row)
            self._wake.set()
        if early:
            if len(self._early) >= MAX_EARLY:
                self._early.clear()  # final records that never came; at worst a duplicate, counted once
            self._early.add(r.request_id)

    def row(self, r: RequestRecord) -> tuple:
        """The usage row (lapis.store.metering.USAGE_COLUMNS) of a request that used tokens, priced."""
        cost_in, cost_cached, cost_out = self.prices.get(r.model, r.sku).cost(
            r.prompt_tokens, r.cached_tokens, r.completion_tokens)
        t = r.time
        start, end, day = self._day
        if not start <= t < end:
            day = self._new_day(t)
        return (
            r.request_id, int(t * 1000), day, r.subscription_id.lower(), r.resource_group, r.account_id,
            r.account_arm_id, r.location, r.deployment, r.model, r.model_version, r.sku, r.caller,
            r.operation_name, self._tags_json(r.account_id, r.tags), r.prompt_tokens, r.cached_tokens,
            r.completion_tokens, cost_in, cost_cached, cost_out,
        )

    def _new_day(self, t: float) -> int:
        tm = time.gmtime(t)
        start = t - (tm.tm_hour * 3600 + tm.tm_min * 60 + tm.tm_sec) - (t % 1)
        day = tm.tm_year * 10000 + tm.tm_mon * 100 + tm.tm_mday
        self._day = (start, start + 86400, day)
        return day

    def _tags_json(self, account_id: str, tags: dict[str, str]) -> str:
        """The account's tags as JSON, worked out once per tags object (the
        directory shares one dict per account entry)."""
        cached = self._tags.get(account_id)
        if cached is not None and cached[0] is tags:
            return cached[1]
        text = json.dumps(tags or {}, sort_keys=True, separators=(",", ":"))
        self._tags[account_id] = (tags, text)
        return text

    # -- the writer ------------------------------------------------------------

    async def _write_batch(self) -> bool:
        journal = self.journal
        if journal is not None:
            journal.rotate_if_due()
        upto = journal.seq if journal is not None else 0  # every line up to here is in this batch or stored
        marks = journal.marks(upto) if journal is not None else {}
        forget = journal.forgotten() if journal is not None else []
        rows: list[tuple] | None = None
        try:
            if self._unsure is not None:
                await self._drop_if_committed(*self._unsure)
            rows = self._retry + self._rows
            self._retry, self._rows = [], []
            added = await self.store.add_usage(rows, marks, forget)
        except Exception:  # noqa: BLE001 - keep the rows, try again
            self.failures += 1
            if rows is not None:  # the commit was tried: it may have gone through
                self._retry = rows
                self._unsure = max(marks.items(), key=lambda item: item[1]) if marks else None
            if journal is not None:
                journal.unforget(forget)
                journal.sync()
            log.exception("writing %d usage records failed; retrying in %.1f s", self.pending, RETRY_S)
            return False
        self._unsure = None
        self.batches += 1
        self.written += added
        if journal is not None:
            journal.marked(marks)
            journal.committed(upto)
        return True

    async def _drop_if_committed(self, segment: str, mark: int) -> None:
        """After a failed commit: if its mark is stored, it went through; its rows must not be added again."""
        if await self.store.usage_mark(segment) >= mark:
            self.duplicates += len(self._retry)
            self._retry = []
            log.warning("the failed usage batch was committed after all: not written again")
        self._unsure = None

    async def run(self) -> None:
        """The writer: one batch per wake-up, until close()."""
        attempts = 0
        while True:
            await self._wake.wait()
            if not self._closing and self.batch_wait_s:
                await asyncio.sleep(self.batch_wait_s)  # let the batch grow: nobody waits for it
            self._wake.clear()
            if self.pending:
                ok = await self._write_batch()
                attempts = 0 if ok else attempts + 1
                if not ok:
                    if self._closing and attempts >= CLOSE_ATTEMPTS:
                        log.error("stopping with %d usage records unwritten", self.pending)
                        return
                    await asyncio.sleep(RETRY_S)
                    self._wake.set()
                    continue
            if self._closing and not self.pending:
                return

    async def close(self, task: asyncio.Task[None] | None) -> None:
        """Write what is left, stop the writer, delete the journal segments that are committed."""
        self._closing = True
        self._wake.set()
        if task is not None and not task.done():
            await task
        elif self.pending:
            await self._write_batch()
        if self.journal is not None:
            self.journal.close(self.journal.seq if not self.pending else 0)
            try:
                await self.store.forget_marks(self.journal.forgotten())
            except Exception:  # noqa: BLE001 - a mark nobody reads: harmless
                log.exception("deleting the marks of deleted usage journal segments failed")
