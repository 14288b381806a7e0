"""Real engines behind a deployment: OpenAI-compatible servers and Azure OpenAI.

    OpenAICompatibleBackend  vLLM, Ollama, llama.cpp server, LM Studio, OpenAI:
                             POST {url}/chat/completions and {url}/embeddings,
                             url being a base ending in /v1; model =
                             spec.upstream_model; `Authorization: Bearer
                             spec.secret` when a secret is set
    AzureBackend             a real Azure OpenAI deployment: POST
                             {url}/openai/deployments/{deployment}/...?api-version=;
                             `api-key: spec.secret`, or an Entra client-credentials
                             token when spec.auth has client_id
    make_backend(spec)       one of those, or the simulator, by spec.kind

Both speak the same body and stream format (openai_wire, chunks, sse); only
the URLs and the auth header differ. One attempt per call: retries and
failover belong to the balancer, which reads UpstreamError.kind.

Streams are relayed piece by piece as the engine sends them. When the
consumer stops early (the async generator is closed or its task cancelled),
the upstream connection is closed at once, so the engine sees the client go
and stops generating; stats.streams_cancelled counts those streams.

stats.tokens_generated adds the completion tokens the engine reports (engines
that report no usage add nothing); stats.extra counts "calls", "streams",
"embeds" and every UpstreamError raised as "upstream_<kind>".

`deadline_s`: a chat() or embed() call ends within this many seconds on its
own (spec.timeout_s, timed on the backend's SharedTimer: lapis.backends.http.
Deadlines), so the balancer does not time it again when its attempt timeout
is not shorter. None for an Azure backend with Entra credentials: a token
fetch may come first.

The hot path (a plain call) does per request only what varies: the body is
encoded, the URL (a yarl.URL) and the headers (lapis.backends.http.
request_headers) are built once per backend.
"""

from __future__ import annotations

import asyncio
from typing import AsyncIterator
from urllib.parse import quote

import aiohttp
import msgspec
from multidict import CIMultiDictProxy
from yarl import URL

from lapis.backends import http
from lapis.backends.base import Backend, BackendStats, ChatCall, Completion, Delta, EmbedCall, UpstreamError, Usage
from lapis.backends.chunks import StreamState
from lapis.backends.entra import ClientCredentials
from lapis.backends.openai_wire import chat_bytes, embed_body, parse_completion, parse_embeddings
from lapis.backends.simulator import SimulatorBackend
from lapis.backends.sse import EventTooLarge, SSEDecoder
from lapis.serving.specs import BACKEND_KINDS, BackendSpec
from lapis.serving.timer import SharedTimer

__all__ = ["make_backend", "HttpBackend", "OpenAICompatibleBackend", "AzureBackend", "DEFAULT_AZURE_API_VERSION"]

DEFAULT_AZURE_API_VERSION = "2024-10-21"  # the GA version when the spec names none
_encode = msgspec.json.encode


def make_backend(spec: BackendSpec, session_factory: http.SessionFactory | None = None) -> Backend:
    """The simulator (no added latency), an OpenAI-compatible engine or an
    Azure deployment. ValueError for an unknown kind or a spec missing what
    its kind needs (url; an azure deployment; auth.tenant with client_id)."""
    if spec.kind == "simulator":
        return SimulatorBackend()
    if spec.kind == "openai-compatible":
        return OpenAICompatibleBackend(spec, session_factory)
    if spec.kind == "azure":
        return AzureBackend(spec, session_factory)
    raise ValueError(f"unknown backend kind {spec.kind!r}; expected one of {', '.join(BACKEND_KINDS)}")


