"""The in-process circuit breaker: open, half-open with one probe, close; retry-after; leases.

Time is a fake clock the board reads, moved by the tests (no waiting). The
same rules run against Redis, across replicas, in
tests/integration/test_breaker_redis.py.
"""

from __future__ import annotations

import pytest

from lapis.serving.breaker import (CLOSED, HALF_OPEN, OPEN, PROBE, BreakerPolicy, MemoryBreakerBoard,
                                   open_breakers)

KEY = "backend:vllm-1"


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture()
def board(clock: FakeClock) -> MemoryBreakerBoard:
    return MemoryBreakerBoard(BreakerPolicy(failures=3, open_s=30.0), clock)


async def fail(board: MemoryBreakerBoard, times: int, key: str = KEY) -> None:
    for _ in range(times):
        await board.record(key, False)


async def test_opens_after_n_consecutive_failures(board: MemoryBreakerBoard) -> None:
    await fail(board, 2)
    assert await board.check(KEY, 10) == CLOSED
    await fail(board, 1)
    assert await board.check(KEY, 10) == OPEN
    assert board.state(KEY) == OPEN
    assert board.transitions == {"opened": 1, "half_opened": 0, "closed": 0}
    assert await board.check("backend:other", 10) == CLOSED  # per member


async def test_a_success_resets_the_count(board: MemoryBreakerBoard) -> None:
    await fail(board, 2)
    await board.record(KEY, True)
    await fail(board, 2)
    assert await board.check(KEY, 10) == CLOSED
    await fail(board, 1)
    assert await board.check(KEY, 10) == OPEN


async def test_lifecycle_open_half_open_close(board: MemoryBreakerBoard, clock: FakeClock) -> None:
    await fail(board, 3)
    clock.now += 29.5
    assert await board.check(KEY, 10) == OPEN
    clock.now += 0.5
    assert board.state(KEY) == HALF_OPEN
    assert await board.check(KEY, 10) == PROBE  # the one probe
    assert await board.check(KEY, 10) == OPEN  # everyone else waits for it
    assert board.transitions["half_opened"] == 1
    await board.record(KEY, True)
    assert board.state(KEY) == CLOSED
    assert await board.check(KEY, 10) == CLOSED
    assert board.transitions == {"opened": 1, "half_opened": 1, "closed": 1}
    await fail(board, 2)  # the count starts again from zero
    assert await board.check(KEY, 10) == CLOSED


async def test_a_failed_probe_opens_again_for_the_full_time(board: MemoryBreakerBoard, clock: FakeClock) -> None:
    await fail(board, 3)
    clock.now += 30
    assert await board.check(KEY, 10) == PROBE
    await board.record(KEY, False)  # one failure is enough in half-open
    assert board.state(KEY) == OPEN
    clock.now += 29
    assert await board.check(KEY, 10) == OPEN
    clock.now += 1
    assert await board.check(KEY, 10) == PROBE
    assert board.transitions == {"opened": 2, "half_opened": 2, "closed": 0}


async def test_the_probe_lease_ends_and_release_frees_it(board: MemoryBreakerBoard, clock: FakeClock) -> None:
    await fail(board, 3)
    clock.now += 30
    assert await board.check(KEY, 5) == PROBE
    clock.now += 4.5
    assert await board.check(KEY, 5) == OPEN
    clock.now += 0.5  # the prober vanished: its lease is over
    assert await board.check(KEY, 5) == PROBE
    await board.release(KEY)  # not used after all
    assert await board.check(KEY, 5) == PROBE


async def test_retry_after_opens_at_once_for_that_long(board: MemoryBreakerBoard, clock: FakeClock) -> None:
    await board.record(KEY, False, retry_after=7.0)
    assert await board.check(KEY, 10) == OPEN
    clock.now += 6.5
    assert await board.check(KEY, 10) == OPEN
    clock.now += 0.5
    assert await board.check(KEY, 10) == PROBE
    await board.record(KEY, False, retry_after=2.0)  # the probe got a 429 too: its retry-after decides
    clock.now += 1.5
    assert await board.check(KEY, 10) == OPEN
    clock.now += 0.5
    assert await board.check(KEY, 10) == PROBE


async def test_retry_after_only_lengthens_an_open_breaker(board: MemoryBreakerBoard, clock: FakeClock) -> None:
    await board.record(KEY, False, retry_after=10.0)
    await board.record(KEY, False, retry_after=2.0)  # shorter: ignored
    await board.record(KEY, False)  # a late plain failure: ignored while open
    clock.now += 9.5
    assert await board.check(KEY, 10) == OPEN
    await board.record(KEY, False, retry_after=20.0)  # longer: extends
    clock.now += 19.5
    assert await board.check(KEY, 10) == OPEN
    clock.now += 0.5
    assert await board.check(KEY, 10) == PROBE
    assert board.transitions["opened"] == 1


async def test_a_success_while_open_is_ignored(board: MemoryBreakerBoard, clock: FakeClock) -> None:
    await fail(board, 3)
    await board.record(KEY, True)  # a request that began before the breaker opened
    assert await board.check(KEY, 10) == OPEN
    assert board.transitions["closed"] == 0


async def test_zero_retry_after_counts_as_a_plain_failure(board: MemoryBreakerBoard) -> None:
    await board.record(KEY, False, retry_after=0.0)
    assert await board.check(KEY, 10) == CLOSED


def test_healthy_members_leave_no_state(board: MemoryBreakerBoard) -> None:
    assert board._breakers == {}  # noqa: SLF001 - the hot path is one dict lookup on an empty dict


async def test_healthy_members_are_forgotten_after_success(board: MemoryBreakerBoard) -> None:
    await fail(board, 1)
    await board.record(KEY, True)
    assert board._breakers == {}  # noqa: SLF001


async def test_healthy_means_closed_with_no_failure_counted(board: MemoryBreakerBoard, clock: FakeClock) -> None:
    """The balancer's shortcut: healthy() is True exactly when check() says closed and a
    success would change nothing."""
    assert board.healthy(KEY)
    await fail(board, 1)
    assert not board.healthy(KEY) and await board.check(KEY, 10) == CLOSED  # closed, but a failure to forget
    await board.record(KEY, True)
    assert board.healthy(KEY)
    await fail(board, 3)
    assert not board.healthy(KEY)
    clock.now += 30
    assert await board.check(KEY, 10) == PROBE and not board.healthy(KEY)
    await board.record(KEY, True)
    assert board.healthy(KEY) and board.healthy("backend:other")


def test_open_breakers_by_url() -> None:
    assert isinstance(open_breakers(None), MemoryBreakerBoard)
    assert isinstance(open_breakers("memory://"), MemoryBreakerBoard)
    assert type(open_breakers("redis://127.0.0.1:6379")).__name__ == "RedisBreakerBoard"
    with pytest.raises(ValueError, match="unsupported"):
        open_breakers("mongodb://x")
    with pytest.raises(ValueError):
        BreakerPolicy(failures=0)


async def test_reset_closes_every_breaker() -> None:
    board = MemoryBreakerBoard(BreakerPolicy(failures=1, open_s=60))
    await board.record("a", ok=False)
    assert board.state("a") == "open"
    await board.reset()
    assert board.state("a") == "closed" and await board.check("a", 1.0) == "closed"
