"""The balancer: weighted split, priority, failover, breakers, retries within the deadline, streams.

Time is a FakeClock: the balancer, the breaker board and the fault board read
it, and the balancer's injected sleep moves it instead of waiting, so
backoffs and breaker timeouts cost nothing and every figure is exact. Random
choices come from seeded RNGs. Only the hang tests use real (50 ms) timeouts,
and they assert what happened, never how long it took.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any, AsyncIterator

import pytest

from lapis.backends.base import BackendStats, ChatCall, Choice, Completion, Delta, EmbedCall, UpstreamError
from lapis.backends.simulator import SimulatorBackend
from lapis.serving.balancer import Balancer, Member, RetryPolicy
from lapis.serving.breaker import CLOSED, OPEN, BreakerPolicy, MemoryBreakerBoard
from lapis.serving.faults import FaultBoard
from lapis.serving.specs import FaultSpec

CALL = ChatCall(model="gpt-4o-mini", version="2024-07-18", max_tokens=30,
                messages=[{"role": "user", "content": "Tell me about rivers."}])
EMBED = EmbedCall(model="text-embedding-3-small", version="1", inputs=["hello"], dimensions=4)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class Scripted:
    """A Backend that answers "<name>" or raises the next scripted error; counts calls."""

    def __init__(self, name: str, errors: list[UpstreamError | None] | None = None, items: int = 3) -> None:
        self.name = name
        self.errors = list(errors or [])
        self.items = items
        self.calls = 0
        self.stats = BackendStats()

    def _next(self) -> None:
        self.calls += 1
        if self.errors:
            error = self.errors.pop(0)
            if error is not None:
                raise error

    async def chat(self, call: ChatCall) -> Completion:
        self._next()
        return Completion([Choice(index=0, content=self.name, finish_reason="stop")])

    async def chat_stream(self, call: ChatCall) -> AsyncIterator[Delta]:
        self._next()
        for i in range(self.items):
            yield Delta(index=0, content=f"{self.name}{i}")

    async def embed(self, call: EmbedCall) -> list[list[float]]:
        self._next()
        return [[1.0, 0.0, 0.0, 0.0]]

    async def close(self) -> None:
        return None


class Rig:
    def __init__(self, seed: int = 1, policy: RetryPolicy = RetryPolicy(), failures: int = 3) -> None:
        self.clock = FakeClock()
        self.breakers = MemoryBreakerBoard(BreakerPolicy(failures=failures, open_s=30.0), self.clock)
        self.faults = FaultBoard(rng=random.Random(seed), sleep=self.clock.sleep)
        self.balancer = Balancer(self.breakers, self.faults, policy, rng=random.Random(seed),
                                 clock=self.clock, sleep=self.clock.sleep)

    def deadline(self, seconds: float = 60.0) -> float:
        return self.clock.now + seconds

    async def chat(self, members: list[Member], seconds: float = 60.0) -> str:
        completion, member = await self.balancer.chat(members, CALL, self.deadline(seconds))
        assert completion.choices[0].content == member.backend.name  # type: ignore[attr-defined]
        return member.key


def m(key: str, priority: int = 1, weight: int = 1, backend: Any = None, region: str = "eastus",
      **kw: Any) -> Member:
    return Member(key=key, name=key, region=region, backend=backend or Scripted(key), priority=priority,
                  weight=weight, **kw)


def err(kind: str, retry_after: float | None = None) -> UpstreamError:
    return UpstreamError(kind, f"scripted {kind}", retry_after=retry_after)


# --- choice ------------------------------------------------------------------------------

async def test_weighted_split_within_5_points_over_2000_requests() -> None:
    rig = Rig(seed=20)
    members = [m("a", weight=1), m("b", weight=3), m("c", weight=6)]
    served = [await rig.chat(members) for _ in range(2000)]
    for key, weight in (("a", 1), ("b", 3), ("c", 6)):
        assert abs(served.count(key) / 2000 - weight / 10) <= 0.05, (key, served.count(key))
    assert rig.balancer.stats.attempts == 2000 and rig.balancer.stats.failovers == 0


async def test_lower_priority_number_gets_all_traffic_while_it_can() -> None:
    rig = Rig()
    members = [m("backup", priority=2, weight=100), m("a"), m("b")]
    served = [await rig.chat(members) for _ in range(300)]
    assert served.count("backup") == 0 and served.count("a") > 100 and served.count("b") > 100
    rig.faults.replace([FaultSpec("member", "a", down=True), FaultSpec("member", "b", down=True)])
    assert {await rig.chat(members) for _ in range(10)} == {"backup"}
    assert rig.breakers.state("a") == OPEN and rig.breakers.state("b") == OPEN
    rig.faults.reset()  # healthy again, but the breakers stay open for their 30 s
    assert await rig.chat(members) == "backup"
    rig.clock.now += 30
    assert {await rig.chat(members) for _ in range(20)} == {"a", "b"}  # probes succeed: closed again
    assert rig.breakers.state("a") == CLOSED and rig.breakers.state("b") == CLOSED


async def test_zero_weight_member_only_after_the_others_of_its_priority() -> None:
    rig = Rig()
    members = [m("drain", weight=0), m("a")]
    assert {await rig.chat(members) for _ in range(50)} == {"a"}
    rig.faults.replace([FaultSpec("member", "a", rate_503=1.0)])
    assert await rig.chat(members) == "drain"


# --- failover ------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["rate_limited", "unavailable", "timeout", "unreachable"])
async def test_retryable_failures_fail_over_to_the_next_member(kind: str) -> None:
    rig = Rig()
    first = m("a", backend=Scripted("a", [err(kind)]))
    assert await rig.chat([first, m("b", priority=2)]) == "b"
    assert rig.balancer.stats.failovers == 1 and rig.balancer.stats.failures == {kind: 1}
    assert rig.clock.slept == []  # failing over does not wait


@pytest.mark.parametrize("kind, breaker_failure", [("malformed", True), ("rejected", False)])
async def test_non_retryable_failures_are_raised_at_once(kind: str, breaker_failure: bool) -> None:
    rig = Rig(failures=1)
    other = m("b", priority=2)
    with pytest.raises(UpstreamError) as info:
        await rig.chat([m("a", backend=Scripted("a", [err(kind)])), other])
    assert info.value.kind == kind and other.backend.calls == 0
    assert rig.breakers.state("a") == (OPEN if breaker_failure else CLOSED)


async def test_a_hanging_member_times_out_and_the_next_one_answers() -> None:
    rig = Rig(policy=RetryPolicy(attempt_timeout_s=0.05))
    rig.faults.replace([FaultSpec("member", "a", hang=True)])
    assert await rig.chat([m("a"), m("b", priority=2)]) == "b"
    assert rig.balancer.stats.failures == {"timeout": 1}


class SelfTimed(Scripted):
    """A backend that promises to end every plain call within deadline_s by itself."""

    def __init__(self, name: str, deadline_s: float, hang: bool, rig: Rig) -> None:
        super().__init__(name)
        self.deadline_s = deadline_s
        self.hang = hang
        self.rig = rig
        self.timed: list[int] = []  # the balancer's running timeouts, seen from inside each call

    async def chat(self, call: ChatCall) -> Completion:
        self.calls += 1
        self.timed.append(self.rig.balancer.timer.pending())
        if self.hang:
            try:
                await asyncio.sleep(self.deadline_s)
            except asyncio.CancelledError:
                self.cancelled = True
                raise
            raise UpstreamError("timeout", "self-timed out")
        return Completion([Choice(index=0, content=self.name, finish_reason="stop")])


async def test_a_backend_that_times_itself_is_not_timed_again() -> None:
    rig = Rig(policy=RetryPolicy(attempt_timeout_s=0.05))
    own = SelfTimed("a", deadline_s=0.05, hang=True, rig=rig)  # not longer than the attempt's 50 ms
    assert await rig.chat([m("a", backend=own), m("b", priority=2)]) == "b"
    assert own.timed == [0] and not hasattr(own, "cancelled")  # no timer of the balancer's: its own ended it
    assert rig.balancer.stats.failures == {"timeout": 1} and rig.balancer.timer.pending() == 0


async def test_a_backend_whose_own_deadline_is_longer_is_timed_by_the_balancer() -> None:
    rig = Rig(policy=RetryPolicy(attempt_timeout_s=0.05))
    slow = SelfTimed("a", deadline_s=30, hang=True, rig=rig)  # would take 30 s: the balancer's 50 ms cuts it
    assert await rig.chat([m("a", backend=slow), m("b", priority=2)]) == "b"
    assert slow.timed == [1] and slow.cancelled and rig.balancer.stats.failures == {"timeout": 1}
    rig.faults.replace([FaultSpec("member", "c", latency_ms=1)])  # a fault wrapper promises nothing
    faulty = SelfTimed("c", deadline_s=0.05, hang=False, rig=rig)
    assert await rig.chat([m("c", backend=faulty)]) == "c" and faulty.timed == [1]


async def test_a_hang_past_the_deadline_is_a_timeout() -> None:
    rig = Rig(policy=RetryPolicy(max_attempts=1))
    rig.faults.replace([FaultSpec("region", "eastus", hang=True)])
    with pytest.raises(UpstreamError) as info:
        await rig.chat([m("a")], seconds=0.05)
    assert info.value.kind == "timeout"


async def test_open_breakers_are_skipped_and_all_open_is_unavailable() -> None:
    rig = Rig(failures=1)
    a, b = m("a"), m("b", priority=2)
    await rig.breakers.record("a", False)
    assert await rig.chat([a, b]) == "b" and a.backend.calls == 0
    await rig.breakers.record("b", False)
    with pytest.raises(UpstreamError) as info:
        await rig.chat([a, b])
    assert (info.value.kind, info.value.status) == ("unavailable", 503)
    assert a.backend.calls == 0 and b.backend.calls == 1 and rig.clock.slept == []
    assert rig.balancer.stats.skipped_open == 3 and rig.balancer.stats.breaker["opened"] == 2


async def test_a_429_with_retry_after_opens_the_member_breaker() -> None:
    rig = Rig()
    a = m("a", backend=Scripted("a", [err("rate_limited", 12.0)]))
    assert await rig.chat([a, m("b", priority=2)]) == "b"
    assert rig.breakers.state("a") == OPEN
    rig.clock.now += 12
    assert await rig.chat([a, m("b", priority=2)]) == "a"


async def test_admit_refusal_skips_the_member_without_blaming_it() -> None:
    rig = Rig(failures=1)

    async def full() -> None:
        raise UpstreamError("rate_limited", "member deployment over quota", 429, 3.0)

    a = m("a", admit=full)
    assert await rig.chat([a, m("b", priority=2)]) == "b"
    assert a.backend.calls == 0 and rig.breakers.state("a") == CLOSED
    with pytest.raises(UpstreamError) as info:  # alone, it waits out the 3 s, then gives up
        await Rig(policy=RetryPolicy(max_attempts=2)).chat([a])
    assert info.value.kind == "rate_limited" and info.value.retry_after == 3.0


async def test_admit_refusal_gives_back_the_probe() -> None:
    rig = Rig(failures=1)
    calls = []

    async def full() -> None:
        calls.append(1)
        raise UpstreamError("rate_limited", "over quota", 429, 1.0)

    await rig.breakers.record("a", False)
    rig.clock.now += 30  # half-open
    with pytest.raises(UpstreamError):
        await rig.balancer.chat([m("a", admit=full)], CALL, rig.deadline(0.5))
    assert calls == [1] and await rig.breakers.check("a", 5) == "probe"  # released, free again


# --- retries and the deadline ---------------------------------------------------------------

async def test_rounds_back_off_with_capped_full_jitter_then_succeed() -> None:
    rig = Rig(policy=RetryPolicy(max_attempts=4, base_delay=0.5, max_delay=1.0), failures=10)
    a = m("a", backend=Scripted("a", [err("unavailable")] * 3))
    assert await rig.chat([a]) == "a"
    assert a.backend.calls == 4 and rig.balancer.stats.retries == 3
    caps = [0.5, 1.0, 1.0]  # 0.5 * 2**(round-1), capped at max_delay
    assert len(rig.clock.slept) == 3 and all(0 <= s <= c for s, c in zip(rig.clock.slept, caps))


async def test_retries_never_pass_the_deadline() -> None:
    rig = Rig(policy=RetryPolicy(max_attempts=100, base_delay=1.0, max_delay=1.0), failures=1000)
    members = [m("a", backend=Scripted("a", [err("unavailable")] * 1000)),
               m("b", backend=Scripted("b", [err("timeout")] * 1000))]
    deadline = rig.deadline(5.0)
    with pytest.raises(UpstreamError) as info:
        await rig.balancer.chat(members, CALL, deadline)
    assert info.value.kind in ("unavailable", "timeout")
    assert rig.clock.now < deadline and sum(rig.clock.slept) < 5.0
    assert 2 < rig.balancer.stats.attempts < 200 and rig.balancer.stats.retries == len(rig.clock.slept)


async def test_retry_after_is_honoured_between_rounds() -> None:
    rig = Rig(policy=RetryPolicy(max_attempts=2, base_delay=0.01))
    members = [m("a", backend=Scripted("a", [err("rate_limited", 2.0)])),
               m("b", backend=Scripted("b", [err("rate_limited", 5.0)]))]
    assert await rig.chat(members) == "a"  # a's breaker half-opened after its 2 s: the probe answers
    assert rig.clock.slept == [2.0]


async def test_a_retry_after_beyond_the_budget_stops_at_once_with_the_smallest() -> None:
    rig = Rig()
    members = [m("a", backend=Scripted("a", [err("rate_limited", 9.0)])),
               m("b", backend=Scripted("b", [err("rate_limited", 7.0)]))]
    with pytest.raises(UpstreamError) as info:
        await rig.balancer.chat(members, CALL, rig.deadline(5.0))
    assert (info.value.kind, info.value.retry_after) == ("rate_limited", 7.0)
    assert rig.clock.slept == []


async def test_mixed_failures_raise_the_last_one() -> None:
    rig = Rig(policy=RetryPolicy(max_attempts=1))
    members = [m("a", backend=Scripted("a", [err("rate_limited", 1.0)])),
               m("b", priority=2, backend=Scripted("b", [err("unreachable")]))]
    with pytest.raises(UpstreamError) as info:
        await rig.chat(members)
    assert info.value.kind == "unreachable"


async def test_no_members_and_no_time() -> None:
    rig = Rig()
    with pytest.raises(UpstreamError) as info:
        await rig.chat([])
    assert info.value.kind == "unavailable"
    with pytest.raises(UpstreamError) as info:
        await rig.balancer.chat([m("a")], CALL, rig.clock.now)
    assert info.value.kind == "timeout" and rig.balancer.stats.attempts == 0
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError):
        m("x", weight=-1)


async def test_embeddings_fail_over_too() -> None:
    rig = Rig()
    rig.faults.replace([FaultSpec("region", "westus", rate_429=1.0, retry_after_s=3)])
    vectors, member = await rig.balancer.embed([m("w", region="westus"), m("e", priority=2)], EMBED,
                                               rig.deadline())
    assert member.key == "e" and vectors == [[1.0, 0.0, 0.0, 0.0]]


# --- streams ----------------------------------------------------------------------------------

async def collect(stream: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in stream]


async def test_stream_fails_over_before_the_first_item() -> None:
    rig = Rig()
    rig.faults.replace([FaultSpec("member", "a", rate_503=1.0)])
    stream, member = await rig.balancer.chat_stream([m("a"), m("b", priority=2)], CALL, rig.deadline())
    assert member.key == "b"
    assert [d.content for d in await collect(stream)] == ["b0", "b1", "b2"]


async def test_stream_cut_before_its_first_item_fails_over() -> None:
    rig = Rig()
    rig.faults.replace([FaultSpec("member", "a", cut_after=0)])
    stream, member = await rig.balancer.chat_stream([m("a"), m("b", priority=2)], CALL, rig.deadline())
    assert member.key == "b" and len(await collect(stream)) == 3


async def test_no_replay_after_the_first_streamed_item() -> None:
    rig = Rig(failures=1)
    rig.faults.replace([FaultSpec("member", "a", cut_after=2)])
    b = m("b", priority=2)
    stream, member = await rig.balancer.chat_stream([m("a"), b], CALL, rig.deadline())
    assert member.key == "a"
    received = []
    with pytest.raises(UpstreamError) as info:
        async for item in stream:
            received.append(item.content)
    assert received == ["a0", "a1"] and info.value.kind == "unreachable"
    assert b.backend.calls == 0  # never replayed elsewhere
    assert rig.breakers.state("a") == OPEN  # but the member is blamed


async def test_a_stream_hanging_before_its_first_item_fails_over() -> None:
    rig = Rig(policy=RetryPolicy(attempt_timeout_s=0.05))
    rig.faults.replace([FaultSpec("member", "a", hang=True)])
    stream, member = await rig.balancer.chat_stream([m("a"), m("b", priority=2)], CALL, rig.deadline())
    assert member.key == "b" and len(await collect(stream)) == 3


async def test_closing_the_stream_closes_the_engine_generator() -> None:
    rig = Rig()
    sim = SimulatorBackend()
    stream, _ = await rig.balancer.chat_stream([m("sim", backend=sim)], CALL, rig.deadline())
    first = await anext(stream)
    assert isinstance(first, Delta) and sim.stats.active_streams == 1
    await stream.aclose()  # type: ignore[attr-defined]
    assert sim.stats.active_streams == 0 and sim.stats.streams_cancelled == 1


async def test_an_empty_stream_is_malformed() -> None:
    rig = Rig()
    with pytest.raises(UpstreamError) as info:
        await rig.balancer.chat_stream([m("a", backend=Scripted("a", items=0))], CALL, rig.deadline())
    assert info.value.kind == "malformed"


async def test_cancelling_a_caller_propagates() -> None:
    rig = Rig()
    rig.faults.replace([FaultSpec("member", "a", hang=True)])
    task = asyncio.ensure_future(rig.chat([m("a")]))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert rig.balancer.stats.failures == {}  # a client leaving is nobody's failure
