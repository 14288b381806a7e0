"""OpenAI-compatible backend against the fake engine, in-process: answers,
streams, request bodies, and every failure classified at the boundary."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from aiohttp import web

from lapis.backends.base import ChatCall, Delta, EmbedCall, ToolCall, UpstreamError, Usage
from lapis.backends.simulator import SimulatorBackend
from lapis.backends.upstream import AzureBackend, OpenAICompatibleBackend, make_backend
from lapis.serving.specs import BackendSpec
from support.fake_upstream import ARGUMENT_PIECES, FakeUpstream

TEXT = "Hello from the fake upstream."
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}},
         {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}]


def make_call(**kw: Any) -> ChatCall:
    base: dict[str, Any] = {"model": "gpt-4o-mini", "version": "2024-07-18",
                            "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 100}
    base.update(kw)
    return ChatCall(**base)


def spec_for(fake: FakeUpstream, **kw: Any) -> BackendSpec:
    base: dict[str, Any] = {"id": "engine-1", "region": "eastus", "model": "gpt-4o-mini", "kind": "openai-compatible",
                            "url": fake.base_url, "upstream_model": "qwen2.5-0.5b", "timeout_s": 5.0}
    base.update(kw)
    return BackendSpec(**base)


@pytest.fixture()
async def fake() -> FakeUpstream:
    async with FakeUpstream() as server:
        yield server


@pytest.fixture()
async def backend(fake: FakeUpstream) -> OpenAICompatibleBackend:
    engine = OpenAICompatibleBackend(spec_for(fake, secret="sk-engine"))
    yield engine
    await engine.close()


async def collect(backend: Any, call: ChatCall) -> list[Delta | Usage]:
    return [item async for item in backend.chat_stream(call)]


def text_of(items: list[Delta | Usage], index: int = 0) -> str:
    return "".join(i.content or "" for i in items if isinstance(i, Delta) and i.index == index)


async def test_chat_returns_choices_and_usage(fake: FakeUpstream, backend: OpenAICompatibleBackend) -> None:
    result = await backend.chat(make_call())
    assert [(c.index, c.content, c.finish_reason) for c in result.choices] == [(0, TEXT, "stop")]
    assert result.usage == Usage(prompt_tokens=5, completion_tokens=6)
    seen = fake.requests[-1]
    assert seen.path == "/v1/chat/completions"
    assert seen.headers["Authorization"] == "Bearer sk-engine"
    assert seen.body == {"messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 100,
                         "temperature": 1.0, "model": "qwen2.5-0.5b"}
    assert backend.stats.tokens_generated == 6


async def test_usage_absent_gives_none(fake: FakeUpstream, backend: OpenAICompatibleBackend) -> None:
    fake.usage = False
    assert (await backend.chat(make_call())).usage is None
    items = await collect(backend, make_call())
    assert not any(isinstance(i, Usage) for i in items)
    assert text_of(items) == TEXT and items[-1] == Delta(index=0, finish_reason="stop")


async def test_every_field_and_extra_reach_the_engine(fake: FakeUpstream, backend: OpenAICompatibleBackend) -> None:
    extra = {"top_p": 0.5, "user": "u-1", "logit_bias": {"50256": -100}, "presence_penalty": 0.1,
             "stream": False, "model": "not-this-one"}
    call = make_call(n=2, stop=("END",), temperature=0.2, seed=7, tools=TOOLS, tool_choice="auto",
                     response_format={"type": "text"}, max_tokens=3, extra=extra)
    await backend.chat(call)
    body = fake.requests[-1].body
    assert body["n"] == 2 and body["stop"] == ["END"] and body["temperature"] == 0.2 and body["seed"] == 7
    assert body["tools"] == TOOLS and body["tool_choice"] == "auto" and body["response_format"] == {"type": "text"}
    assert body["max_tokens"] == 3
    assert {k: body[k] for k in ("top_p", "user", "logit_bias", "presence_penalty")} == {
        "top_p": 0.5, "user": "u-1", "logit_bias": {"50256": -100}, "presence_penalty": 0.1}
    assert body["model"] == "qwen2.5-0.5b" and "stream" not in body  # the gateway's own fields win
    await collect(backend, call)
    body = fake.requests[-1].body
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["top_p"] == 0.5


async def test_the_same_headers_every_call_and_no_cookies_kept(fake: FakeUpstream) -> None:
    """Headers are built once per backend: the auth, User-Agent, and what aiohttp would add itself.
    An engine's Set-Cookie is never sent back: the next call may be another tenant's."""
    seen: list[dict[str, str]] = []

    async def chat(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        response = web.json_response({"choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}]})
        response.set_cookie("affinity", f"tenant-{len(seen)}")
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # noqa: SLF001
    engine = OpenAICompatibleBackend(spec_for(fake, url=f"http://localhost:{port}/v1", secret="sk-engine"))
    try:
        for _ in range(3):
            assert (await engine.chat(make_call())).choices[0].content == "ok"
    finally:
        await engine.close()
        await runner.cleanup()
    assert len(seen) == 3 and all("Cookie" not in h for h in seen)
    for headers in seen:
        assert {k: headers[k] for k in ("Authorization", "Content-Type", "User-Agent", "Accept")} == {
            "Authorization": "Bearer sk-engine", "Content-Type": "application/json", "User-Agent": "lapis-gateway",
            "Accept": "*/*"}
        assert "gzip" in headers["Accept-Encoding"] and headers["Host"] == f"localhost:{port}"


async def test_a_url_yarl_refuses_fails_the_call_not_the_backend(fake: FakeUpstream) -> None:
    engine = make_backend(spec_for(fake, url="http://[::1/v1"))
    try:
        with pytest.raises(UpstreamError) as raised:
            await engine.chat(make_call())
    finally:
        await engine.close()
    assert raised.value.kind == "unreachable"


async def test_max_tokens_cap_gives_length(backend: OpenAICompatibleBackend) -> None:
    result = await backend.chat(make_call(max_tokens=2))
    assert result.choices[0].content == "Hello from" and result.choices[0].finish_reason == "length"


async def test_stream_relays_content_then_finish_then_usage(fake: FakeUpstream,
                                                            backend: OpenAICompatibleBackend) -> None:
    items = await collect(backend, make_call())
    assert [i.content for i in items[:-2]] == ["Hello", " from", " the", " fake", " upstream", "."]
    assert items[-2] == Delta(index=0, finish_reason="stop")
    assert items[-1] == Usage(prompt_tokens=5, completion_tokens=6)
    assert backend.stats.streams_cancelled == 0 and backend.stats.active_streams == 0
    assert fake.streams_completed == 1


async def test_stream_interleaved_choices(backend: OpenAICompatibleBackend) -> None:
    items = await collect(backend, make_call(n=3))
    for index in range(3):
        assert text_of(items, index) == TEXT
        finishes = [i for i in items if isinstance(i, Delta) and i.index == index and i.finish_reason]
        assert finishes == [Delta(index=index, finish_reason="stop")]
    assert items[-1] == Usage(prompt_tokens=5, completion_tokens=18)


async def test_parallel_tool_calls_plain_and_streamed(backend: OpenAICompatibleBackend) -> None:
    arguments = "".join(ARGUMENT_PIECES)
    expected = (ToolCall("call_fake0", "get_weather", arguments), ToolCall("call_fake1", "get_time", arguments))
    result = await backend.chat(make_call(tools=TOOLS, tool_choice="auto"))
    assert result.choices[0].tool_calls == expected and result.choices[0].finish_reason == "tool_calls"
    assert result.choices[0].content is None
    items = await collect(backend, make_call(tools=TOOLS, tool_choice="auto"))
    deltas = [i for i in items if isinstance(i, Delta)]
    # fragments are joined: the calls go out whole, in one Delta, before the finish
    assert deltas == [Delta(index=0, tool_calls=expected), Delta(index=0, finish_reason="tool_calls")]


async def test_streams_reuse_the_connection(fake: FakeUpstream, backend: OpenAICompatibleBackend) -> None:
    await collect(backend, make_call())
    await collect(backend, make_call())
    await backend.chat(make_call())
    peers = {seen.peer for seen in fake.requests}
    assert len(fake.requests) == 3 and len(peers) == 1


@pytest.mark.parametrize("mode, kind, status, retry_after", [
    ("429", "rate_limited", 429, 1.5),
    ("500", "unavailable", 500, None),
    ("503", "unavailable", 503, None),
    ("400", "rejected", 400, None),
    ("malformed", "malformed", 200, None),
    ("die", "unreachable", 0, None),
    ("hang", "timeout", 0, None),
])
async def test_plain_failures_are_classified(fake: FakeUpstream, mode: str, kind: str, status: int,
                                             retry_after: float | None) -> None:
    fake.mode = mode
    engine = OpenAICompatibleBackend(spec_for(fake, timeout_s=0.5))
    try:
        with pytest.raises(UpstreamError) as raised:
            await engine.chat(make_call())
    finally:
        await engine.close()
    error = raised.value
    assert (error.kind, error.status, error.retry_after) == (kind, status, retry_after)
    assert engine.stats.extra["upstream_" + kind] == 1
    if mode == "400":
        assert error.message == "max_tokens is too large for this model."


@pytest.mark.parametrize("mode, kind, status, retry_after", [
    ("429", "rate_limited", 429, 1.5),
    ("503", "unavailable", 503, None),
    ("400", "rejected", 400, None),
    ("hang", "timeout", 0, None),
])
async def test_stream_failures_before_the_first_piece(fake: FakeUpstream, mode: str, kind: str, status: int,
                                                      retry_after: float | None) -> None:
    fake.mode = mode
    engine = OpenAICompatibleBackend(spec_for(fake, timeout_s=0.5))
    try:
        with pytest.raises(UpstreamError) as raised:
            await collect(engine, make_call())
    finally:
        await engine.close()
    assert (raised.value.kind, raised.value.status, raised.value.retry_after) == (kind, status, retry_after)


@pytest.mark.parametrize("mode, kind", [("die", "unreachable"), ("truncate", "malformed"),
                                        ("malformed", "malformed"), ("stall", "timeout")])
async def test_stream_failures_mid_stream_raise_from_the_generator(fake: FakeUpstream, mode: str, kind: str) -> None:
    fake.mode = mode
    engine = OpenAICompatibleBackend(spec_for(fake, timeout_s=0.5))
    received: list[Delta | Usage] = []
    try:
        with pytest.raises(UpstreamError) as raised:
            async for item in engine.chat_stream(make_call()):
                received.append(item)
    finally:
        await engine.close()
    assert raised.value.kind == kind
    assert received == [Delta(index=0, content="Hello")]  # what came before the failure was relayed
    assert engine.stats.active_streams == 0 and engine.stats.extra["upstream_" + kind] == 1


async def test_refused_connection_is_unreachable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens once the socket is closed
    spec = BackendSpec(id="gone", region="eastus", model="gpt-4o-mini", kind="openai-compatible",
                       url=f"http://127.0.0.1:{port}/v1", timeout_s=2)
    engine = OpenAICompatibleBackend(spec)
    try:
        for attempt in (engine.chat(make_call()), collect(engine, make_call()),
                        engine.embed(EmbedCall("text-embedding-3-small", "1", ["a"], 8))):
            with pytest.raises(UpstreamError) as raised:
                await attempt
            assert raised.value.kind == "unreachable"
    finally:
        await engine.close()


async def test_closing_the_stream_closes_the_upstream_connection(fake: FakeUpstream,
                                                                 backend: OpenAICompatibleBackend) -> None:
    fake.mode = "slow"
    stream = backend.chat_stream(make_call())
    first = [await stream.__anext__() for _ in range(3)]
    assert [d.content for d in first] == ["Hello"] * 3
    await stream.aclose()
    await asyncio.wait_for(fake.disconnected.wait(), 10)  # a guard, not a timing assertion
    assert fake.disconnects == 1 and fake.streams_completed == 0
    assert backend.stats.streams_cancelled == 1 and backend.stats.active_streams == 0


async def test_cancelling_the_consumer_closes_the_upstream_connection(fake: FakeUpstream,
                                                                      backend: OpenAICompatibleBackend) -> None:
    fake.mode = "slow"
    got_one = asyncio.Event()

    async def consume() -> None:
        async for _ in backend.chat_stream(make_call()):
            got_one.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(got_one.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(fake.disconnected.wait(), 10)
    assert fake.disconnects == 1 and fake.streams_completed == 0
    assert backend.stats.streams_cancelled == 1


async def test_leaving_before_the_first_byte_closes_the_upstream_connection(fake: FakeUpstream) -> None:
    fake.mode = "hang"  # the engine is still working on its first token
    engine = OpenAICompatibleBackend(spec_for(fake, timeout_s=60))
    task = asyncio.create_task(collect(engine, make_call()))
    try:
        while not fake.requests:  # the request reached the engine
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(fake.disconnected.wait(), 10)
    finally:
        await engine.close()
    assert fake.disconnects == 1 and engine.stats.streams_cancelled == 1 and engine.stats.active_streams == 0


async def test_embeddings(fake: FakeUpstream, backend: OpenAICompatibleBackend) -> None:
    full = await backend.embed(EmbedCall("text-embedding-3-small", "1", ["one", "two"], 8))
    assert fake.requests[-1].path == "/v1/embeddings"
    assert fake.requests[-1].body == {"input": ["one", "two"], "encoding_format": "float", "model": "qwen2.5-0.5b"}
    assert len(full) == 2 and all(len(v) == 8 for v in full) and full[0] != full[1]
    assert all(abs(sum(x * x for x in v) - 1) < 1e-9 for v in full)
    short = await backend.embed(EmbedCall("text-embedding-3-small", "1", ["one", "two"], 4))
    norm = sum(x * x for x in full[0][:4]) ** 0.5
    assert short[0] == pytest.approx([x / norm for x in full[0][:4]])
    with pytest.raises(UpstreamError) as raised:
        await backend.embed(EmbedCall("text-embedding-3-small", "1", ["one"], 16))
    assert raised.value.kind == "malformed"


async def test_close_is_idempotent_and_a_later_call_reopens(backend: OpenAICompatibleBackend) -> None:
    await backend.chat(make_call())
    await backend.close()
    await backend.close()
    assert (await backend.chat(make_call())).choices[0].content == TEXT


def test_make_backend_by_kind() -> None:
    base = {"id": "b", "region": "eastus", "model": "gpt-4o-mini"}
    simulator = make_backend(BackendSpec(kind="simulator", **base))
    assert isinstance(simulator, SimulatorBackend) and simulator.ttft_ms == 0 and simulator.token_ms == 0
    assert isinstance(make_backend(BackendSpec(kind="openai-compatible", url="http://127.0.0.1:9/v1", **base)),
                      OpenAICompatibleBackend)
    assert isinstance(make_backend(BackendSpec(kind="azure", url="http://127.0.0.1:9", deployment="d", **base)),
                      AzureBackend)
    for bad in (BackendSpec(kind="bedrock", url="http://x", **base), BackendSpec(kind="openai-compatible", **base),
                BackendSpec(kind="azure", url="http://127.0.0.1:9", **base),
                BackendSpec(kind="azure", url="http://127.0.0.1:9", deployment="d", auth={"client_id": "c"}, **base)):
        with pytest.raises(ValueError):
            make_backend(bad)
