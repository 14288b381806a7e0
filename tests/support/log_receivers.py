"""Destinations for diagnostic logs, run in the test's own loop: a webhook and a fake OTLP collector.

Both are tiny aiohttp servers on 127.0.0.1 that keep every JSON body they
receive; `stop()` and `start()` again on the same port model an outage.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from support.server import free_port


class Receiver:
    def __init__(self, route: str = "/hook", port: int | None = None):
        self.route = route
        self.port = port or free_port()
        self.bodies: list[Any] = []
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.route}"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _take(self, request: web.Request) -> web.Response:
        self.bodies.append(json.loads(await request.read()))
        return web.json_response({})

    async def start(self) -> "Receiver":
        app = web.Application()
        app.router.add_post(self.route, self._take)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def records(self) -> list[dict[str, Any]]:
        """Webhook bodies are {"records": [...]}."""
        return [r for body in self.bodies for r in body.get("records", [])]

    def log_records(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """OTLP bodies: (resource attributes, logRecord) pairs."""
        out = []
        for body in self.bodies:
            for resource_logs in body.get("resourceLogs", []):
                attrs = {a["key"]: a["value"] for a in resource_logs["resource"]["attributes"]}
                for scope in resource_logs.get("scopeLogs", []):
                    out.extend((attrs, r) for r in scope.get("logRecords", []))
        return out


async def until(predicate, limit: float = 20.0, message: str = "condition never came true") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not predicate():
        assert loop.time() < deadline, message
        await asyncio.sleep(0.02)
