"""Circuit breakers shared through the real Redis on 127.0.0.1:6379, seen by several replicas.

Each board is a replica (its own connection and cache) over one key prefix,
unique per test and deleted afterwards. Time is a fake clock shared by the
replicas: the script takes its now from it (the test-only clock of
lapis.serving.breaker_redis) and so does each replica's cache, so opening,
half-opening and cache expiry are exact and nothing waits. If Redis is down
these tests fail (the fixture's ping raises); they never skip.
"""

from __future__ import annotations

import asyncio
import random
import uuid

import pytest
import redis.asyncio as aioredis

from lapis.backends.base import ChatCall
from lapis.backends.simulator import SimulatorBackend
from lapis.serving.balancer import Balancer, Member
from lapis.serving.breaker import CLOSED, HALF_OPEN, OPEN, PROBE, BreakerPolicy
from lapis.serving.breaker_redis import RedisBreakerBoard
from lapis.serving.faults import FaultBoard
from lapis.serving.specs import FaultSpec

REDIS_URL = "redis://127.0.0.1:6379"
KEY = "member:pool1/westus"
POLICY = BreakerPolicy(failures=3, open_s=30.0)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


class Replicas:
    def __init__(self) -> None:
        self.clock = FakeClock()
        self.prefix = f"lapis:test:cb:{uuid.uuid4().hex}:"
        self.boards: list[RedisBreakerBoard] = []

    def board(self, url: str = REDIS_URL) -> RedisBreakerBoard:
        board = RedisBreakerBoard(url, POLICY, prefix=self.prefix, clock=self.clock)
        self.boards.append(board)
        return board

    async def cleanup(self) -> None:
        for board in self.boards:
            await board.close()
        client = aioredis.from_url(REDIS_URL)
        keys = [k async for k in client.scan_iter(match=self.prefix + "*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


@pytest.fixture()
async def rs() -> Replicas:
    client = aioredis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        await client.ping()
    except aioredis.ConnectionError as exc:  # fail loudly, never skip
        raise AssertionError(f"these tests need Redis on {REDIS_URL} (.ci/run starts it)") from exc
    finally:
        await client.aclose()
    replicas = Replicas()
    yield replicas
    await replicas.cleanup()


async def fail(board: RedisBreakerBoard, times: int, key: str = KEY) -> None:
    for _ in range(times):
        await board.record(key, False)


async def test_lifecycle_across_replicas(rs: Replicas) -> None:
    r1, r2 = rs.board(), rs.board()
    await fail(r1, 2)
    assert await r2.check(KEY, 10) == CLOSED
    await fail(r1, 1)
    assert r1.state(KEY) == OPEN and r1.transitions["opened"] == 1
    rs.clock.now += 1  # r2's cached "closed" is over
    assert await r2.check(KEY, 10) == OPEN
    rs.clock.now += 29  # 30 s after opening: half-open
    assert await r2.check(KEY, 10) == PROBE and r2.state(KEY) == HALF_OPEN
    assert await r1.check(KEY, 10) == OPEN  # one probe across replicas
    assert await r2.check(KEY, 10) == OPEN  # and within its own replica
    await r2.record(KEY, True)
    assert await r2.check(KEY, 10) == CLOSED
    rs.clock.now += 1
    assert await r1.check(KEY, 10) == CLOSED
    assert r2.transitions == {"opened": 0, "half_opened": 1, "closed": 1}
    assert r1.failures == 0 and r2.failures == 0  # Redis answered every time


async def test_a_failed_probe_opens_again_for_everyone(rs: Replicas) -> None:
    r1, r2 = rs.board(), rs.board()
    await fail(r1, 3)
    rs.clock.now += 30
    assert await r1.check(KEY, 10) == PROBE
    await r1.record(KEY, False)
    rs.clock.now += 29.5
    assert await r2.check(KEY, 10) == OPEN
    rs.clock.now += 0.5
    assert await r2.check(KEY, 10) == PROBE
    assert r1.transitions["opened"] == 2


async def test_retry_after_opens_for_that_long_everywhere(rs: Replicas) -> None:
    r1, r2 = rs.board(), rs.board()
    await r1.record(KEY, False, retry_after=7.0)
    rs.clock.now += 6.5
    assert await r2.check(KEY, 10) == OPEN
    await r2.record(KEY, False, retry_after=0.25)  # would end earlier: does not shorten
    rs.clock.now += 0.375
    assert await r1.check(KEY, 10) == OPEN
    rs.clock.now += 0.125
    assert await r1.check(KEY, 10) == PROBE


async def test_closed_is_cached_for_up_to_a_second(rs: Replicas) -> None:
    r1, r2 = rs.board(), rs.board()
    assert await r2.check(KEY, 10) == CLOSED
    await fail(r1, 3)
    rs.clock.now += 0.5
    assert await r2.check(KEY, 10) == CLOSED  # the documented staleness
    rs.clock.now += 0.5
    assert await r2.check(KEY, 10) == OPEN


async def test_healthy_only_on_a_fresh_closed_answer_with_no_failures(rs: Replicas) -> None:
    r1, r2 = rs.board(), rs.board()
    assert not r2.healthy(KEY)  # nothing learnt yet: ask Redis
    assert await r2.check(KEY, 10) == CLOSED and r2.healthy(KEY)
    await fail(r2, 1)
    assert not r2.healthy(KEY)  # a failure counted here: a success must clear it
    await r2.record(KEY, True)
    assert r2.healthy(KEY)
    await fail(r1, 3)  # r1 opens it for everyone
    assert r2.healthy(KEY)  # r2's "closed" is still fresh (the documented staleness)
    rs.clock.now += 1
    assert not r2.healthy(KEY) and await r2.check(KEY, 10) == OPEN and not r2.healthy(KEY)
    down = rs.board("redis://127.0.0.1:1")
    await fail(down, 3)  # Redis unreachable: the local board answers
    assert down.failures >= 1 and not down.healthy(KEY) and down.healthy("member:pool1/other")


async def test_the_probe_lease_ends_and_release_frees_it(rs: Replicas) -> None:
    r1, r2 = rs.board(), rs.board()
    await fail(r1, 3)
    rs.clock.now += 30
    assert await r1.check(KEY, 5) == PROBE  # and r1 vanishes with it
    rs.clock.now += 4.5
    assert await r2.check(KEY, 5) == OPEN
    rs.clock.now += 0.5
    assert await r2.check(KEY, 5) == PROBE
    await r2.release(KEY)
    assert await r1.check(KEY, 5) == PROBE


async def test_concurrent_checks_grant_exactly_one_probe(rs: Replicas) -> None:
    r1, r2, r3 = rs.board(), rs.board(), rs.board()
    await fail(r1, 3)
    rs.clock.now += 30
    states = await asyncio.gather(*(b.check(KEY, 10) for b in (r1, r2, r3) for _ in range(10)))
    assert states.count(PROBE) == 1 and states.count(OPEN) == 29


async def test_an_unreachable_redis_leaves_per_replica_breakers(rs: Replicas) -> None:
    board = rs.board("redis://127.0.0.1:1")  # nothing listens there: connection refused
    assert await board.check(KEY, 10) == CLOSED
    await fail(board, 3)
    assert await board.check(KEY, 10) == OPEN and board.failures >= 1
    rs.clock.now += 30
    assert await board.check(KEY, 10) == PROBE


async def test_balancers_on_two_replicas_share_what_they_learn(rs: Replicas) -> None:
    call = ChatCall(model="gpt-4o-mini", version="2024-07-18", max_tokens=10,
                    messages=[{"role": "user", "content": "hi"}])
    sim_a, sim_b = SimulatorBackend(), SimulatorBackend()
    members = [Member(KEY, "a", "westus", sim_a), Member("member:pool1/eastus", "b", "eastus", sim_b, priority=2)]
    broken = FaultBoard(rng=random.Random(1))
    broken.replace([FaultSpec("region", "westus", down=True)])  # only replica 1 sees westus down
    one = Balancer(rs.board(), broken, rng=random.Random(1), clock=rs.clock, sleep=rs.clock.sleep)
    two = Balancer(rs.board(), FaultBoard(), rng=random.Random(2), clock=rs.clock, sleep=rs.clock.sleep)
    for _ in range(3):
        _, served = await one.chat(members, call, rs.clock.now + 60)
        assert served.name == "b"
    assert one.stats.breaker["opened"] == 1
    _, served = await two.chat(members, call, rs.clock.now + 60)
    assert served.name == "b" and two.stats.skipped_open == 1  # replica 2 never called westus
    assert sim_a.stats.tokens_generated == 0
    rs.clock.now += 30
    _, served = await two.chat(members, call, rs.clock.now + 60)
    assert served.name == "a" and two.stats.breaker == {"opened": 0, "half_opened": 1, "closed": 1}


async def test_reset_forgets_shared_breakers_everywhere() -> None:
    """`lapis fault reset` resets breakers: on every replica, through Redis."""
    prefix = f"lapis:test:cb:{uuid.uuid4().hex}:"
    one = RedisBreakerBoard(REDIS_URL, BreakerPolicy(failures=1, open_s=60), prefix=prefix, cache_s=0)
    two = RedisBreakerBoard(REDIS_URL, BreakerPolicy(failures=1, open_s=60), prefix=prefix, cache_s=0)
    try:
        await one.record("m", ok=False)
        assert await two.check("m", 1.0) == "open"
        await one.reset()
        assert await two.check("m", 1.0) == "closed"
    finally:
        await one.close()
        await two.close()
