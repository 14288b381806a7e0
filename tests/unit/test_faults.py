"""Fault injection: scope matching, shares from a seeded RNG, latency, hang, cut streams, down, reset.

Shares are drawn from a seeded random.Random, so every count here is the
same on every run; latency goes through an injected sleep that records what
it was asked to wait, so nothing here waits for real (except the hang test,
which gives up on the call after 50 ms and asserts only that it never answered).
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from lapis.backends.base import ChatCall, Delta, EmbedCall, UpstreamError
from lapis.backends.simulator import SimulatorBackend
from lapis.serving.balancer import Member
from lapis.serving.faults import FaultBoard, FaultyBackend
from lapis.serving.specs import FaultSpec

CALL = ChatCall(model="gpt-4o-mini", version="2024-07-18", max_tokens=50,
                messages=[{"role": "user", "content": "Tell me about rivers."}])
EMBED = EmbedCall(model="text-embedding-3-small", version="1", inputs=["hello"], dimensions=8)


class Recorder:
    """An injected sleep that records its calls, and the events around them."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    async def sleep(self, seconds: float) -> None:
        self.events.append(("sleep", seconds))


def member(key: str = "backend:a", region: str = "eastus", backend: Any = None) -> Member:
    return Member(key=key, name="dep", region=region, backend=backend or SimulatorBackend())


def board(seed: int = 7, sleep: Any = None, *specs: FaultSpec) -> FaultBoard:
    b = FaultBoard(rng=random.Random(seed), sleep=sleep or Recorder().sleep)
    b.replace(specs)
    return b


async def outcome(backend: Any) -> str:
    try:
        await backend.chat(CALL)
    except UpstreamError as exc:
        return exc.kind
    return "ok"


def test_no_fault_returns_the_member_backend_itself() -> None:
    m = member()
    assert board().apply(m) is m.backend
    other = board(7, None, FaultSpec("region", "westus", down=True), FaultSpec("member", "backend:b", down=True))
    assert other.apply(m) is m.backend


def test_scope_matches_region_or_member_key() -> None:
    b = board(7, None, FaultSpec("region", "eastus", down=True), FaultSpec("member", "sim:westus", hang=True))
    east, west, other = member(region="eastus"), member("sim:westus", "westus"), member("sim:x", "westus")
    assert isinstance(b.apply(east), FaultyBackend) and b.apply(east).spec.down
    assert isinstance(b.apply(west), FaultyBackend) and b.apply(west).spec.hang
    assert b.apply(other) is other.backend


async def test_region_and_member_faults_both_apply() -> None:
    b = board(7, None, FaultSpec("region", "eastus", latency_ms=100), FaultSpec("member", "backend:a", down=True))
    wrapped = b.apply(member())
    assert isinstance(wrapped, FaultyBackend) and wrapped.spec.down
    assert isinstance(wrapped.inner, FaultyBackend) and wrapped.inner.spec.latency_ms == 100
    assert await outcome(wrapped) == "unreachable"


async def test_429_share_follows_the_rate_with_retry_after() -> None:
    b = board(11, None, FaultSpec("region", "eastus", rate_429=0.3, retry_after_s=4.0))
    backend = b.apply(member())
    errors: list[UpstreamError] = []
    for _ in range(1000):
        try:
            await backend.chat(CALL)
        except UpstreamError as exc:
            errors.append(exc)
    assert 250 <= len(errors) <= 350
    assert {(e.kind, e.status, e.retry_after) for e in errors} == {("rate_limited", 429, 4.0)}
    assert b.stats["rate_limited"] == len(errors)


async def test_429_and_503_shares_partition_the_calls() -> None:
    b = board(3, None, FaultSpec("member", "backend:a", rate_429=0.2, rate_503=0.5))
    backend = b.apply(member())
    kinds = [await outcome(backend) for _ in range(1000)]
    assert 150 <= kinds.count("rate_limited") <= 250
    assert 450 <= kinds.count("unavailable") <= 550
    assert 250 <= kinds.count("ok") <= 350
    again = board(3, None, FaultSpec("member", "backend:a", rate_429=0.2, rate_503=0.5)).apply(member())
    assert [await outcome(again) for _ in range(1000)] == kinds  # same seed, same calls


