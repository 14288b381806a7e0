"""The bounded queue in front of each sink, and the workspace files behind one."""

from __future__ import annotations

import asyncio
import logging

from lapis.diagnostics.files import TableFiles
from lapis.diagnostics.queue import Rejected, SinkQueue


class GatedSink:
    """A real sink whose destination is up or down on demand; it keeps what it takes."""

    name = "gated"

    def __init__(self) -> None:
        self.up = asyncio.Event()
        self.taken: list[dict] = []
        self.refuse = False

    async def deliver(self, records: list[dict]) -> None:
        if self.refuse:
            raise Rejected("HTTP 400")
        if not self.up.is_set():
            raise ConnectionError("destination down")
        self.taken.extend(records)

    async def close(self) -> None:
        return None


async def until(predicate, limit: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not predicate():
        assert loop.time() < deadline, "condition never came true"
        await asyncio.sleep(0.01)


async def test_a_full_queue_drops_and_counts_and_says_so(caplog):
    sink = GatedSink()
    queue = SinkQueue(sink, capacity=3, min_backoff=0.01, max_backoff=0.02)
    caplog.set_level(logging.WARNING, logger="lapis.diagnostics")
    queue.start()
    assert queue.offer({"n": 0})
    await until(lambda: queue.failed > 0)
    assert "is down" in caplog.text and "queue full" not in caplog.text
    results = [queue.offer({"n": n}) for n in range(1, 5)]
    assert results == [True, True, False, False]
    assert queue.counters() == {"queued": 3, "delivered": 0, "dropped": 2, "failed": queue.failed}
    assert "queue full" in caplog.text
    sink.up.set()  # the destination comes back: what the queue held arrives, in order
    await until(lambda: queue.counters()["queued"] == 0)
    assert [r["n"] for r in sink.taken] == [0, 1, 2]
    assert queue.counters()["delivered"] == 3 and "is back; 2 records were dropped" in caplog.text
    assert queue.offer({"n": 9})  # room again
    await until(lambda: len(sink.taken) == 4)
    await queue.close()


async def test_refused_batches_are_dropped_not_retried():
    sink = GatedSink()
    sink.refuse = True
    queue = SinkQueue(sink, capacity=10, min_backoff=0.01)
    queue.start()
    queue.offer({"n": 1})
    await until(lambda: queue.counters()["queued"] == 0)
    assert queue.counters() == {"queued": 0, "delivered": 0, "dropped": 1, "failed": 1}
    sink.refuse = False
    sink.up.set()
    queue.offer({"n": 2})
    await until(lambda: queue.counters()["delivered"] == 1)
    assert sink.taken == [{"n": 2}]
    await queue.close()


async def test_offer_never_waits_even_while_the_sink_hangs():
    class Hanging(GatedSink):
        async def deliver(self, records):
            await asyncio.Event().wait()  # never answers

    queue = SinkQueue(Hanging(), capacity=2)
    queue.start()
    await asyncio.sleep(0)
    accepted = [queue.offer({"n": n}) for n in range(1000)]
    assert accepted.count(True) == 2 and queue.counters()["dropped"] == 998
    await queue.close(grace=0.05)


def test_workspace_files_rotate_and_read_back_oldest_first(tmp_path):
    files = TableFiles(tmp_path / "ws", max_bytes=120, keep=2)
    for n in range(12):
        files.append({"AzureDiagnostics": [{"n": n, "pad": "x" * 20}]})
    names = sorted(p.name for p in (tmp_path / "ws").iterdir())
    assert names == ["AzureDiagnostics.1.jsonl", "AzureDiagnostics.2.jsonl", "AzureDiagnostics.jsonl"]
    kept = [r["n"] for r in files.rows("AzureDiagnostics")]
    assert kept == sorted(kept) and kept[-1] == 11 and len(kept) < 12  # the oldest rotated away
    assert all(p.stat().st_size <= 120 for p in (tmp_path / "ws").iterdir())
    with open(files.path("AzureDiagnostics"), "ab") as handle:
        handle.write(b'{"torn": ')  # a crash mid-line
    assert [r["n"] for r in files.rows("AzureDiagnostics")] == kept
    assert files.tables() == ["AzureDiagnostics"]
