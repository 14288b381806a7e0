"""SinkQueue: a bounded queue in front of one sink, and the loop that delivers it.

The request path only calls `offer()`: it appends to a bounded deque, or
counts a drop when the queue is full, and returns at once. One task per sink
takes batches from the head and hands them to the sink. With `linger`, a
sink writes at most once per `linger` seconds unless a whole batch is
waiting: a record after a quiet spell goes at once, and a busy server makes
a few large writes rather than many small ones (each write has its cost:
an XADD, a thread hop, an fsync). A batch leaves the
queue only once the sink took it, so a failed delivery is retried with
exponential backoff (at-least-once: a batch the sink took just before a
connection broke may come twice). A sink outage therefore loses nothing
until the queue is full, and then only the records that did not fit, each
counted in `dropped`; the log says when a sink goes down, when its queue
fills, and when it comes back (with how many records were lost meanwhile).

What is queued may be the record itself or something that becomes one:
`prepare`, when given, turns each batch into the records the sink takes,
just before delivery (the dispatcher queues data-plane requests unshaped
and shapes them here, off the request path). An item it cannot turn into a
record is left out, counted in `dropped` (and logged by `prepare`).

Errors a sink raises:
    Rejected        the destination refused the batch for good (an HTTP 400):
                    dropped and counted, never retried
    anything else   a transient failure: counted in `failed`, retried after a backoff
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from itertools import islice
from typing import Any, Callable, Protocol

log = logging.getLogger("lapis.diagnostics")


class Rejected(Exception):
    """The destination refused a batch; retrying would not help."""


class Sink(Protocol):
    name: str

    async def deliver(self, records: list[Any]) -> None: ...  # records, or what `prepare` made of them
    async def close(self) -> None: ...


class SinkQueue:
    def __init__(self, sink: Sink, capacity: int, batch: int = 200, min_backoff: float = 0.05,
                 max_backoff: float = 5.0, prepare: Callable[[list[Any]], list[Any]] | None = None,
                 linger: float = 0.0):
        self.sink = sink
        self.linger = linger
        self.capacity = capacity
        self.batch = batch
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.prepare = prepare
        self.items: deque[Any] = deque()
        self.delivered = 0
        self.dropped = 0
        self.failed = 0
        self._down = False
        self._full = False
        self._dropped_before = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._whole = min(batch, capacity)  # what ends a linger at once
        self._written = float("-inf")  # loop time of the last delivery
        self._gathering: asyncio.Future | None = None  # set while lingering

    @property
    def name(self) -> str:
        return self.sink.name

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"sink {self.name}")

    def offer(self, record: Any) -> bool:
        """Queue one record without waiting; False (and a counted drop) when the queue is full."""
        if len(self.items) >= self.capacity:
            self.dropped += 1
            if not self._full:
                self._full = True
                log.warning("diagnostics sink %s: queue full (%d records); dropping new records until it drains",
                            self.name, self.capacity)
            return False
        self.items.append(record)
        self._wake.set()
        if self._gathering is not None and len(self.items) >= self._whole:
            self._gathered()
        return True

    def counters(self) -> dict[str, int]:
        """queued: waiting now; delivered, dropped: records so far; failed: delivery attempts that failed."""
        return {"queued": len(self.items), "delivered": self.delivered, "dropped": self.dropped,
                "failed": self.failed}

    def _gathered(self) -> None:
        if self._gathering is not None and not self._gathering.done():
            self._gathering.set_result(None)

    async def _gather(self, deadline: float) -> None:
        """Until `deadline` (loop time), or until a whole batch is queued."""
        loop = asyncio.get_running_loop()
        self._gathering = loop.create_future()
        timer = loop.call_at(deadline, self._gathered)
        try:
            await self._gathering
        finally:
            timer.cancel()
            self._gathering = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        delay = self.min_backoff
        while True:
            if not self.items:
                self._wake.clear()
                await self._wake.wait()
                continue
            if self.linger and len(self.items) < self._whole and loop.time() < self._written + self.linger:
                await self._gather(self._written + self.linger)  # one write for many records
            batch = list(islice(self.items, 0, self.batch))
            records = batch if self.prepare is None else self.prepare(batch)
            if not records:  # nothing in the batch became a record
                self._take(len(batch))
                self.dropped += len(batch)
                continue
            dropped_before = self.dropped
            try:
                await self.sink.deliver(records)
            except asyncio.CancelledError:
                raise
            except Rejected as refusal:
                self._take(len(batch))
                self.dropped += len(batch)
                self.failed += 1
                log.warning("diagnostics sink %s refused %d records (%s); they are dropped", self.name, len(batch),
                            refusal)
                continue
            except Exception as failure:  # noqa: BLE001 - any sink failure is retried, never raised
                self.failed += 1
                if not self._down:
                    self._down = True
                    self._dropped_before = dropped_before  # it was down from this attempt on
                    log.warning("diagnostics sink %s is down (%r); holding up to %d records and retrying",
                                self.name, failure, self.capacity)
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, self.max_backoff)
                continue
            self._take(len(batch))
            self.delivered += len(records)
            self.dropped += len(batch) - len(records)
            self._written = loop.time()
            delay = self.min_backoff
            if self._down:
                self._down = False
                log.warning("diagnostics sink %s is back; %d records were dropped while it was down", self.name,
                            self.dropped - self._dropped_before)

    def _take(self, count: int) -> None:
        for _ in range(count):
            self.items.popleft()
        if self._full and len(self.items) < self.capacity:
            self._full = False

    async def flushed(self, timeout: float) -> bool:
        """Wait, at most `timeout` seconds and not while the sink is down, for the queue to empty."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.items and not self._down and self._task is not None and loop.time() < deadline:
            await asyncio.sleep(0.01)
        return not self.items

    async def close(self, grace: float = 2.0) -> None:
        """Give the sink `grace` seconds to take what is queued, then stop."""
        await self.flushed(grace)
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self.items:
            log.warning("diagnostics sink %s stopped with %d records undelivered", self.name, len(self.items))
        await self.sink.close()
