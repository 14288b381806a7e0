"""A small but real OpenAI-compatible engine (aiohttp on 127.0.0.1) for tests and benchmarks.

In a test:   async with FakeUpstream() as fake: ... fake.base_url ("http://127.0.0.1:N/v1")
As a process: python -m tests.support.fake_upstream --port N  (or start_process())

Routes: POST /v1/chat/completions, /v1/embeddings, the same under /{mode}/v1/,
the Azure paths /openai/deployments/{d}/chat/completions|embeddings (api-key
or a bearer token issued here; api-version required), POST
/{tenant}/oauth2/v2.0/token (client credentials), GET /v1/models.

Modes: `fake.mode`, overridden per request by the header x-fake-mode or by a
/{mode}/v1/ path prefix.

    normal     "Hello from the fake upstream." one word a chunk, capped at
               max_tokens (finish "length"); with tools (and tool_choice not
               "none"): one call per tool, at most two, arguments streamed in
               pieces; n choices, interleaved; usage unless fake.usage is False
    nousage    normal without usage
    slow       stream: 200 chunks, fake.chunk_delay seconds apart
    429        429, retry-after-ms 1500 and retry-after 2
    400 500 503  error bodies in OpenAI's shape
    hang       no answer until the client leaves
    stall      stream: headers and one chunk, then nothing
    malformed  200 with a body that is not the protocol (both kinds)
    die        stream: two chunks, then the connection is cut; plain: cut at once
    truncate   stream: two chunks, then a clean end without finish or [DONE]

Records: `requests` (the last 100: path, query, headers, JSON body, client port), `disconnects`
and the `disconnected` event (a client left before its answer was complete),
`streams_completed`, `token_requests`.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import functools
import hashlib
import math
import socket
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import msgspec
from aiohttp import web

WORDS = ("Hello", " from", " the", " fake", " upstream", ".")
ARGUMENT_PIECES = ('{"location": ', '"Paris"}')
CREATED = 1_700_000_000
_encode = msgspec.json.encode
DONE = b"data: [DONE]\n\n"


@dataclass
class Seen:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    peer: int  # the client's port: the same on a reused keep-alive connection


def _error(status: int, message: str, kind: str = "invalid_request_error", headers: dict | None = None) -> web.Response:
    body = _encode({"error": {"message": message, "type": kind, "param": None, "code": str(status)}})
    return web.Response(status=status, body=body, content_type="application/json", headers=headers)


def _sse(payload: Any) -> bytes:
    return b"data: " + _encode(payload) + b"\n\n"


def _chunk(model: str, choices: list[dict], usage: Any = None) -> bytes:
    return _sse({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": CREATED, "model": model,
                 "choices": choices, "usage": usage})


def _usage(prompt: int, completion: int) -> dict[str, Any]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": 0}}


def _plan(cap: int, tools: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...], str]:
    """(words, tool names, finish) of every choice."""
    if tools:
        return (), tools[:2], "tool_calls"
    words = WORDS[:max(cap, 0)]
    return words, (), "length" if len(words) < len(WORDS) else "stop"


@functools.lru_cache(maxsize=512)
def _completion(model: str, n: int, cap: int, tools: tuple[str, ...], prompt: int, usage: bool) -> bytes:
    """A whole answer, encoded once per shape: the benchmark's fast path."""
    words, names, finish = _plan(cap, tools)
    calls = [{"id": f"call_fake{i}", "type": "function",
              "function": {"name": name, "arguments": "".join(ARGUMENT_PIECES)}} for i, name in enumerate(names)]
    message: dict[str, Any] = {"role": "assistant", "content": "".join(words) if not names else None}
    if calls:
        message["tool_calls"] = calls
    choices = [{"index": i, "message": message, "finish_reason": finish, "logprobs": None} for i in range(n)]
    body = {"id": "chatcmpl-fake", "object": "chat.completion", "created": CREATED, "model": model,
            "choices": choices, "usage": _usage(prompt, n * (len(words) + 5 * len(names))) if usage else None}
    return _encode(body)


