"""The fake engine as a child process (as integration tests and the benchmark
run it): the official openai client accepts what it sends, and a path prefix
picks a mode without touching the process."""

from __future__ import annotations

import dataclasses

import openai
import pytest

from lapis.backends.base import ChatCall, Delta, UpstreamError, Usage
from lapis.backends.upstream import OpenAICompatibleBackend
from lapis.serving.specs import BackendSpec
from support.fake_upstream import start_process
from support.server import ROOT

CALL = ChatCall(model="gpt-4o-mini", version="2024-07-18", messages=[{"role": "user", "content": "Hi."}],
                max_tokens=50)


@pytest.fixture(scope="module")
def fake_url() -> str:
    proc, url = start_process(0, cwd=str(ROOT))
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def test_official_client_reads_the_fake(fake_url: str) -> None:
    client = openai.OpenAI(base_url=fake_url + "/v1", api_key="unused", max_retries=0)
    answer = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "Hi."}])
    assert answer.choices[0].message.content == "Hello from the fake upstream."
    assert answer.usage is not None and answer.usage.completion_tokens == 6
    tools = [{"type": "function", "function": {"name": f, "parameters": {"type": "object"}}} for f in ("a", "b")]
    with client.chat.completions.stream(model="m", messages=[{"role": "user", "content": "Hi."}],
                                        tools=tools) as stream:
        final = stream.get_final_completion()
    calls = [(c.id, c.function.name, c.function.arguments) for c in final.choices[0].message.tool_calls or []]
    assert calls == [("call_fake0", "a", '{"location": "Paris"}'), ("call_fake1", "b", '{"location": "Paris"}')]
    with pytest.raises(openai.RateLimitError):
        openai.OpenAI(base_url=fake_url + "/429/v1", api_key="unused", max_retries=0).chat.completions.create(
            model="m", messages=[{"role": "user", "content": "Hi."}])


async def test_backend_against_the_process(fake_url: str) -> None:
    spec = BackendSpec(id="p", region="eastus", model="gpt-4o-mini", kind="openai-compatible",
                       url=fake_url + "/v1", upstream_model="m")
    engine = OpenAICompatibleBackend(spec)
    busy = OpenAICompatibleBackend(dataclasses.replace(spec, url=fake_url + "/503/v1"))
    try:
        items = [item async for item in engine.chat_stream(CALL)]
        with pytest.raises(UpstreamError) as raised:
            await busy.chat(CALL)
    finally:
        await engine.close()
        await busy.close()
    assert "".join(i.content or "" for i in items if isinstance(i, Delta)) == "Hello from the fake upstream."
    assert isinstance(items[-1], Usage)
    assert (raised.value.kind, raised.value.status) == ("unavailable", 503)
