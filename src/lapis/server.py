"""Running the server: `lapis serve` ends up here.

Starts the aiohttp app on one port, writes LAPIS_HOME/server.json (URL and
admin credential, mode 0600) once it listens, prints the demo exports when
asked to, and stops cleanly on SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys

from aiohttp import web

from lapis import certificates, demo
from lapis.app import SERVICES, create_app, write_server_file
from lapis.settings import Settings


async def serve(settings: Settings, ready_message: bool = True) -> None:
    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    tls = certificates.ensure(settings.home) if settings.tls else None
    context = certificates.server_context(tls) if tls else None
    site = web.TCPSite(runner, settings.host, settings.port, backlog=1024, reuse_address=True, ssl_context=context)
    await site.start()
    services = app[SERVICES]
    await services.private_endpoints.attach(runner, context)  # one more listener per private endpoint
    write_server_file(settings, services.admin_token, tls.ca if tls else None)
    # Everything built at start-up lives as long as the process: keep the
    # cyclic collector from walking it again and again under load, and let
    # young objects (one request's worth of dicts) pile up a little longer.
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
    if ready_message:
        print(f"Lapis is listening on {settings.base_url} (data in {settings.database_url})", flush=True)
        if settings.demo:
            print("\n# The demo account is ready. For the first call:", flush=True)
            print(await demo.exports(services), flush=True)
            print(f"\n# The CLI finds this server through {settings.server_file}", flush=True)
        if tls:
            print("\n# HTTPS with a local CA. Trust it in the shells that call Lapis:", flush=True)
            print(tls.trust_exports(), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def run(settings: Settings) -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    try:
        import uvloop  # type: ignore[import-not-found]
    except ImportError:
        asyncio.run(serve(settings))
    else:
        uvloop.run(serve(settings))
