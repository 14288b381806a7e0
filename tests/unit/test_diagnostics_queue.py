"""The bounded queue in front of each sink, the workspace files behind one, and what the
dispatcher puts on the queues (requests unshaped, shaped once in the sinks' tasks)."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace

from lapis.auth.actions import CHAT
from lapis.diagnostics.dispatcher import Diagnostics, Route
from lapis.diagnostics.files import TableFiles
from lapis.diagnostics.pending import Pending, records
from lapis.diagnostics.queue import Rejected, SinkQueue
from lapis.diagnostics.shaping import denial_audit_log, request_log
from lapis.observe.record import RequestRecord

ARM_ID = "/subscriptions/s1/resourceGroups/rg1/providers/Microsoft.CognitiveServices/accounts/acct"


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


def request(**changes) -> RequestRecord:
    base = dict(time=1_716_553_382.435, request_id="r1", operation="chat", operation_name="ChatCompletions_Create",
                api_version="2024-10-21", status=200, streaming=False, duration_ms=12.5, ttfb_ms=3.25, caller="key1",
                caller_ip="10.0.0.7", account_id="a1", account_arm_id=ARM_ID, location="eastus", deployment="chat",
                model="gpt-4o-mini", model_version="2024-07-18", sku="Standard", prompt_tokens=12, completion_tokens=3)
    base.update(changes)
    return RequestRecord(**base)


async def test_a_request_is_queued_unshaped_and_shaped_once_for_every_sink(tmp_path):
    services = SimpleNamespace(store=SimpleNamespace(db=None), settings=SimpleNamespace(home=tmp_path))
    diagnostics = Diagnostics(services)
    sinks = [GatedSink(), GatedSink()]
    queues = [SinkQueue(sink, capacity=10, prepare=records) for sink in sinks]
    diagnostics.routes = {"a1": [Route("s", "eastus", frozenset({"RequestResponse", "Audit"}), False, queues)]}
    ok, denied = request(), request(request_id="r2", status=401, caller="", error_code="401")
    diagnostics.observe(ok)
    diagnostics.observe(denied)
    diagnostics.observe(request(request_id="r3", location="westus"))  # another region's: never queued
    assert [type(item) for item in queues[0].items] == [Pending] * 3  # nothing shaped on the request path
    assert [(p.request.request_id, p.category) for p in queues[0].items] == \
           [("r1", "RequestResponse"), ("r2", "RequestResponse"), ("r2", "Audit")]
    for sink, queue in zip(sinks, queues):
        sink.up.set()
        queue.start()
    await until(lambda: all(len(sink.taken) == 3 for sink in sinks))
    assert sinks[0].taken == [request_log(ok), request_log(denied), denial_audit_log(denied, CHAT.action)]
    assert all(a is b for a, b in zip(*(sink.taken for sink in sinks)))  # one record, handed to both
    assert [q.counters()["delivered"] for q in queues] == [3, 3]
    for queue in queues:
        await queue.close()


async def test_a_request_that_cannot_be_shaped_is_dropped_and_the_sink_goes_on(caplog):
    caplog.set_level(logging.ERROR, logger="lapis.diagnostics")
    sink = GatedSink()
    sink.up.set()
    queue = SinkQueue(sink, capacity=10, prepare=records)
    broken = Pending(request(request_id="bad", duration_ms=None), "RequestResponse", False)
    queue.offer(broken)
    queue.offer({"n": 1})  # records already shaped (management Audit, metrics) pass as they are
    queue.offer(Pending(request(), "RequestResponse", False))
    queue.start()
    await until(lambda: queue.counters()["queued"] == 0)
    assert sink.taken == [{"n": 1}, request_log(request())]
    assert queue.counters() == {"queued": 0, "delivered": 2, "dropped": 1, "failed": 0}
    assert "could not shape the RequestResponse record of request bad" in caplog.text
    queue.offer(broken)  # a batch of nothing but such records still leaves the queue
    await until(lambda: queue.counters()["dropped"] == 2)
    assert queue.counters()["queued"] == 0 and len(sink.taken) == 2
    await queue.close()


async def test_a_lingering_queue_writes_at_once_after_a_quiet_spell_then_gathers_whole_batches():
    class Batches(GatedSink):
        def __init__(self) -> None:
            super().__init__()
            self.sizes: list[int] = []

        async def deliver(self, records):
            self.sizes.append(len(records))
            await super().deliver(records)

    sink = Batches()
    sink.up.set()
    queue = SinkQueue(sink, capacity=100, batch=3, linger=60.0)
    queue.start()
    queue.offer({"n": 0})
    await until(lambda: queue.counters()["delivered"] == 1)  # nothing written lately: no waiting
    for n in (1, 2):
        queue.offer({"n": n})
        for _ in range(5):
            await asyncio.sleep(0)
    assert queue.counters()["queued"] == 2  # written a moment ago: it waits for more
    queue.offer({"n": 3})  # a whole batch: written at once
    await until(lambda: queue.counters()["delivered"] == 4)
    assert sink.sizes == [1, 3] and [r["n"] for r in sink.taken] == [0, 1, 2, 3]
    await queue.close()
