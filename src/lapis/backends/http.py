"""The HTTP boundary of real-engine backends: pooled sessions, deadlines, and
the one place where foreign failures become UpstreamError.

aiohttp's client is used, never httpx (its pool costs ~10x per request on the
proxy hop: shared/docs/STACK.md). Each backend owns one ClientSession, made
lazily inside the running loop.

The session keeps no cookies (a DummyCookieJar): a gateway must never carry
one upstream answer's Set-Cookie into the next request, which may be another
tenant's, and an empty jar also costs nothing per request. Every request
sends the same fixed headers, built once per backend (`request_headers`), so
aiohttp merges no session defaults and adds no automatic headers itself.

Mapping (status_error, translate):

    429                     rate_limited, retry_after from retry-after-ms, else
                            retry-after (seconds or an HTTP date)
    408                     timeout: the engine's own deadline ran out, which
                            says nothing about the request (Lapis's choice)
    5xx                     unavailable (status kept; a retry-after is kept too)
    401, 403, 404           unavailable: the engine refuses Lapis (wrong key or
                            deployment), so the member is broken, not the request
    other 4xx               rejected, with the engine's own error message
    timeouts                timeout (connect, whole request, or read idle)
    refused/reset/DNS/cut   unreachable
    a broken HTTP answer    malformed
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from typing import Any, Callable, Mapping

import aiohttp
import msgspec
from multidict import CIMultiDict, CIMultiDictProxy

from lapis.backends.base import UpstreamError

__all__ = ["SessionFactory", "default_session", "request_headers", "Deadlines", "status_error", "retry_after",
           "error_message", "translate", "TRANSPORT_ERRORS"]

SessionFactory = Callable[[], aiohttp.ClientSession]
# Connections per backend. Each relayed stream holds one for its whole life,
# so this caps concurrent streams per engine (the target is 1,000
# relayed streams); an engine that wants fewer answers 429/503 and the
# balancer moves on.
POOL_SIZE = 4096
KEEPALIVE_S = 30.0  # idle connections kept this long (aiohttp's default is 15)
DNS_TTL_S = 300
CONNECT_S = 10.0  # a TCP (and TLS) connect longer than this is an unreachable engine
MAX_ERROR_BODY = 64 * 1024


USER_AGENT = "lapis-gateway"
# What aiohttp would add by itself (Accept, Accept-Encoding), sent explicitly
# so the wire stays as it was while aiohttp has nothing to fill in.
_AUTO_HEADERS = {"User-Agent": USER_AGENT, **aiohttp.ClientRequest.DEFAULT_HEADERS}


def default_session() -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=POOL_SIZE, ttl_dns_cache=DNS_TTL_S, keepalive_timeout=KEEPALIVE_S)
    return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar(), raise_for_status=False)


def request_headers(headers: Mapping[str, str]) -> CIMultiDictProxy[str]:
    """Every header of a request, built once: `headers` plus User-Agent,
    Accept and Accept-Encoding (see the module docstring)."""
    return CIMultiDictProxy(CIMultiDict({**_AUTO_HEADERS, **headers}))


class Deadlines:
    """Per-attempt timeouts from BackendSpec.timeout_s.

    A plain call must be over within `total_s` (timeout_s): the backend times
    the whole of it, waiting for a pooled connection included, on its
    SharedTimer (lapis.serving.timer: one loop timer for all its calls, up to
    one grain late, 80 ms for 60 s), so `call` leaves aiohttp only the socket
    connect's deadline and no timer per call. A stream may run longer than
    that (a long answer at engine speed), so for streams timeout_s bounds the
    wait for the answer to start and for every next piece of it (aiohttp's
    sock_read), not the whole stream. The socket connect has its own, shorter
    deadline in both cases; waiting for a free pooled connection counts
    against timeout_s.
    """

    def __init__(self, timeout_s: float) -> None:
        connect = min(CONNECT_S, timeout_s)
        self.total_s = timeout_s
        self.call = aiohttp.ClientTimeout(total=None, sock_connect=connect)
        self.stream = aiohttp.ClientTimeout(total=None, connect=timeout_s, sock_connect=connect,
                                            sock_read=timeout_s)


def retry_after(headers: Mapping[str, str]) -> float | None:
    """The engine's advice in seconds: retry-after-ms first (Azure sends both), then retry-after."""
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - time.time())


def error_message(body: bytes) -> str:
    """The engine's own words from an error body, in the shapes engines use:
    {"error": {"message"}} (OpenAI, Azure, vLLM, Ollama, llama.cpp), OAuth2's
    {"error_description"}, {"error": "..."}, {"message": "..."}, {"detail": ...}
    (FastAPI), else the start of the body as text."""
    try:
        data: Any = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return body[:500].decode("utf-8", "replace").strip()
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        for value in (data.get("error_description"), error, data.get("message"), data.get("detail")):
            if isinstance(value, str) and value:
                return value
        if data.get("detail"):
            return str(data["detail"])
    return body[:500].decode("utf-8", "replace").strip()


def status_error(status: int, headers: Mapping[str, str], body: bytes, what: str = "the engine") -> UpstreamError:
    """The UpstreamError for a non-2xx answer (see the module docstring)."""
    message = error_message(body) or f"{what} answered {status}"
    if status == 429:
        return UpstreamError("rate_limited", message, status=status, retry_after=retry_after(headers), body=body)
    if status == 408:
        return UpstreamError("timeout", message, status=status, body=body)
    if status >= 500:
        return UpstreamError("unavailable", message, status=status, retry_after=retry_after(headers), body=body)
    if status in (401, 403, 404):
        # The engine refuses Lapis itself (wrong key, wrong deployment name):
        # a misconfigured member, not a bad request. Fail over, as a platform
        # team expects; the log says why.
        return UpstreamError("unavailable", f"{what} refused Lapis's call ({status}): {message}", status=status,
                             body=body)
    if status >= 400:
        return UpstreamError("rejected", message, status=status, body=body)
    return UpstreamError("malformed", f"{what} answered {status}, not 200", status=status, body=body)


def translate(exc: BaseException, what: str = "the engine") -> UpstreamError:
    """The UpstreamError for an exception from aiohttp or the socket.
    Timeouts first: aiohttp's ServerTimeoutError is also a connection error."""
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return UpstreamError("timeout", f"{what} did not answer in time")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamError("unreachable", f"cannot connect to {what}: {exc}")
    if isinstance(exc, aiohttp.InvalidURL):
        return UpstreamError("unreachable", f"{what} has an invalid URL: {exc}")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return UpstreamError("unreachable", f"{what} cut the connection mid-answer")
    if isinstance(exc, aiohttp.ClientResponseError):
        return UpstreamError("malformed", f"{what} sent a broken HTTP answer: {exc.message}")
    if isinstance(exc, (aiohttp.ClientError, OSError)):
        return UpstreamError("unreachable", f"connection to {what} failed: {exc.__class__.__name__} {exc}")
    return UpstreamError("malformed", f"{what} failed: {exc.__class__.__name__}")


# What translate() is for: everything a request can raise short of cancellation.
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (aiohttp.ClientError, OSError, asyncio.TimeoutError, ValueError)
