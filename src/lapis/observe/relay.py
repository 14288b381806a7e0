"""The relay: the serving process's side of the observer process.

Why a second process. Observing a request (usage metering, the live
counters and rollups behind /metrics, and the diagnostic settings' sinks:
shaping each record, encoding it, writing files, XADDs) cost about 40% of
the server's throughput when it all ran in the serving process, measured
with bench/observe_overhead.py; issue 6 caps it at 10%. Now the serving
process only writes each finished request's record to the record spool
(lapis.observe.spool: msgpack copied into a shared mapping, about a
microsecond), and the observer process (lapis.observe.observer, started and
watched by the relay) reads the spool and meters, counts and delivers with
the same code that runs in-process in the inline mode (lapis.usage.meter,
lapis.metrics.counting, lapis.diagnostics).

    LAPIS_OBSERVER=process   this (the default, with a store in a file or PostgreSQL)
    LAPIS_OBSERVER=inline    everything in the serving process (the tests that look into
                             the sinks' queues use it)

The spool is durable against a crash of either process: a record is in it
before its answer's last byte (a stream's usage before its [DONE], an EARLY
frame), the observer commits usage with the spool's marks, and a segment
is deleted only once all of it is committed. Nothing on the request path
waits for the observer: while it starts, restarts, or falls behind, records
wait in the spool (at most `max_segments` segments; beyond that new records
are dropped and counted, lapis_spool_dropped_total). If the observer exits,
the relay logs it and starts another after RESTART_S, which goes on from
the marks; if the serving process dies (kill -9 included), the observer
notices (its parent is gone), reads the spool to its end, commits, delivers
what it holds and exits.

What the server asks of the observer, and waits for (on 127.0.0.1, each call
with the token the relay handed it at its start, TOKEN_HEADER: no other
local process can stop it or read its numbers):
    POST /reload      a diagnostic setting changed: routes rebuilt before the ARM call answers
    GET  /state       at every /metrics scrape: the observer reads the spool to its end, then
                      answers its exposition text (usage, live counters, rollups) and its
                      sinks' counters, so a scrape shows every request answered before it
    POST /close       at shutdown: the spool read to its end, usage committed, rollups
                      flushed, queues given their grace, then the process exits
"""
from __future__ import annotations

import asyncio
import logging
import pickle
import secrets
import sys
from typing import Any, Iterator

import aiohttp
import msgspec
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from lapis.observe.record import RequestRecord
from lapis.observe.spool import EARLY, FINAL, MANAGEMENT, SpoolWriter, TextKey
from lapis.settings import Settings

log = logging.getLogger("lapis.observe")

RESTART_S = 1.0
START_TIMEOUT_S = 30.0  # how long a call that needs the observer waits for it to be up
SCRAPE_WAIT_S = 5.0  # how long a scrape waits for an observer that is starting (then shows the server's part)
CALL_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0
TOKEN_HEADER = "x-lapis-observer-token"
_encode = msgspec.msgpack.Encoder().encode


