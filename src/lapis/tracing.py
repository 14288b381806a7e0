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
unique, so each is a random per-process prefix of 62 bits plus a counter,
written as a version-4 UUID (8-4-4-4-12, version nibble 4, variant 8-b): no
random draw per request. Two processes collide with odds of about 2**-62.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets

from aiohttp import web

from lapis.requestkeys import state_of

__all__ = ["request_id", "stamp", "tracing_headers"]

_TAIL_BITS = (1 << 62) - 1  # the last 16 hex digits: variant bits 10, then 62 bits of counter
_VARIANT = 1 << 63


def _prefix() -> str:
    """The first 16 hex digits, version nibble included: 'xxxxxxxx-xxxx-4xxx-'."""
    h = f"{secrets.randbits(60):015x}"
    return f"{h[:8]}-{h[8:12]}-4{h[12:15]}-"


_head = _prefix()
_counter = itertools.count(secrets.randbits(40))  # a random start: ids of a restarted process differ at once


def request_id() -> str:
    tail = f"{(next(_counter) & _TAIL_BITS) | _VARIANT:016x}"
    return f"{_head}{tail[:4]}-{tail[4:]}"


def stamp(request: web.Request, response: web.StreamResponse) -> None:
    """The tracing headers of every response (see the module docstring)."""
    state = state_of(request)
    if state.started is not None:
        state.first_byte = asyncio.get_running_loop().time()
    if state.stamped:
        return
    headers = response.headers
    rid = state.request_id
    if rid:
        headers.setdefault("apim-request-id", rid)
        headers.setdefault("x-request-id", rid)
    headers.setdefault("x-content-type-options", "nosniff")
    client_id = request.headers.get("x-ms-client-request-id")
    if client_id:
        headers.setdefault("x-ms-client-request-id", client_id)


def tracing_headers(request: web.Request, out: dict[str, str]) -> dict[str, str]:
    """Put the tracing headers into `out`, a handler's headers for its answer,
    and note it, so stamp() has nothing left to do (one dict instead of four
    look-ups in the response's header multidict, on the hot path)."""
    state = state_of(request)
    rid = state.request_id
    if rid:
        out["apim-request-id"] = out["x-request-id"] = rid
    out["x-content-type-options"] = "nosniff"
    client_id = request.headers.get("x-ms-client-request-id")
    if client_id:
        out["x-ms-client-request-id"] = client_id
    state.stamped = True
    return out
