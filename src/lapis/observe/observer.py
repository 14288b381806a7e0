"""The observer process: meters, counts and delivers what the serving process spools.

Started by the serving process's relay (lapis.observe.relay), never by hand:

    python -m lapis.observe.observer      (settings, spool prefix) pickled on stdin; prints "port N" on
                                          stdout once it listens on 127.0.0.1:N, then logs to stderr only

It reads the serving process's record spool (lapis.observe.spool) every
TAIL_S, and before answering any call, and runs, unchanged, what runs in
the serving process in the inline mode, on the same store: usage metering
with the spool as its journal (lapis.usage.meter), the live counters and
per-minute rollups (lapis.metrics.counting), both when LAPIS_METRICS is on,
and the diagnostic settings with their sinks (lapis.diagnostics).

At start, before it reads, it replays what dead processes left on this
LAPIS_HOME (spool segments and usage journals that no live process holds).
It stops when the relay posts /close, on SIGTERM, or when the serving
process is gone (its parent pid changes: kill -9 included). Each way it
reads the spool to its end, commits the usage and deletes the segments,
flushes the rollups and gives the sinks' queues their grace period. SIGINT
is ignored: a Ctrl-C in a terminal reaches the whole process group, and the
serving process stops this one in order.
"""
from __future__ import annotations

import asyncio
import hmac
import logging
import os
import pickle
import signal
import sys
from types import SimpleNamespace
from typing import Any, Callable

import msgspec
from aiohttp import web

from lapis.catalog import load_catalogue
from lapis.diagnostics import wiring
from lapis.metrics.counting import Counting
from lapis.metrics.exposition import MetricsHub
from lapis.metrics.metering import usage_metrics
from lapis.observe.record import Observers, RequestRecord
from lapis.observe.relay import TOKEN_HEADER
from lapis.observe.spool import EARLY, FINAL, MANAGEMENT, SpoolReader, TextKey, read_segment
from lapis.settings import Settings
from lapis.store.metering import MeteringStore
from lapis.store.sql import SqlStore
from lapis.usage.meter import UsageMeter
from lapis.usage.pricing import PriceBook

log = logging.getLogger("lapis.observe")
TAIL_S = 0.02  # how often the spool is read, besides before every call
PARENT_CHECK_S = 0.5
_decode = msgspec.msgpack.Decoder(RequestRecord).decode
_encode = msgspec.msgpack.Encoder().encode


def replay_rows(found: list[tuple[int, int, bytes]], row: Callable[[RequestRecord], tuple],
                early: set[str]) -> list[tuple]:
    """A dead process's spool segment (frames as (number, kind, payload)) as usage lines:
    (frame number, *row) for each request that used tokens, a stream once (by its EARLY
    frame; `early` holds the streams seen so far in this replay, across segments)."""
    rows = []
    for number, kind, payload in found:
        if kind not in (FINAL, EARLY):
            continue
        try:
            r = _decode(payload)
        except msgspec.DecodeError:
            continue
        if not (r.prompt_tokens or r.completion_tokens) or not r.account_id:
            continue
        if kind == EARLY:
            early.add(r.request_id)
        elif r.streaming and r.request_id in early:
            continue
        rows.append((number, *row(r)))
    return rows