def _stream_events(model: str, n: int, cap: int, tools: tuple[str, ...], prompt: int, usage: bool) -> list[bytes]:
    words, names, finish = _plan(cap, tools)
    events = [_chunk(model, [{"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
                             for i in range(n)])]
    for word in words:
        events += [_chunk(model, [{"index": i, "delta": {"content": word}, "finish_reason": None}])
                   for i in range(n)]
    for position, name in enumerate(names):
        for i in range(n):
            first = {"index": position, "id": f"call_fake{position}", "type": "function",
                     "function": {"name": name, "arguments": ""}}
            events.append(_chunk(model, [{"index": i, "delta": {"tool_calls": [first]}, "finish_reason": None}]))
            for piece in ARGUMENT_PIECES:
                fragment = {"index": position, "function": {"arguments": piece}}
                events.append(_chunk(model, [{"index": i, "delta": {"tool_calls": [fragment]},
                                              "finish_reason": None}]))
    events += [_chunk(model, [{"index": i, "delta": {}, "finish_reason": finish}]) for i in range(n)]
    if usage:
        events.append(_chunk(model, [], _usage(prompt, n * (len(words) + 5 * len(names)))))
    return events + [DONE]


class FakeUpstream:
    def __init__(self, mode: str = "normal", usage: bool = True, api_key: str = "fake-azure-key",
                 bearer: str = "", client_id: str = "fake-client", client_secret: str = "fake-secret",
                 chunk_delay: float = 0.02, token_lifetime: int = 3599, embedding_dims: int = 8,
                 record: bool = True) -> None:
        self.mode, self.usage, self.api_key, self.bearer = mode, usage, api_key, bearer
        self.record = record  # off in the child process: nobody reads it there, and the benchmark saves the work
        self.client_id, self.client_secret, self.token_lifetime = client_id, client_secret, token_lifetime
        self.chunk_delay, self.embedding_dims = chunk_delay, embedding_dims
        self.requests: collections.deque[Seen] = collections.deque(maxlen=100)
        self.disconnects = 0
        self.streams_completed = 0
        self.token_requests = 0
        self.issued: set[str] = set()
        self.disconnected = asyncio.Event()
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_post("/{mode}/v1/chat/completions", self._chat)
        app.router.add_post("/{mode}/v1/embeddings", self._embeddings)
        app.router.add_post("/openai/deployments/{deployment}/chat/completions", self._azure(self._chat))
        app.router.add_post("/openai/deployments/{deployment}/embeddings", self._azure(self._embeddings))
        app.router.add_post("/{tenant}/oauth2/v2.0/token", self._token)
        app.router.add_get("/v1/models", self._models)
        return app

    async def start(self, port: int = 0) -> FakeUpstream:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        self.port = sock.getsockname()[1]
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeUpstream:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- handlers

    def _mode(self, request: web.Request) -> str:
        return request.headers.get("x-fake-mode") or request.match_info.get("mode") or self.mode

    async def _seen(self, request: web.Request) -> Any:
        raw = await request.read()
        try:
            body = msgspec.json.decode(raw) if raw else None
        except msgspec.DecodeError:
            body = None
        if self.record:
            peer = request.transport.get_extra_info("peername")[1] if request.transport else 0
            self.requests.append(Seen(request.path, dict(request.query), dict(request.headers), body, peer))
        return body

    def _left(self) -> None:
        self.disconnects += 1
        self.disconnected.set()

    async def _hold(self, request: web.Request) -> web.StreamResponse:
        """Answer nothing until the client goes away."""
        while request.transport is not None and not request.transport.is_closing():
            await asyncio.sleep(0.01)
        self._left()
        return web.Response()  # aiohttp finds the connection gone and lets it be

    async def _failure(self, request: web.Request, mode: str, stream: bool) -> web.StreamResponse | None:
        if mode == "429":
            return _error(429, "Too many requests, slow down.", "rate_limit_exceeded",
                          {"retry-after-ms": "1500", "retry-after": "2"})
        if mode in ("400", "500", "503"):
            status = int(mode)
            message = "max_tokens is too large for this model." if status == 400 else "The engine is overloaded."
            return _error(status, message, "invalid_request_error" if status == 400 else "server_error")
        if mode == "hang":
            return await self._hold(request)
        if mode == "die" and not stream:
            request.transport.close()
            return web.Response()
        if mode == "malformed" and not stream:
            return web.Response(body=b"<html>this is not json</html>", content_type="application/json")
        return None

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await self._seen(request)
        if not self._authorized(request):
            return _error(401, "Incorrect API key provided.", "invalid_request_error")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return _error(400, "'messages' is a required property")
        mode, stream = self._mode(request), bool(body.get("stream"))
        failure = await self._failure(request, mode, stream)
        if failure is not None:
            return failure
        tools = tuple(str((t.get("function") or {}).get("name")) for t in body.get("tools") or ()) \
            if body.get("tool_choice") != "none" else ()
        prompt = sum(len(str(m.get("content") or "").split()) + 3 for m in body["messages"] if isinstance(m, dict))
        shape = (str(body.get("model") or request.match_info.get("deployment", "")), int(body.get("n") or 1),
                 int(body.get("max_tokens") or 1000), tools, prompt)
        usage = self.usage and mode != "nousage"
        if not stream:
            return web.Response(body=_completion(*shape, usage), content_type="application/json")
        wants_usage = usage and bool((body.get("stream_options") or {}).get("include_usage"))
        return await self._stream(request, mode, _stream_events(*shape, wants_usage))

    async def _stream(self, request: web.Request, mode: str, events: list[bytes]) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        if mode == "slow":
            events = events[:1] + events[1:2] * 200 + events[1:]
        elif mode in ("die", "truncate", "stall", "malformed"):
            events = events[:2] + ([b"data: {not json\n\n"] if mode == "malformed" else [])
        try:
            for number, event in enumerate(events):
                if mode == "slow" and number:
                    await asyncio.sleep(self.chunk_delay)
                if request.transport is None or request.transport.is_closing():
                    raise ConnectionResetError("client left")
                await response.write(event)
        except ConnectionError:
            self._left()
            return response
        if mode == "stall":
            return await self._hold(request)
        if mode == "die":
            request.transport.close()
            return response
        await response.write_eof()
        if mode != "truncate":
            self.streams_completed += 1
        return response

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        body = await self._seen(request)
        if not self._authorized(request):
            return _error(401, "Incorrect API key provided.")
        failure = await self._failure(request, self._mode(request), False)
        if failure is not None:
            return failure
        inputs = (body or {}).get("input")
        inputs = inputs if isinstance(inputs, list) and not all(isinstance(x, int) for x in inputs) else [inputs]
        data = [{"object": "embedding", "index": i, "embedding": self._vector(item)} for i, item in enumerate(inputs)]
        return web.json_response({"object": "list", "data": data, "model": (body or {}).get("model"),
                                  "usage": {"prompt_tokens": len(inputs), "total_tokens": len(inputs)}})

    def _vector(self, item: Any) -> list[float]:
        digest = hashlib.sha256(_encode(item)).digest()
        raw = [b - 127.5 for b in digest[: self.embedding_dims]]
        norm = math.sqrt(sum(x * x for x in raw))
        return [x / norm for x in raw]

    # -- auth

    def _authorized(self, request: web.Request) -> bool:
        authorization = request.headers.get("Authorization", "")
        if "deployment" in request.match_info:
            token = authorization.removeprefix("Bearer ")
            return request.headers.get("api-key") == self.api_key or token in self.issued
        return not self.bearer or authorization == "Bearer " + self.bearer

    def _azure(self, handler: Any) -> Any:
        async def azure(request: web.Request) -> web.StreamResponse:
            if not request.query.get("api-version"):
                return web.json_response({"error": {"code": "404", "message": "Resource not found"}}, status=404)
            if not self._authorized(request):
                await self._seen(request)
                return web.json_response({"error": {"code": "401", "message": "Access denied due to invalid "
                                                    "subscription key or wrong API endpoint."}}, status=401)
            return await handler(request)
        return azure

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        self.token_requests += 1
        if (form.get("grant_type") != "client_credentials" or form.get("client_id") != self.client_id
                or form.get("client_secret") != self.client_secret
                or form.get("scope") != "https://cognitiveservices.azure.com/.default"):
            return web.json_response({"error": "invalid_client", "error_description":
                                      "AADSTS7000215: Invalid client secret provided."}, status=401)
        token = f"fake-token-{self.token_requests}-{request.match_info['tenant']}"
        self.issued.add(token)
        return web.json_response({"token_type": "Bearer", "expires_in": self.token_lifetime,
                                  "ext_expires_in": self.token_lifetime, "access_token": token})

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "fake-model", "object": "model"}]})


def start_process(port: int = 0, *args: str, cwd: str | None = None) -> tuple[subprocess.Popen, str]:
    """Run the fake as a child process; (process, base URL) once it listens. Stop it with terminate()."""
    proc = subprocess.Popen([sys.executable, "-m", "tests.support.fake_upstream", "--port", str(port), *args],
                            stdout=subprocess.PIPE, text=True, cwd=cwd)
    line = proc.stdout.readline().strip() if proc.stdout else ""
    if not line.startswith("http://"):
        proc.kill()
        raise RuntimeError(f"fake upstream did not start: {line!r}")
    return proc, line


async def _serve(args: argparse.Namespace) -> None:
    fake = FakeUpstream(mode=args.mode, usage=not args.no_usage, chunk_delay=args.chunk_delay, record=False)
    await fake.start(args.port)
    print(fake.url, flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description="A fake OpenAI-compatible engine on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--mode", default="normal")
    parser.add_argument("--no-usage", action="store_true")
    parser.add_argument("--chunk-delay", type=float, default=0.02)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    try:
        asyncio.run(_serve(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
