"""Timeouts that share one loop timer: asyncio.timeout's contract at a fraction of its cost.

    timer = SharedTimer()            # one per owner (a backend, the balancer)
    with timer.timeout(seconds):     # inside a task
        await call()                 # TimeoutError when it runs past the deadline

The contract is asyncio.timeout's: at the deadline the task is cancelled and
the block raises TimeoutError; a cancel from anywhere else passes through as
CancelledError; nesting with asyncio.timeout or another of these works, each
claiming only its own cancel. Two differences:

* It is a plain `with`: entering and leaving await nothing.
* Deadlines are kept on a grain: 10 ms, or for a timeout over 10 s the
  power-of-two multiple of 10 ms between 0.1% and 0.2% of it (80 ms for
  60 s), so calls with different timeouts still share slots. A block ends at
  its deadline or up to one grain after it, and at most 1 ms before it
  (uvloop's clock counts milliseconds).

Why: asyncio.timeout and aiohttp's ClientTimeout(total=) each arm a loop timer
per call and cancel it after, and aiohttp also enters a timer context on every
read; on the gateway's hot path that measured 6-12 us per call on uvloop. Here
a call joins the set of calls whose deadline falls in the same slot (a dict
lookup and a set add) and one loop timer, armed for the earliest slot, serves
every slot. A slot stays (empty) until its time passes, so memory is bounded by
the number of slots in a timeout (at most 1,000 per grain), not by the rate.
"""

from __future__ import annotations

import asyncio
import heapq
import math
from asyncio import current_task, get_running_loop
from types import TracebackType

__all__ = ["SharedTimer", "Timeout", "GRAIN_S", "GRAIN_SHARE"]

GRAIN_S = 0.01  # the finest slot
GRAIN_SHARE = 0.001  # longer timeouts: slots of this share of the timeout
_EARLY_S = 0.001  # uvloop's clock has millisecond steps: a slot this close is due


class SharedTimer:
    """The timeouts of one owner, on one loop timer (bound to the running loop
    on first use, and to a new loop if the owner moves to one)."""

    __slots__ = ("_loop", "_slots", "_heap", "_handle", "_armed", "_seconds", "_grain")

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots: dict[float, set[Timeout]] = {}  # slot time -> blocks still running with that deadline
        self._heap: list[float] = []  # slot times, earliest first
        self._handle: asyncio.TimerHandle | None = None
        self._armed = math.inf  # when the loop timer fires
        self._seconds, self._grain = 0.0, GRAIN_S  # the last timeout's grain (an owner mostly uses one)

    def timeout(self, seconds: float) -> Timeout:
        """A context manager ending its block `seconds` from when it is entered."""
        return Timeout(self, seconds)

    def pending(self) -> int:
        """Blocks running under a deadline of this timer (diagnostics and tests)."""
        return sum(len(s) for s in self._slots.values())

    def close(self) -> None:
        """Stop the loop timer; blocks still running keep no deadline."""
        if self._handle is not None:
            self._handle.cancel()
        self._handle, self._armed, self._loop = None, math.inf, None
        self._slots.clear()
        self._heap.clear()

    def _join(self, block: Timeout, seconds: float) -> set[Timeout]:
        """Put `block` (being entered in the running task) in its slot; the slot."""
        loop = get_running_loop()
        if loop is not self._loop:
            self.close()
            self._loop = loop
        task = current_task(loop)
        if task is None:
            raise RuntimeError("Timeout should be used inside a task")
        block._task, block._cancelling = task, task.cancelling()
        if seconds != self._seconds:
            ratio = seconds * (GRAIN_SHARE / GRAIN_S)
            self._grain = GRAIN_S if ratio <= 1.0 else math.ldexp(GRAIN_S, math.frexp(ratio)[1])
            self._seconds = seconds
        grain = self._grain
        at = math.ceil((loop.time() + seconds) / grain) * grain
        slot = self._slots.get(at)
        if slot is None:
            slot = self._slots[at] = set()
            heapq.heappush(self._heap, at)
            if at < self._armed:
                self._arm(loop, at)
        slot.add(block)
        return slot

    def _arm(self, loop: asyncio.AbstractEventLoop, at: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._armed = at
        self._handle = loop.call_at(at, self._fire)

    def _fire(self) -> None:
        self._handle, self._armed = None, math.inf
        loop = self._loop
        if loop is None:
            return
        due = loop.time() + _EARLY_S
        heap, slots = self._heap, self._slots
        while heap and heap[0] <= due:
            for block in slots.pop(heapq.heappop(heap), ()):
                block._expire()
        if heap:
            self._arm(loop, heap[0])


class Timeout:
    """One block's deadline (SharedTimer.timeout); asyncio.timeouts.Timeout's states, without awaits."""

    __slots__ = ("_timer", "_seconds", "_task", "_cancelling", "_slot", "_expired")

    def __init__(self, timer: SharedTimer, seconds: float) -> None:
        self._timer = timer
        self._seconds = seconds
        self._task: asyncio.Task | None = None  # set on entering
        self._cancelling = 0
        self._slot: set[Timeout] | None = None
        self._expired = False

    def expired(self) -> bool:
        return self._expired

    def __enter__(self) -> Timeout:
        if self._task is not None:
            raise RuntimeError("Timeout has already been entered")
        self._slot = self._timer._join(self, self._seconds)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        slot, self._slot = self._slot, None
        if slot is not None:
            slot.discard(self)
        if self._expired:
            assert self._task is not None
            if self._task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
                raise TimeoutError from exc  # our cancel, nobody else's: a timeout

    def _expire(self) -> None:
        if self._slot is None or self._expired:
            return
        self._slot = None  # the timer dropped the slot already
        self._expired = True
        assert self._task is not None
        self._task.cancel()
