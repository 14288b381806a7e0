"""A Lapis app on a real socket, run in a thread of this test process, and a raw HTTP client.

For property tests that send thousands of requests: no process start-up per
test, and the requests are written byte by byte, so header values may hold
anything (a client library would refuse or re-encode some of them).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from aiohttp import web


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class ThreadedApp:
    """`setup(loop)` builds (app, state) on the server's own event loop; `run(coro)` runs more there."""

    def __init__(self, setup: Callable[[], Awaitable[tuple[web.Application, Any]]]):
        self._setup = setup
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.port = 0
        self.state: Any = None
        self._runner: web.AppRunner | None = None

    def start(self) -> "ThreadedApp":
        self._thread.start()
        self.run(self._start())
        return self

    async def _start(self) -> None:
        app, self.state = await self._setup()
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site.port

    def run(self, work: Awaitable[Any], timeout: float = 60) -> Any:
        future: Future = asyncio.run_coroutine_threadsafe(work, self.loop)  # type: ignore[arg-type]
        return future.result(timeout)

    def stop(self) -> None:
        if self._runner is not None:
            self.run(self._runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    def send(self, method: str, target: str, headers: list[tuple[bytes, bytes]], body: bytes = b"") -> Reply:
        """One request on a fresh connection; header names and values go out as given."""
        lines = [f"{method} {target} HTTP/1.1".encode(), b"Connection: close",
                 f"Content-Length: {len(body)}".encode()]
        if not any(name.lower() == b"host" for name, _ in headers):
            lines.append(f"Host: 127.0.0.1:{self.port}".encode())
        lines += [name + b": " + value for name, value in headers]
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as sock:
            sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + body)
            chunks = []
            while data := sock.recv(65536):
                chunks.append(data)
        return parse(b"".join(chunks))


def parse(raw: bytes) -> Reply:
    head, _, rest = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body, rest_ = b"", rest
        while rest_:
            size_line, _, rest_ = rest_.partition(b"\r\n")
            size = int(size_line.split(b";")[0] or b"0", 16)
            if size == 0:
                break
            body, rest_ = body + rest_[:size], rest_[size + 2:]
        rest = body
    return Reply(int(status_line.split(" ")[1]), headers, rest)
