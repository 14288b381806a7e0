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
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator
from urllib.parse import quote

import aiohttp
import msgspec

from lapis.backends import http
from lapis.backends.base import Backend, BackendStats, ChatCall, Completion, Delta, EmbedCall, UpstreamError, Usage
from lapis.backends.chunks import StreamState
from lapis.backends.entra import ClientCredentials
from lapis.backends.openai_wire import chat_body, embed_body, parse_completion, parse_embeddings
from lapis.backends.simulator import SimulatorBackend
from lapis.backends.sse import EventTooLarge, SSEDecoder
from lapis.serving.specs import BACKEND_KINDS, BackendSpec

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

    def __init__(self, spec: BackendSpec, session_factory: http.SessionFactory | None = None) -> None:
        if not spec.url:
            raise ValueError(f"backend {spec.id!r} has no url")
        self.spec = spec
        self.stats = BackendStats()
        self._session_factory = session_factory or http.default_session
        self._session: aiohttp.ClientSession | None = None
        self._deadlines = http.Deadlines(spec.timeout_s)
        self.chat_url = self.embeddings_url = ""

    # -- subclass hooks

    async def _headers(self, session: aiohttp.ClientSession) -> dict[str, str]:
        return {"Content-Type": "application/json"}

    def _refused(self, status: int) -> None:
        """Called with the status of every non-2xx answer (AzureBackend drops a refused token)."""

    # -- the Backend protocol

    async def chat(self, call: ChatCall) -> Completion:
        self._count("calls")
        try:
            raw = await self._post(self.chat_url, chat_body(call, self.model, stream=False))
            completion = parse_completion(raw)
        except UpstreamError as exc:
            self._count("upstream_" + exc.kind)
            raise
        if completion.usage is not None:
            self.stats.tokens_generated += completion.usage.completion_tokens
        return completion

    async def chat_stream(self, call: ChatCall) -> AsyncIterator[Delta | Usage]:
        self._count("streams")
        body = _encode(chat_body(call, self.model, stream=True))
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
            raw = await self._post(self.embeddings_url, embed_body(call.inputs, self.model))
            return parse_embeddings(raw, len(call.inputs), call.dimensions)
        except UpstreamError as exc:
            self._count("upstream_" + exc.kind)
            raise

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

    # -- HTTP

    def _session_now(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = self._session_factory()
        return self._session

    async def _post(self, url: str, body: dict[str, Any]) -> bytes:
        """One plain call: the 2xx body, or the classified failure."""
        session = self._session_now()
        headers = await self._headers(session)
        try:
            async with session.post(url, data=_encode(body), headers=headers, timeout=self._deadlines.call) as resp:
                raw = await resp.read()
                status, answer_headers = resp.status, resp.headers
        except http.TRANSPORT_ERRORS as exc:
            raise http.translate(exc) from None
        if not 200 <= status < 300:
            self._refused(status)
            raise http.status_error(status, answer_headers, raw)
        return raw

    async def _open(self, url: str, body: bytes) -> aiohttp.ClientResponse:
        """Start a stream: the response once a 2xx status line is in, ready to read."""
        session = self._session_now()
        headers = await self._headers(session)
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


class OpenAICompatibleBackend(HttpBackend):
    def __init__(self, spec: BackendSpec, session_factory: http.SessionFactory | None = None) -> None:
        super().__init__(spec, session_factory)
        base = spec.url.rstrip("/")
        self.chat_url, self.embeddings_url = base + "/chat/completions", base + "/embeddings"
        self.model = spec.upstream_model or spec.model
        self._fixed = {"Content-Type": "application/json"}
        if spec.secret:
            self._fixed["Authorization"] = "Bearer " + spec.secret

    async def _headers(self, session: aiohttp.ClientSession) -> dict[str, str]:
        return self._fixed


class AzureBackend(HttpBackend):
    def __init__(self, spec: BackendSpec, session_factory: http.SessionFactory | None = None) -> None:
        super().__init__(spec, session_factory)
        if not spec.deployment:
            raise ValueError(f"azure backend {spec.id!r} has no deployment")
        base = f"{spec.url.rstrip('/')}/openai/deployments/{quote(spec.deployment, safe='')}"
        version = quote(spec.api_version or DEFAULT_AZURE_API_VERSION, safe="")
        self.chat_url = f"{base}/chat/completions?api-version={version}"
        self.embeddings_url = f"{base}/embeddings?api-version={version}"
        self.credentials = ClientCredentials(spec.auth, spec.secret, spec.timeout_s) \
            if spec.auth.get("client_id") else None
        self._fixed = {"Content-Type": "application/json", "api-key": spec.secret}

    async def _headers(self, session: aiohttp.ClientSession) -> dict[str, str]:
        if self.credentials is None:
            return self._fixed
        token = await self.credentials.token(session)
        return {"Content-Type": "application/json", "Authorization": "Bearer " + token}

    def _refused(self, status: int) -> None:
        if status == 401 and self.credentials is not None:
            self.credentials.invalidate()
