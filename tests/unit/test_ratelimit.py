"""The limiter suite: every semantic test runs against MemoryLimiter and RedisLimiter.

Time is a FakeClock shared by all limiters of a test: MemoryLimiter takes it
as its clock and RedisLimiter passes it to the script as the test-only now_ms
(see lapis/ratelimit/redis.py), so window tests move time instead of waiting.
The fake clock starts on a second boundary, which makes every figure exact.

Redis tests use the real server on 127.0.0.1:6379 under a unique key prefix,
deleted afterwards. If Redis is down they fail (the ping in the fixture
raises); they never skip.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from dataclasses import replace

import pytest
import redis.asyncio as aioredis

import lapis.ratelimit.redis as redis_module
from lapis.ratelimit import Decision, Limiter, Limits, MemoryLimiter, RedisLimiter, open_limiter

REDIS_URL = "redis://127.0.0.1:6379"
T0 = 1_700_000_000.0  # a second boundary, in the epoch range Redis TIME returns
TPM = Limits(tokens=100, requests=1000)  # tokens bind
RPM = Limits(tokens=1_000_000, requests=3)  # requests bind


class FakeClock:
    def __init__(self, start: float = T0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Harness:
    """Makes limiters of one backend that share a clock and a key space; cleans up."""

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.clock = FakeClock()
        self.prefix = f"lapis:test:{uuid.uuid4().hex}:"
        self._made: list[Limiter] = []
        self._memory: MemoryLimiter | None = None

    def limiter(self, *, real_clock: bool = False) -> Limiter:
        """A limiter over the shared state (Redis: a new client, i.e. a new replica)."""
        if self.backend == "memory":
            if self._memory is None:
                self._memory = MemoryLimiter(clock=self.clock)
                self._made.append(self._memory)
            return self._memory
        lim = RedisLimiter(REDIS_URL, prefix=self.prefix,
                           clock=None if real_clock else self.clock)
        self._made.append(lim)
        return lim

    async def cleanup(self) -> None:
        for lim in self._made:
            await lim.close()
        if self.backend == "redis":
            client = aioredis.from_url(REDIS_URL)
            keys = [k async for k in client.scan_iter(match=self.prefix + "*")]
            if keys:
                await client.delete(*keys)
            await client.aclose()


async def _redis_must_be_up() -> None:
    client = aioredis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        await client.ping()
    except aioredis.ConnectionError as exc:  # fail loudly, never skip
        raise AssertionError(f"these tests need Redis on {REDIS_URL} (.ci/run starts it)") from exc
    finally:
        await client.aclose()


@pytest.fixture(params=["memory", "redis"])
async def h(request: pytest.FixtureRequest) -> Harness:
    if request.param == "redis":
        await _redis_must_be_up()
    harness = Harness(request.param)
    yield harness
    await harness.cleanup()


@pytest.fixture()
async def rh() -> Harness:
    await _redis_must_be_up()
    harness = Harness("redis")
    yield harness
    await harness.cleanup()


# --- admission and denial -------------------------------------------------------------

async def test_admits_up_to_the_token_limit_then_denies(h: Harness) -> None:
    lim = h.limiter()
    for left in (70, 40, 10):
        d = await lim.admit("dep", TPM, 30)
        assert d.allowed and d.limited_by is None and d.retry_after_ms == 0
        assert d.remaining_tokens == left and d.ticket
    d = await lim.admit("dep", TPM, 30)
    assert not d.allowed and d.limited_by == "tokens"
    assert d.remaining_tokens == 10 and d.remaining_requests == 997
    assert d.retry_after_ms == 61_000  # the charges' bucket leaves the 61-bucket span
    h.clock.advance(0.5)
    assert (await lim.admit("dep", TPM, 30)).retry_after_ms == 60_500
    assert (await lim.admit("dep", TPM, 10)).allowed  # exactly fills the limit


async def test_request_limit_denies_with_requests(h: Harness) -> None:
    lim = h.limiter()
    assert [(await lim.admit("dep", RPM, 5)).remaining_requests for _ in range(3)] == [2, 1, 0]
    d = await lim.admit("dep", RPM, 5)
    assert (d.allowed, d.limited_by, d.retry_after_ms) == (False, "requests", 11_000)
    assert d.remaining_tokens == 1_000_000 - 15


async def test_denial_charges_nothing(h: Harness) -> None:
    lim = h.limiter()
    await lim.admit("dep", TPM, 80)
    for _ in range(5):
        assert not (await lim.admit("dep", TPM, 30)).allowed
    d = await lim.admit("dep", TPM, 20)
    assert d.allowed and d.remaining_tokens == 0 and d.remaining_requests == 1000 - 2


async def test_cost_above_the_limit_is_always_denied(h: Harness) -> None:
    lim = h.limiter()
    for _ in range(2):
        d = await lim.admit("dep", TPM, 101)
        assert (d.allowed, d.limited_by, d.retry_after_ms) == (False, "tokens", 60_000)
        assert d.remaining_tokens == 100
        h.clock.advance(120)


async def test_limited_by_names_the_longer_wait(h: Harness) -> None:
    lim, both = h.limiter(), Limits(tokens=100, requests=1)
    await lim.admit("dep", both, 100)
    h.clock.advance(5)
    d = await lim.admit("dep", both, 1)  # both full: tokens free in 56 s, requests in 6 s
    assert (d.limited_by, d.retry_after_ms) == ("tokens", 56_000)
    h.clock.advance(6)
    d = await lim.admit("dep", both, 1)
    assert (d.limited_by, d.retry_after_ms) == ("tokens", 50_000)


# --- rolling windows ------------------------------------------------------------------

async def test_charges_leave_after_the_window(h: Harness) -> None:
    lim = h.limiter()
    await lim.admit("dep", TPM, 60)
    h.clock.advance(30)
    await lim.admit("dep", TPM, 40)
    d = await lim.admit("dep", TPM, 40)
    assert not d.allowed and d.retry_after_ms == 31_000
    h.clock.advance(30.999)  # 60.999 s after the first charge: still inside the span
    assert (await lim.admit("dep", TPM, 40)).retry_after_ms == 1
    h.clock.advance(0.001)
    d = await lim.admit("dep", TPM, 40)
    assert d.allowed and d.remaining_tokens == 20


async def test_partial_expiry_frees_partial_room(h: Harness) -> None:
    lim = h.limiter()
    for _ in range(3):
        await lim.admit("dep", TPM, 30)
        h.clock.advance(10)
    h.clock.advance(-10)  # now T0 + 20; buckets hold 30 at T0, T0+10, T0+20
    d = await lim.admit("dep", TPM, 50)  # needs the two oldest buckets gone
    assert not d.allowed and d.retry_after_ms == 51_000 and d.reset_tokens_ms == 41_000
    h.clock.advance(41)  # the T0 bucket has left: 40 free
    d = await lim.admit("dep", TPM, 50)
    assert not d.allowed and d.retry_after_ms == 10_000
    d = await lim.admit("dep", TPM, 40)
    assert d.allowed and d.remaining_tokens == 0


async def test_request_window_is_ten_seconds_and_separate(h: Harness) -> None:
    lim, limits = h.limiter(), Limits(tokens=100, requests=2)
    await lim.admit("dep", limits, 25)
    await lim.admit("dep", limits, 25)
    d = await lim.admit("dep", limits, 25)
    assert (d.limited_by, d.retry_after_ms, d.reset_requests_ms) == ("requests", 11_000, 11_000)
    h.clock.advance(11)  # requests free again; tokens still counted for 61 s
    d = await lim.admit("dep", limits, 50)
    assert d.allowed and d.remaining_requests == 1 and d.remaining_tokens == 0
    h.clock.advance(11)
    d = await lim.admit("dep", limits, 1)
    assert (d.limited_by, d.retry_after_ms) == ("tokens", 39_000)
    assert d.remaining_requests == 2


# --- refunds, peek, headers -----------------------------------------------------------

async def test_refund_restores_room(h: Harness) -> None:
    lim = h.limiter()
    first = await lim.admit("dep", TPM, 80)
    assert not (await lim.admit("dep", TPM, 30)).allowed
    await lim.refund("dep", TPM, first.ticket, 50)  # the response used 30 of 80
    d = await lim.admit("dep", TPM, 30)
    assert d.allowed and d.remaining_tokens == 40
    await lim.refund("dep", TPM, d.ticket, 10_000)  # capped at that admission's cost
    assert (await lim.peek("dep", TPM)).remaining_tokens == 70
    await lim.refund("dep", TPM, "not-a-ticket", 5)  # ignored, never raises
    await lim.refund("nobody", TPM, first.ticket, 5)
    assert (await lim.peek("dep", TPM)).remaining_tokens == 70


async def test_refund_of_an_expired_bucket_is_a_no_op(h: Harness) -> None:
    lim = h.limiter()
    old = await lim.admit("dep", TPM, 60)
    h.clock.advance(30)
    await lim.admit("dep", TPM, 40)
    h.clock.advance(31)  # the first charge has left the window
    await lim.refund("dep", TPM, old.ticket, 60)
    assert (await lim.peek("dep", TPM)).remaining_tokens == 60


async def test_peek_charges_nothing(h: Harness) -> None:
    lim = h.limiter()
    fresh = await lim.peek("dep", TPM)
    assert fresh == Decision(True, 100, 1000, 0, None, 0, 0)
    await lim.admit("dep", TPM, 30)
    h.clock.advance(2.5)
    for _ in range(3):
        d = await lim.peek("dep", TPM)
        assert (d.remaining_tokens, d.remaining_requests, d.ticket) == (70, 999, "")
        assert (d.reset_tokens_ms, d.reset_requests_ms) == (58_500, 8_500)


async def test_zero_request_quota_never_admits(h: Harness) -> None:
    d = await h.limiter().admit("dep", Limits(tokens=100, requests=0), 1)
    assert (d.allowed, d.limited_by, d.retry_after_ms) == (False, "requests", 10_000)


# --- concurrency ----------------------------------------------------------------------

async def test_concurrent_admissions_never_exceed_the_limit(h: Harness) -> None:
    lim, limits = h.limiter(), Limits(tokens=1000, requests=100_000)
    results = await asyncio.gather(*(lim.admit("dep", limits, 7) for _ in range(200)))
    assert sum(7 for d in results if d.allowed) == 1000 // 7 * 7
    results = await asyncio.gather(*(lim.admit("rpm", RPM, 1) for _ in range(200)))
    assert sum(d.allowed for d in results) == 3


async def test_two_replicas_sharing_redis_never_exceed_the_limit(rh: Harness) -> None:
    a, b = rh.limiter(real_clock=True), rh.limiter(real_clock=True)  # Redis TIME
    limits = Limits(tokens=1000, requests=100_000)
    results = await asyncio.gather(*((a if i % 2 else b).admit("dep", limits, 7)
                                     for i in range(200)))
    granted = [d for d in results if d.allowed]
    assert len(granted) == 1000 // 7
    denied = [d for d in results if not d.allowed]
    assert all(59_000 < d.retry_after_ms <= 61_000 for d in denied)
    assert (await a.peek("dep", limits)).remaining_tokens == 1000 - 7 * len(granted)


# --- backends agree -------------------------------------------------------------------

async def test_memory_and_redis_decide_identically(rh: Harness) -> None:
    memory, redis_lim = MemoryLimiter(clock=rh.clock), rh.limiter()
    rng, tickets = random.Random(7), []
    limits = [Limits(tokens=500, requests=8), Limits(tokens=90, requests=3, token_window_s=5,
                                                     request_window_s=2)]
    for _ in range(400):
        key, lim = rng.choice([("a", limits[0]), ("b", limits[1])])
        op = rng.random()
        if op < 0.6:
            cost = rng.choice([0, 1, 20, 60, 120, 600])
            got = [await x.admit(key, lim, cost) for x in (memory, redis_lim)]
            if got[0].allowed:
                tickets.append((key, lim, got[0].ticket))
        elif op < 0.75 and tickets:
            key, lim, ticket = rng.choice(tickets)
            amount = rng.randint(1, 80)
            for x in (memory, redis_lim):
                await x.refund(key, lim, ticket, amount)
            continue
        else:
            got = [await x.peek(key, lim) for x in (memory, redis_lim)]
        assert got[0] == got[1]
        rh.clock.advance(rng.choice([0, 0, 0.2, 0.9, 1.5, 4, 13]))


# --- Redis specifics ------------------------------------------------------------------

async def test_redis_layout_ttl_and_stale_fields(rh: Harness) -> None:
    lim, client = rh.limiter(), aioredis.from_url(REDIS_URL, decode_responses=True)
    try:
        await lim.admit("dep", TPM, 30)
        t_key, r_key = rh.prefix + "dep:t", rh.prefix + "dep:r"
        assert await client.hgetall(t_key) == {str(int(T0)): "30"}
        assert await client.hgetall(r_key) == {str(int(T0)): "1"}
        assert 0 < await client.pttl(t_key) <= 62_000 and 0 < await client.pttl(r_key) <= 12_000
        rh.clock.advance(70)
        await lim.admit("dep", TPM, 5)
        assert await client.hgetall(t_key) == {str(int(T0) + 70): "5"}
    finally:
        await client.aclose()


async def test_redis_falls_back_to_eval_on_noscript(rh: Harness,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redis_module, "_SHA", "0" * 40)  # a script Redis has never seen
    lim = rh.limiter()
    assert (await lim.admit("dep", TPM, 30)).remaining_tokens == 70
    assert lim.failures == 0


@pytest.mark.parametrize("mode", ["open", "closed"])
async def test_unreachable_redis_degrades_quickly(mode: str,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    lim = open_limiter("redis://127.0.0.1:1", failure_mode=mode)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="lapis.ratelimit"):
        decisions = [await lim.admit("dep", TPM, 30) for _ in range(20)]
        decisions.append(await lim.peek("dep", TPM))
        await lim.refund("dep", TPM, "1:30", 30)
    assert time.monotonic() - started < 1.0
    assert all(d.degraded for d in decisions)
    if mode == "open":
        assert all(d.allowed and d.retry_after_ms == 0 for d in decisions)
    else:
        assert all(not d.allowed and d.retry_after_ms == 1000 for d in decisions)
    assert lim.failures == 22
    assert len(caplog.records) == 1  # rate-limited logging, not one line per request
    await lim.close()


async def test_a_redis_that_never_answers_does_not_hang() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accept, never reply
    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    lim = RedisLimiter(f"redis://127.0.0.1:{port}", failure_mode="closed")
    started = time.monotonic()
    d = await lim.admit("dep", TPM, 30)
    assert time.monotonic() - started < 1.0
    assert d.degraded and not d.allowed and lim.failures == 1
    await lim.close()
    server.close()


# --- memory specifics and the factory -------------------------------------------------

async def test_memory_drops_idle_keys() -> None:
    clock = FakeClock()
    lim = MemoryLimiter(clock=clock, sweep_interval_s=1)
    for i in range(50):
        await lim.admit(f"dep{i}", TPM, 10)
    assert len(lim) == 50
    clock.advance(121)  # more than two 60-second windows
    await lim.admit("busy", TPM, 10)
    assert len(lim) == 1


def test_open_limiter_chooses_by_url() -> None:
    for url in (None, "", "memory://"):
        assert isinstance(open_limiter(url), MemoryLimiter)
    redis_lim = open_limiter("redis://127.0.0.1:6379/0", failure_mode="closed")
    assert isinstance(redis_lim, RedisLimiter) and redis_lim.failure_mode == "closed"
    with pytest.raises(ValueError):
        open_limiter("sqlite:///x")
    with pytest.raises(ValueError):
        RedisLimiter(REDIS_URL, failure_mode="maybe")  # type: ignore[arg-type]


def test_limits_and_decisions_are_frozen_values() -> None:
    limits = Limits(tokens=1000, requests=6)
    assert (limits.token_window_s, limits.request_window_s) == (60, 10)
    assert replace(limits, tokens=2000).tokens == 2000
    with pytest.raises(AttributeError):
        limits.tokens = 1  # type: ignore[misc]


async def test_gate_refunds_an_in_process_limiter_at_once() -> None:
    """Gate.settle gives the unused estimate back without a task when the limiter is in-process."""
    from types import SimpleNamespace

    from lapis.dataplane.admission import Gate

    gate = Gate(MemoryLimiter())
    account = SimpleNamespace(id="acct")
    dep = SimpleNamespace(name="Dep", limits=Limits(tokens=1000, requests=100))
    ticket = await gate.reserve(account, dep, 600)  # type: ignore[arg-type]
    assert ticket.decision.allowed and ticket.decision.remaining_tokens == 400
    gate.settle(ticket, 100)  # 500 unused
    assert not gate._pending  # no task was needed
    after = await gate.limiter.peek("acct/dep", dep.limits)
    assert after.remaining_tokens == 900
