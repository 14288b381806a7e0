"""A minimal Redis client for the limiter's hot path: one pipelined connection.

Why not redis-py: measured here, its asyncio client spends ~170-210 us of CPU
per EVALSHA (connection pool, command objects, response callbacks), more than
the whole rest of a Lapis request. The limiter sends one command shape to one
server, so this client does only that: commands are written to a single
connection as they come (concurrent callers are pipelined by construction),
replies are parsed by hiredis and handed to the waiting futures in order.

    client = RespClient.from_url("redis://[:password@]host:6379/0", timeout_s=0.25)
    reply = await client.call("EVALSHA", sha, 2, key1, key2, *args)

Errors: ConnectionError when the server is unreachable or the connection
drops (every waiting call gets it), TimeoutError when a reply takes longer
than `timeout_s`, RespError for an error reply (e.g. NOSCRIPT). A call that
timed out leaves its slot in the queue, so later replies still match up.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any
from urllib.parse import unquote, urlparse

import hiredis


class RespError(Exception):
    """An error reply from Redis; `str()` is its message ("NOSCRIPT ...")."""


def encode(args: tuple[Any, ...]) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.waiters: deque[asyncio.Future[Any]] = deque()
        self.transport: asyncio.Transport | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            waiter = self.waiters.popleft()
            if waiter.done():
                continue  # its caller gave up (timeout); the reply is dropped
            if isinstance(reply, hiredis.ReplyError):
                waiter.set_exception(RespError(str(reply)))
            else:
                waiter.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_exception(ConnectionError(f"redis connection lost: {exc}"))

    def send(self, payload: bytes) -> asyncio.Future[Any]:
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        assert self.transport is not None
        self.transport.write(payload)
        return waiter


class RespClient:
    def __init__(self, host: str, port: int, db: int = 0, password: str | None = None,
                 username: str | None = None, timeout_s: float = 0.25):
        self.host, self.port, self.db = host, port, db
        self.password, self.username = password, username
        self.timeout_s = timeout_s
        self._conn: _Protocol | None = None
        self._connecting = asyncio.Lock()

    @classmethod
    def from_url(cls, url: str, timeout_s: float = 0.25) -> "RespClient":
        parsed = urlparse(url)
        if parsed.scheme != "redis":
            raise ValueError(f"only redis:// URLs are supported by the limiter, not {url!r}")
        db = int(parsed.path.lstrip("/") or 0)
        password = unquote(parsed.password) if parsed.password else None
        username = unquote(parsed.username) if parsed.username else None
        return cls(parsed.hostname or "127.0.0.1", parsed.port or 6379, db, password, username, timeout_s)

    async def _connection(self) -> _Protocol:
        conn = self._conn
        if conn is not None and not conn.closed:
            return conn
        async with self._connecting:
            if self._conn is not None and not self._conn.closed:
                return self._conn
            loop = asyncio.get_running_loop()
            async with asyncio.timeout(self.timeout_s):
                _, conn = await loop.create_connection(_Protocol, self.host, self.port)
                if self.password is not None:
                    auth = ("AUTH", self.username, self.password) if self.username else ("AUTH", self.password)
                    await conn.send(encode(auth))
                if self.db:
                    await conn.send(encode(("SELECT", self.db)))
            self._conn = conn
            return conn

    async def call(self, *args: Any) -> Any:
        conn = await self._connection()
        waiter = conn.send(encode(args))
        async with asyncio.timeout(self.timeout_s):
            return await waiter  # a timeout cancels the waiter: its late reply is dropped

    async def close(self) -> None:
        if self._conn is not None and self._conn.transport is not None:
            self._conn.transport.close()
        self._conn = None
