"""The ceiling for bench/gateway_throughput.py: the least an aiohttp proxy hop can do.

One POST route (any path) that forwards the request body unchanged to UPSTREAM
(an OpenAI-compatible chat URL, e.g. http://127.0.0.1:N/v1/chat/completions)
through one pooled aiohttp.ClientSession, and answers with the upstream's status
and body as application/json. No validation, no auth, no retries, no logging, no
streaming: whatever the upstream says is returned whole.

The session is made like Lapis's (lapis.backends.http.default_session: a
TCPConnector with the pool size, DNS cache and keep-alive the caller passes, no
cookies) and, like Lapis's plain calls, arms no per-call total timer (only the
socket connect has a deadline). Same event-loop policy as `lapis serve` (uvloop
when importable, else asyncio), no middleware, no access log. Listens on
127.0.0.1 only.

    python bench/bare_proxy.py PORT UPSTREAM [--limit 4096] [--keepalive 30] [--dns-ttl 300]
"""

from __future__ import annotations

import argparse
from typing import AsyncIterator

import aiohttp
from aiohttp import web

from bare_server import run  # bench/ is this script's folder: on sys.path

SESSION = web.AppKey("session", aiohttp.ClientSession)
UPSTREAM_HEADERS = {"Content-Type": "application/json"}
CONNECT_S = 10.0  # as lapis.backends.http.CONNECT_S


def make_app(upstream: str, limit: int, keepalive: float, dns_ttl: int) -> web.Application:
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_S)

    async def session_ctx(app: web.Application) -> AsyncIterator[None]:
        connector = aiohttp.TCPConnector(limit=limit, ttl_dns_cache=dns_ttl, keepalive_timeout=keepalive)
        async with aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar(),
                                         raise_for_status=False, timeout=timeout) as session:
            app[SESSION] = session
            yield

    async def forward(request: web.Request) -> web.Response:
        body = await request.read()
        async with request.app[SESSION].post(upstream, data=body, headers=UPSTREAM_HEADERS) as answer:
            return web.Response(status=answer.status, body=await answer.read(), content_type="application/json")

    app = web.Application()
    app.cleanup_ctx.append(session_ctx)
    app.router.add_post("/{tail:.*}", forward)
    return app


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("port", type=int)
    ap.add_argument("upstream", help="the upstream's chat URL, e.g. http://127.0.0.1:N/v1/chat/completions")
    ap.add_argument("--limit", type=int, default=4096, help="pooled connections (4096)")
    ap.add_argument("--keepalive", type=float, default=30.0, help="seconds an idle connection is kept (30)")
    ap.add_argument("--dns-ttl", type=int, default=300, help="seconds a DNS answer is cached (300)")
    args = ap.parse_args()
    run(args.port, make_app(args.upstream, args.limit, args.keepalive, args.dns_ttl), "bare proxy")


if __name__ == "__main__":
    main()