class HttpBackend:
    """What both kinds share; subclasses give the URLs, the model field and auth."""

    model: str | None = None  # the body's "model", None where the URL names it
    credentials: ClientCredentials | None = None  # Entra: headers need a token per call

    def __init__(self, spec: BackendSpec, session_factory: http.SessionFactory | None = None) -> None:
        if not spec.url:
            raise ValueError(f"backend {spec.id!r} has no url")
        self.spec = spec
        self.stats = BackendStats()
        self._session_factory = session_factory or http.default_session
        self._session: aiohttp.ClientSession | None = None
        self._deadlines = http.Deadlines(spec.timeout_s)
        self._timer = SharedTimer()  # times every plain call (http.Deadlines)
        self.deadline_s: float | None = spec.timeout_s
        self.chat_url: URL | str = ""
        self.embeddings_url: URL | str = ""
        self._fixed: CIMultiDictProxy[str] = http.request_headers({"Content-Type": "application/json"})

    # -- subclass hooks

    async def _token_headers(self, session: aiohttp.ClientSession) -> CIMultiDictProxy[str]:
        """The headers of a call when they need a fresh token (AzureBackend with credentials)."""
        return self._fixed

    def _refused(self, status: int) -> None:
        """Called with the status of every non-2xx answer (AzureBackend drops a refused token)."""

    # -- the Backend protocol

    async def chat(self, call: ChatCall) -> Completion:
        self._count("calls")
        try:
            completion = parse_completion(await self._post(self.chat_url, chat_bytes(call, self.model, False)))
        except UpstreamError as exc:
            self._count("upstream_" + exc.kind)
            raise
        if completion.usage is not None:
            self.stats.tokens_generated += completion.usage.completion_tokens
        return completion

    async def chat_stream(self, call: ChatCall) -> AsyncIterator[Delta | Usage]:
        self._count("streams")
        body = chat_bytes(call, self.model, True)
        self.stats.active_streams += 1
        response: aiohttp.ClientResponse | None = None
        state, decoder = StreamState(), SSEDecoder()
        complete = False  # every item was delivered: closing now is no cancel
        try:
            response = await self._open(self.chat_url, body)
            while not state.done:
                data = await self._read(response)
                events = decoder.feed(data) if data else decoder.close()
                for payload in events:
                    for delta in state.feed(payload):
                        yield delta
                    if state.done:
                        break
                if not data:
                    break
            last = state.end()
            complete = not last
            for position, item in enumerate(last, 1):
                if isinstance(item, Usage):
                    self.stats.tokens_generated += item.completion_tokens
                complete = position == len(last)
                yield item
        except (GeneratorExit, asyncio.CancelledError):
            if not complete:
                self.stats.streams_cancelled += 1
            raise
        except UpstreamError as exc:
            self._count("upstream_" + exc.kind)
            raise
        except EventTooLarge as exc:
            self._count("upstream_malformed")
            raise UpstreamError("malformed", str(exc), status=200) from None
        finally:
            self.stats.active_streams -= 1
            if response is not None:
                await self._finish(response, complete and state.done)

    async def embed(self, call: EmbedCall) -> list[list[float]]:
        self._count("embeds")
        try:
            raw = await self._post(self.embeddings_url, _encode(embed_body(call.inputs, self.model)))
            return parse_embeddings(raw, len(call.inputs), call.dimensions)
        except UpstreamError as exc:
            self._count("upstream_" + exc.kind)
            raise

    async def close(self) -> None:
        session, self._session = self._session, None
        self._timer.close()
        if session is not None and not session.closed:
            await session.close()

    # -- HTTP

    def _session_now(self) -> aiohttp.ClientSession:
        session = self._session
        if session is None or session.closed:
            session = self._session = self._session_factory()
        return session

    async def _post(self, url: URL | str, body: bytes) -> bytes:
        """One plain call: the 2xx body, or the classified failure. The body is
        read whole, which hands the connection back to the pool (no release
        needed); a failed read closes it."""
        session = self._session_now()
        headers = self._fixed if self.credentials is None else await self._token_headers(session)
        try:
            with self._timer.timeout(self._deadlines.total_s):
                response = await session.post(url, data=body, headers=headers, timeout=self._deadlines.call)
                raw = await response.read()
        except http.TRANSPORT_ERRORS as exc:
            raise http.translate(exc) from None
        status = response.status
        if not 200 <= status < 300:
            self._refused(status)
            raise http.status_error(status, response.headers, raw)
        return raw

    async def _open(self, url: URL | str, body: bytes) -> aiohttp.ClientResponse:
        """Start a stream: the response once a 2xx status line is in, ready to read."""
        session = self._session_now()
        headers = self._fixed if self.credentials is None else await self._token_headers(session)
        try:
            response = await session.post(url, data=body, headers=headers, timeout=self._deadlines.stream)
        except http.TRANSPORT_ERRORS as exc:
            raise http.translate(exc) from None
        if 200 <= response.status < 300:
            return response
        try:
            raw = await response.content.read(http.MAX_ERROR_BODY)
        except http.TRANSPORT_ERRORS:
            raw = b""
        finally:
            response.close()
        self._refused(response.status)
        raise http.status_error(response.status, response.headers, raw)

    @staticmethod
    async def _finish(response: aiohttp.ClientResponse, reusable: bool) -> None:
        """Close the stream's connection, so an engine still generating sees the
        client go; after a whole stream, read what follows [DONE] (usually just
        the end of the chunked body) so the connection can go back to the pool."""
        try:
            for _ in range(4 if reusable else 0):
                if response.content.at_eof() or not await response.content.readany():
                    break
        except http.TRANSPORT_ERRORS:
            reusable = False
        finally:
            if reusable and response.content.at_eof():
                response.release()
            else:
                response.close()

    @staticmethod
    async def _read(response: aiohttp.ClientResponse) -> bytes:
        """The next bytes of the stream as they arrive; b"" at its end."""
        try:
            return await response.content.readany()
        except http.TRANSPORT_ERRORS as exc:
            raise http.translate(exc) from None

    def _count(self, name: str) -> None:
        self.stats.extra[name] = self.stats.extra.get(name, 0) + 1