class Relay:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.spool = SpoolWriter(settings.home / "spool")
        self.text_key = TextKey()  # seals prompt and response text in the spool; in memory only
        self.token = secrets.token_urlsafe(32)  # what the observer asks of every call
        self.restarts = 0  # observer processes that exited unasked
        self.state: dict[str, Any] = {"text": b"", "sinks": {}}  # the observer's, at the last scrape
        self.process: asyncio.subprocess.Process | None = None
        self._url = ""
        self._up = asyncio.Event()
        self._closing = False
        self._changes = 0  # reloads asked for
        self._session: aiohttp.ClientSession | None = None
        self._supervisor: asyncio.Task[None] | None = None

    # -- the request path ----------------------------------------------------

    def observe(self, record: RequestRecord) -> None:
        """An observer (lapis.observe.record): the record goes to the spool."""
        if record.account_id:  # else it belongs to no resource: nothing counts or logs it
            if record.content is not None:
                record = self.text_key.seal(record)
            self.spool.append(FINAL, _encode(record))

    def early(self, record: RequestRecord) -> None:
        """A stream's record before its [DONE]: its usage is in the spool before the client sees the end."""
        if record.content is not None:
            record = msgspec.structs.replace(record, content=None)  # usage only: the FINAL record has the text
        self.spool.append(EARLY, _encode(record))

    # -- life cycle ----------------------------------------------------------

    async def start(self) -> None:
        """Start the observer; returns at once (records wait in the spool until it reads them)."""
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=CALL_TIMEOUT_S),
                                              cookie_jar=aiohttp.DummyCookieJar(), headers={TOKEN_HEADER: self.token})
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise())

    async def _spawn(self) -> asyncio.subprocess.Process:
        self.process = process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "lapis.observe.observer", stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE)
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(pickle.dumps((self.settings, self.spool.prefix, self.text_key.key, self.token)))
        await process.stdin.drain()
        process.stdin.close()
        line = await process.stdout.readline()  # "port N" once it listens; nothing if it failed to start
        if line.startswith(b"port "):
            self._url = f"http://127.0.0.1:{int(line.split()[1])}"
            seen = -1
            while seen != self._changes:  # a setting changed while it was starting: it must see that
                seen = self._changes
                await self._request("POST", "/reload")
            self._up.set()
            log.info("observer process %d is up", process.pid)
        return process

    async def _supervise(self) -> None:
        while not self._closing:
            try:
                code = await (await self._spawn()).wait()
            except Exception:  # noqa: BLE001 - try again
                log.exception("starting the observer process failed")
                code = None
            self._up.clear()
            if self._closing:
                return
            self.restarts += 1
            log.error("the observer process exited (status %s); starting another in %.0f s (records wait in "
                      "the spool)", code, RESTART_S)
            await asyncio.sleep(RESTART_S)

    async def close(self) -> None:
        """After the last request: the observer reads the spool to its end, finishes and exits."""
        self._closing = True
        process = self.process
        if self._up.is_set():
            await self._call("POST", "/close")
        elif process is not None and process.returncode is None:
            process.terminate()  # still starting: it has read nothing; the spool stays for the next start
        if process is not None and process.returncode is None:
            try:
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
            except asyncio.TimeoutError:
                log.error("the observer process did not stop; killing it (the spool stays for replay)")
                process.kill()
                await process.wait()
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
        self.spool.close()
        if self._session is not None:
            await self._session.close()

    # -- calls ---------------------------------------------------------------

    async def _call(self, method: str, path: str, wait: float = START_TIMEOUT_S) -> bytes | None:
        """One call, once the observer is up (waiting `wait` s at most); None when it did not answer."""
        try:
            await asyncio.wait_for(self._up.wait(), wait)
        except asyncio.TimeoutError:
            log.warning("the observer is not up: %s %s not sent", method, path)
            return None
        return await self._request(method, path)

    async def _request(self, method: str, path: str) -> bytes | None:
        try:
            assert self._session is not None
            async with self._session.request(method, self._url + path) as response:
                data = await response.read()
                return data if response.status == 200 else None
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as failure:
            log.warning("the observer did not answer %s %s (%r)", method, path, failure)
            return None

    async def reload(self) -> None:
        """A diagnostic setting changed: the observer rebuilds its routes before this returns
        (one that is starting reloads before it reads records)."""
        self._changes += 1
        if self._up.is_set():
            await self._call("POST", "/reload")

    def management(self, event: dict[str, Any], status: int, account_id: str, arm_id: str, location: str) -> None:
        """A management write on an account with a diagnostic setting (its Audit category)."""
        self.spool.append(MANAGEMENT, _encode((event, status, account_id, arm_id, location)))

    async def refresh(self) -> None:
        """Before a scrape: the observer's numbers, once it has read what the spool holds
        (the last ones are kept when it does not answer; one that is starting is waited for a little)."""
        data = await self._call("GET", "/state", wait=SCRAPE_WAIT_S)
        if data is not None:
            self.state = msgspec.msgpack.decode(data)

    def collect(self) -> Iterator[Metric]:
        """The relay's own numbers (a MetricsHub collect function)."""
        spool = self.spool
        yield GaugeMetricFamily("lapis_observer_up", "1 when the observer process is running",
                                value=int(self._up.is_set()))
        yield CounterMetricFamily("lapis_observer_restarts", "Observer processes that exited unasked",
                                  value=self.restarts)
        yield CounterMetricFamily("lapis_spool_records", "Records written to the spool", value=spool.frames)
        yield CounterMetricFamily("lapis_spool_dropped", "Records that could not be written to the spool "
                                  "(no segment could be made, or the observer is too far behind)",
                                  value=spool.failures)
        yield GaugeMetricFamily("lapis_spool_segments", "Spool segments the observer has not finished",
                                value=spool.waiting)
