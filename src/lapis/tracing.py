"""Request ids, and the headers every response carries.

    request_id()            a fresh id in the form of a version-4 UUID
    stamp(request, resp)    apim-request-id, x-request-id, x-content-type-options
                            and an echoed x-ms-client-request-id, set (never
                            overwritten) just before the status line goes out;
                            also notes when that happens (state.first_byte) for
                            the request's record

The envelope middleware (lapis.app) stamps every response a handler returns
unsent; a handler that sends its own (a stream, lapis.dataplane.streaming)
stamps it before `prepare`. Doing this in the middleware instead of an
on_response_prepare signal spares every response a signal dispatch.

Ids: Azure's apim-request-id is a random GUID. Lapis's ids only need to be
unique, so each is a random per-process prefix of 74 bits plus a 48-bit
counter, written as a version-4 UUID (8-4-4-4-12, version nibble 4, variant
8-b): no random draw per request, one string format. Two processes collide
with odds of about 2**-74.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets

from aiohttp import web

from lapis.requestkeys import state_of

__all__ = ["request_id", "stamp", "tracing_headers"]

def _head() -> str:
    """The first 24 characters, version and variant nibbles included: 'xxxxxxxx-xxxx-4xxx-8xxx-'
    (the variant nibble is 8, 9, a or b)."""
    h = f"{secrets.randbits(60):015x}"
    return f"{h[:8]}-{h[8:12]}-4{h[12:15]}-{'89ab'[secrets.randbelow(4)]}{secrets.randbits(12):03x}-"


_HEAD = _head()
_counter = itertools.count(secrets.randbits(40))  # a random start: ids of a restarted process differ at once
_LAST = (1 << 48) - 1  # the last 12 hex digits


def request_id() -> str:
    return f"{_HEAD}{next(_counter) & _LAST:012x}"


def stamp(request: web.Request, response: web.StreamResponse) -> None:
    """The tracing headers of every response (see the module docstring)."""
    state = state_of(request)
    if state.started is not None:
        state.first_byte = asyncio.get_running_loop().time()
    if not state.stamped:
        headers = response.headers
        for name, value in _pairs(request, state.request_id):
            headers.setdefault(name, value)


def tracing_headers(request: web.Request, out: dict[str, str]) -> dict[str, str]:
    """Put the tracing headers into `out`, a handler's headers for its answer,
    and note it, so stamp() has nothing left to do (one dict instead of four
    look-ups in the response's header multidict, on the hot path)."""
    state = state_of(request)
    out.update(_pairs(request, state.request_id))
    state.stamped = True
    return out


def _pairs(request: web.Request, rid: str) -> list[tuple[str, str]]:
    pairs = [("apim-request-id", rid), ("x-request-id", rid)] if rid else []
    pairs.append(("x-content-type-options", "nosniff"))
    client_id = request.headers.get("x-ms-client-request-id")
    if client_id:
        pairs.append(("x-ms-client-request-id", client_id))
    return pairs
