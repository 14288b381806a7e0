"""SharedTimer: asyncio.timeout's contract on one loop timer.

Deadlines here are short (20-50 ms) and real; the tests assert what happened
(TimeoutError or not, who was cancelled, what is left registered), never how
long it took.
"""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from lapis.serving.timer import SharedTimer


async def test_a_block_past_its_deadline_raises_timeout_error_and_is_forgotten() -> None:
    timer = SharedTimer()
    reached = []
    with pytest.raises(TimeoutError):
        with timer.timeout(0.02) as t:
            await asyncio.sleep(30)
            reached.append("after")
    assert t.expired() and reached == [] and timer.pending() == 0
    assert asyncio.current_task().cancelling() == 0  # our cancel was taken back
    await asyncio.sleep(0)  # and nothing is left pending on the task


async def test_a_block_that_ends_in_time_is_left_alone() -> None:
    timer = SharedTimer()
    with timer.timeout(5) as t:
        await asyncio.sleep(0.001)
        assert timer.pending() == 1
    assert not t.expired() and timer.pending() == 0
    await asyncio.sleep(0.03)  # the loop timer may still fire: it finds nothing to cancel
    assert asyncio.current_task().cancelling() == 0


async def test_a_cancel_from_outside_passes_through_as_cancelled_error() -> None:
    timer = SharedTimer()
    started = asyncio.Event()

    async def call() -> None:
        with timer.timeout(30):
            started.set()
            await asyncio.sleep(30)

    task = asyncio.create_task(call())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert timer.pending() == 0


async def test_a_deadline_and_a_cancel_from_outside_together_stay_a_cancel() -> None:
    timer = SharedTimer()
    started = asyncio.Event()

    async def call() -> None:
        with timer.timeout(0.02):
            started.set()
            try:
                await asyncio.sleep(30)
            finally:
                await asyncio.sleep(0.06)  # still inside when the deadline passes
                asyncio.current_task().cancel()  # someone else cancels as well

    task = asyncio.create_task(call())
    await started.wait()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_nesting_with_asyncio_timeout_each_claims_only_its_own() -> None:
    timer = SharedTimer()
    with pytest.raises(TimeoutError):  # the inner (asyncio's) one fires first
        with timer.timeout(30):
            async with asyncio.timeout(0.02):
                await asyncio.sleep(30)
    inner_fired = False
    with pytest.raises(TimeoutError):  # the outer (shared) one fires first
        async with asyncio.timeout(30) as outer:
            with timer.timeout(0.02) as mine:
                try:
                    await asyncio.sleep(30)
                except asyncio.CancelledError:
                    inner_fired = True
                    raise
    assert inner_fired and mine.expired() and not outer.expired()
    assert timer.pending() == 0


async def test_a_shorter_deadline_set_later_fires_first() -> None:
    timer = SharedTimer()
    long_started = asyncio.Event()

    async def long_call() -> str:
        with timer.timeout(30):
            long_started.set()
            await asyncio.sleep(30)
        return "finished"

    long_task = asyncio.create_task(long_call())
    await long_started.wait()
    with pytest.raises(TimeoutError):
        with timer.timeout(0.02):
            await asyncio.sleep(30)
    assert not long_task.done() and timer.pending() == 1
    long_task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await long_task
    assert timer.pending() == 0


async def test_every_block_of_one_slot_expires_and_others_continue() -> None:
    timer = SharedTimer()

    async def call(seconds: float, sleep: float) -> str:
        try:
            with timer.timeout(seconds):
                await asyncio.sleep(sleep)
            return "done"
        except TimeoutError:
            return "timeout"

    outcomes = await asyncio.gather(*(call(0.02, 30) for _ in range(20)), call(30, 0.05), call(30, 0.001))
    assert outcomes == ["timeout"] * 20 + ["done", "done"]
    assert timer.pending() == 0


async def test_an_expired_timeout_is_an_error_to_reenter_and_needs_a_task() -> None:
    timer = SharedTimer()
    block = timer.timeout(1)
    with block:
        pass
    with pytest.raises(RuntimeError):
        with block:
            pass
    loop = asyncio.get_running_loop()
    error: list[BaseException] = []

    def outside_a_task() -> None:
        try:
            with timer.timeout(1):
                pass
        except RuntimeError as exc:
            error.append(exc)

    done = loop.create_future()
    loop.call_soon(lambda: (outside_a_task(), done.set_result(None)))
    await done
    assert len(error) == 1


def test_a_timer_follows_its_owner_to_a_new_loop() -> None:
    timer = SharedTimer()

    async def expire() -> bool:
        try:
            with timer.timeout(0.02):
                await asyncio.sleep(30)
        except TimeoutError:
            return True
        return False

    assert asyncio.run(expire()) is True
    assert asyncio.run(expire()) is True  # a second loop: the timer re-binds, the old handle is gone
    timer.close()
    assert timer.pending() == 0


def test_under_uvloop_whose_clock_counts_milliseconds() -> None:
    timer = SharedTimer()

    async def scenario() -> list[str]:
        async def call(seconds: float, sleep: float) -> str:
            try:
                with timer.timeout(seconds):
                    await asyncio.sleep(sleep)
                return "done"
            except TimeoutError:
                return "timeout"

        return list(await asyncio.gather(call(0.015, 30), call(0.02, 30), call(30, 0.03), call(0.5, 0.001)))

    assert uvloop.run(scenario()) == ["timeout", "timeout", "done", "done"]
    assert timer.pending() == 0