class Observer:
    def __init__(self, settings: Settings, store: SqlStore, prefix: str, text_key: TextKey, token: str = ""):
        self.settings = settings
        self.token = token  # every call must carry it (lapis.observe.relay.TOKEN_HEADER)
        self.text_key = text_key  # opens the text the relay sealed (lapis.observe.spool)
        self.metering = MeteringStore(store.db)
        self.reader = SpoolReader(settings.home / "spool", prefix)
        self.services: Any = SimpleNamespace(settings=settings, store=store, observers=Observers(), audit=None,
                                             diagnostics=None)
        self.usage: UsageMeter | None = None
        self.counting: Counting | None = None
        if settings.metrics:
            self.usage = UsageMeter(self.metering, PriceBook(load_catalogue()), self.reader)
            self.counting = Counting(self.metering)
        self.hub = MetricsHub()
        self.stop = asyncio.Event()
        self._replay_early: set[str] = set()
        self._read_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []  # the usage writer, when metering
        self._tails: asyncio.Task[None] | None = None  # the spool reader

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.usage is not None:
            home = self.settings.home
            await self.usage.replay(home / "usage")  # what dead processes left: their journals,
            await self.usage.replay(home / "spool", "spool-*.bin",  # and their spools
                                    lambda path: read_segment(path, self._replay_rows))
            self._tasks.append(loop.create_task(self.usage.run()))
            self.hub.register(lambda: usage_metrics(self.usage))  # type: ignore[arg-type]
        if self.counting is not None:
            self.counting.start(self.settings.metrics_flush_s)
            self.services.observers.add(self.counting.observe)
            self.hub.register(self.counting.collect)
        self.services.diagnostics = wiring.make_diagnostics(self.services)
        await self.services.diagnostics.start()  # adds its observer
        self.reader.start_at_oldest()  # an observer started again goes on where the last one stopped
        self._tails = loop.create_task(self._tail())

    async def close(self) -> None:
        """The spool read to its end (its writer is done), usage committed and the segments deleted,
        rollups flushed, sinks given their grace."""
        if self._tails is not None:
            self._tails.cancel()
            await asyncio.gather(self._tails, return_exceptions=True)
        self.reader.writer_gone = True
        await self.read()
        if self.usage is not None:
            await self.usage.close(self._tasks[0])
        else:
            self.reader.close(self.reader.seq)
        if self.counting is not None:
            await self.counting.close()
        await self.services.diagnostics.stop()

    # -- reading the spool -------------------------------------------------------

    async def read(self) -> None:
        async with self._read_lock:
            await self.reader.poll(self.handle, self.metering.usage_mark)
            if self.usage is None:  # no usage, no marks: a segment goes once read (an observer started
                self.reader.committed(self.reader.seq)  # again then sends its records to the sinks again)

    async def _tail(self) -> None:
        while True:
            try:
                await self.read()
            except Exception:  # noqa: BLE001 - keep reading; a store failure is retried next time
                log.exception("reading the spool failed")
            await asyncio.sleep(TAIL_S)

    def handle(self, kind: int, payload: Any) -> None:
        try:
            if kind == MANAGEMENT:
                self.services.diagnostics.management(*msgspec.msgpack.decode(payload))
                return
            record = _decode(payload)
        except msgspec.DecodeError:
            log.exception("a spool frame could not be decoded; skipped")
            return
        usage = self.usage
        if kind == EARLY:
            if usage is not None:
                usage.observe(record, early=True)
            return
        if usage is not None and (record.prompt_tokens or record.completion_tokens):
            usage.observe(record)
        if record.content is not None:
            try:
                record = self.text_key.open(record)
            except Exception:  # noqa: BLE001 - its usage is counted; its logs cannot carry the text
                log.exception("the text of request %s could not be opened", record.request_id)
                record = msgspec.structs.replace(record, content=None)
        self.services.observers.emit(record)

    def _replay_rows(self, found: list[tuple[int, int, bytes]]) -> list[tuple]:
        assert self.usage is not None
        return replay_rows(found, self.usage.row, self._replay_early)

    # -- what the serving process asks ---------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._only_the_relay])
        app.router.add_post("/reload", self.reload)
        app.router.add_get("/state", self.state)
        app.router.add_post("/close", self.close_request)
        return app

    @web.middleware
    async def _only_the_relay(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if not hmac.compare_digest(request.headers.get(TOKEN_HEADER, ""), self.token):
            return web.Response(status=403)
        return await handler(request)

    async def reload(self, _request: web.Request) -> web.Response:
        await self.services.diagnostics.reload()
        return web.Response()

    async def state(self, _request: web.Request) -> web.Response:
        await self.read()  # every request answered before the scrape is in the spool
        return web.Response(body=_encode({"text": self.hub.render(), "sinks": self.services.diagnostics.counters()}))

    async def close_request(self, _request: web.Request) -> web.Response:
        self.stop.set()
        return web.Response()

    async def watch_parent(self, parent: int) -> None:
        while os.getppid() == parent:
            await asyncio.sleep(PARENT_CHECK_S)
        log.warning("the serving process %d is gone; the observer reads its spool to the end and stops", parent)
        self.stop.set()


async def main() -> None:
    settings, prefix, text_key, token = pickle.load(sys.stdin.buffer)
    parent = os.getppid()
    store = await SqlStore.open(settings.database_url, settings.kek_file)
    try:
        observer = Observer(settings, store, prefix, TextKey(text_key), token)
        await observer.start()
        runner = web.AppRunner(observer.app(), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, observer.stop.set)
        watcher = loop.create_task(observer.watch_parent(parent))
        sys.stdout.write(f"port {runner.addresses[0][1]}\n")
        sys.stdout.flush()
        try:
            await observer.stop.wait()
        finally:
            watcher.cancel()
            await observer.close()
            await runner.cleanup()
    finally:
        await store.close()  # its thread would keep the process alive


def run() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s (observer): %(message)s")
    asyncio.run(main())


if __name__ == "__main__":
    run()