def _url(text: str) -> URL | str:
    """The URL parsed once; left as text when yarl refuses it, so the call
    fails as unreachable (aiohttp's InvalidURL) rather than the backend's creation."""
    try:
        return URL(text)
    except ValueError:
        return text


class OpenAICompatibleBackend(HttpBackend):
    def __init__(self, spec: BackendSpec, session_factory: http.SessionFactory | None = None) -> None:
        super().__init__(spec, session_factory)
        base = spec.url.rstrip("/")
        self.chat_url, self.embeddings_url = _url(base + "/chat/completions"), _url(base + "/embeddings")
        self.model = spec.upstream_model or spec.model
        headers = {"Content-Type": "application/json"}
        if spec.secret:
            headers["Authorization"] = "Bearer " + spec.secret
        self._fixed = http.request_headers(headers)


class AzureBackend(HttpBackend):
    def __init__(self, spec: BackendSpec, session_factory: http.SessionFactory | None = None) -> None:
        super().__init__(spec, session_factory)
        if not spec.deployment:
            raise ValueError(f"azure backend {spec.id!r} has no deployment")
        base = f"{spec.url.rstrip('/')}/openai/deployments/{quote(spec.deployment, safe='')}"
        version = quote(spec.api_version or DEFAULT_AZURE_API_VERSION, safe="")
        self.chat_url = _url(f"{base}/chat/completions?api-version={version}")
        self.embeddings_url = _url(f"{base}/embeddings?api-version={version}")
        if spec.auth.get("client_id"):
            self.credentials = ClientCredentials(spec.auth, spec.secret, spec.timeout_s)
            self.deadline_s = None  # a token fetch (its own timeout_s) may come before the call
        self._fixed = http.request_headers({"Content-Type": "application/json", "api-key": spec.secret})
        self._token = ""
        self._token_fixed = self._fixed

    async def _token_headers(self, session: aiohttp.ClientSession) -> CIMultiDictProxy[str]:
        assert self.credentials is not None
        token = await self.credentials.token(session)
        if token != self._token:  # built once per token, not per call
            self._token_fixed = http.request_headers({"Content-Type": "application/json",
                                                      "Authorization": "Bearer " + token})
            self._token = token
        return self._token_fixed

    def _refused(self, status: int) -> None:
        if status == 401 and self.credentials is not None:
            self.credentials.invalidate()