async def test_503_carries_its_status() -> None:
    backend = board(1, None, FaultSpec("region", "eastus", rate_503=1.0)).apply(member())
    with pytest.raises(UpstreamError) as info:
        await backend.embed(EMBED)
    assert (info.value.kind, info.value.status) == ("unavailable", 503)


async def test_down_refuses_without_calling_the_engine() -> None:
    inner = SimulatorBackend()
    backend = board(1, None, FaultSpec("member", "backend:a", down=True)).apply(member(backend=inner))
    assert await outcome(backend) == "unreachable"
    with pytest.raises(UpstreamError, match="refused"):
        await anext(backend.chat_stream(CALL))
    assert inner.stats.tokens_generated == 0 and inner.stats.active_streams == 0


async def test_hang_never_answers() -> None:
    inner = SimulatorBackend()
    backend = board(1, None, FaultSpec("region", "eastus", hang=True)).apply(member(backend=inner))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(backend.chat(CALL), 0.05)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(anext(backend.chat_stream(CALL)), 0.05)
    assert inner.stats.tokens_generated == 0


async def test_latency_comes_before_the_first_byte() -> None:
    recorder = Recorder()
    backend = board(1, recorder.sleep, FaultSpec("region", "eastus", latency_ms=250)).apply(member())
    async for item in backend.chat_stream(CALL):
        recorder.events.append(("item", item))
    assert recorder.events[0] == ("sleep", 0.25)
    assert all(kind == "item" for kind, _ in recorder.events[1:]) and len(recorder.events) > 3
    recorder.events.clear()
    completion = await backend.chat(CALL)
    assert recorder.events == [("sleep", 0.25)] and completion.choices[0].content


async def test_latency_also_delays_injected_errors() -> None:
    recorder = Recorder()
    backend = board(1, recorder.sleep, FaultSpec("region", "eastus", latency_ms=40, rate_503=1.0)).apply(member())
    assert await outcome(backend) == "unavailable"
    assert recorder.events == [("sleep", 0.04)]


async def test_cut_after_n_items_closes_the_engine_stream() -> None:
    inner = SimulatorBackend()
    backend = board(1, None, FaultSpec("member", "backend:a", cut_after=3)).apply(member(backend=inner))
    received: list[Delta] = []
    with pytest.raises(UpstreamError) as info:
        async for item in backend.chat_stream(CALL):
            received.append(item)
    assert len(received) == 3 and info.value.kind == "unreachable" and "cut" in info.value.message
    assert inner.stats.active_streams == 0 and inner.stats.streams_cancelled == 1


async def test_a_stream_shorter_than_the_cut_ends_normally() -> None:
    full = [d async for d in SimulatorBackend().chat_stream(CALL)]
    backend = board(1, None, FaultSpec("member", "backend:a", cut_after=len(full))).apply(member())
    assert [d async for d in backend.chat_stream(CALL)] == full
    assert (await backend.chat(CALL)).choices  # chat() is never cut


async def test_reset_and_replace() -> None:
    b = board(1, None, FaultSpec("region", "eastus", down=True))
    m = member()
    assert b.apply(m) is not m.backend and len(b.specs) == 1
    b.reset()
    assert b.apply(m) is m.backend and b.specs == ()
    b.replace([FaultSpec("member", "backend:a", down=True), FaultSpec("member", "backend:a", rate_503=1.0)])
    assert b.apply(m).spec.rate_503 == 1.0  # the last spec for a target wins


@pytest.mark.parametrize("bad", [
    FaultSpec("zone", "eastus"),
    FaultSpec("region", ""),
    FaultSpec("region", "eastus", rate_429=1.5),
    FaultSpec("region", "eastus", rate_429=0.6, rate_503=0.6),
    FaultSpec("region", "eastus", latency_ms=-1),
    FaultSpec("region", "eastus", cut_after=-1),
])
def test_replace_rejects_nonsense_and_keeps_what_was_there(bad: FaultSpec) -> None:
    b = board(1, None, FaultSpec("region", "eastus", down=True))
    with pytest.raises(ValueError):
        b.replace([FaultSpec("region", "westus", hang=True), bad])
    assert b.specs == (FaultSpec("region", "eastus", down=True),)
