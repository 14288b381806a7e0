"""AzureBackend against the fake engine's Azure paths: api-key, and Entra
client credentials with a token fetched once and reused."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from lapis.backends.base import ChatCall, Delta, EmbedCall, UpstreamError, Usage
from lapis.backends.upstream import DEFAULT_AZURE_API_VERSION, AzureBackend
from lapis.serving.specs import BackendSpec
from support.fake_upstream import FakeUpstream

TEXT = "Hello from the fake upstream."
CALL = ChatCall(model="gpt-4o-mini", version="2024-07-18", messages=[{"role": "user", "content": "Hi."}],
                max_tokens=50)


def azure_spec(fake: FakeUpstream, **kw: Any) -> BackendSpec:
    base: dict[str, Any] = {"id": "aoai-westus", "region": "westus", "model": "gpt-4o-mini", "kind": "azure",
                            "url": fake.url + "/", "deployment": "prod gpt", "api_version": "2024-10-21",
                            "secret": fake.api_key, "timeout_s": 5.0}
    base.update(kw)
    return BackendSpec(**base)


def entra_spec(fake: FakeUpstream, **kw: Any) -> BackendSpec:
    auth = {"tenant": "contoso-tenant", "client_id": fake.client_id, "authority": fake.url}
    return azure_spec(fake, auth=auth, secret=fake.client_secret, **kw)


@pytest.fixture()
async def fake() -> FakeUpstream:
    async with FakeUpstream() as server:
        yield server


async def test_key_auth_chat_stream_and_embeddings(fake: FakeUpstream) -> None:
    engine = AzureBackend(azure_spec(fake))
    try:
        result = await engine.chat(CALL)
        items = [item async for item in engine.chat_stream(CALL)]
        vectors = await engine.embed(EmbedCall("text-embedding-3-small", "1", ["a"], 8))
    finally:
        await engine.close()
    assert result.choices[0].content == TEXT and result.usage == Usage(prompt_tokens=4, completion_tokens=6)
    assert "".join(i.content or "" for i in items if isinstance(i, Delta)) == TEXT
    assert isinstance(items[-1], Usage)
    chat, stream, embed = list(fake.requests)
    assert chat.path == "/openai/deployments/prod gpt/chat/completions"
    assert chat.query == {"api-version": "2024-10-21"}
    assert chat.headers["api-key"] == fake.api_key and "Authorization" not in chat.headers
    assert "model" not in chat.body  # the deployment names the model
    assert stream.body["stream"] is True and stream.body["stream_options"] == {"include_usage": True}
    assert embed.path == "/openai/deployments/prod gpt/embeddings" and "model" not in embed.body
    assert len(vectors) == 1 and len(vectors[0]) == 8


async def test_api_version_defaults_to_ga(fake: FakeUpstream) -> None:
    engine = AzureBackend(azure_spec(fake, api_version=""))
    try:
        await engine.chat(CALL)
    finally:
        await engine.close()
    assert fake.requests[-1].query == {"api-version": DEFAULT_AZURE_API_VERSION}


async def test_wrong_key_makes_the_member_unavailable_with_azures_message(fake: FakeUpstream) -> None:
    engine = AzureBackend(azure_spec(fake, secret="wrong"))
    try:
        with pytest.raises(UpstreamError) as raised:
            await engine.chat(CALL)
    finally:
        await engine.close()
    assert (raised.value.kind, raised.value.status) == ("unavailable", 401)  # a misconfigured member: fail over
    assert "Access denied due to invalid subscription key" in raised.value.message


async def test_client_credentials_token_fetched_once_and_reused(fake: FakeUpstream) -> None:
    engine = AzureBackend(entra_spec(fake))
    try:
        await asyncio.gather(*(engine.chat(CALL) for _ in range(5)))  # concurrent: still one fetch
        [item async for item in engine.chat_stream(CALL)]
        await engine.embed(EmbedCall("text-embedding-3-small", "1", ["a"], 8))
    finally:
        await engine.close()
    assert fake.token_requests == 1 and engine.credentials is not None and engine.credentials.fetches == 1
    tokens = {seen.headers.get("Authorization") for seen in fake.requests}
    assert tokens == {"Bearer fake-token-1-contoso-tenant"}
    assert not any("api-key" in seen.headers for seen in fake.requests)


async def test_expired_token_is_fetched_again(fake: FakeUpstream) -> None:
    fake.token_lifetime = 1  # refreshed half-way through its life: at once for this test's purposes
    engine = AzureBackend(entra_spec(fake))
    try:
        await engine.chat(CALL)
        assert engine.credentials is not None
        engine.credentials._refresh_at = 0.0  # the clock moved past the refresh point
        await engine.chat(CALL)
    finally:
        await engine.close()
    assert fake.token_requests == 2
    assert fake.requests[-1].headers["Authorization"] == "Bearer fake-token-2-contoso-tenant"


async def test_refused_token_is_dropped_and_the_next_call_gets_a_new_one(fake: FakeUpstream) -> None:
    engine = AzureBackend(entra_spec(fake))
    try:
        await engine.chat(CALL)
        fake.issued.clear()  # the upstream no longer accepts the cached token
        with pytest.raises(UpstreamError) as raised:
            await engine.chat(CALL)
        assert (raised.value.kind, raised.value.status) == ("unavailable", 401)
        assert (await engine.chat(CALL)).choices[0].content == TEXT
    finally:
        await engine.close()
    assert fake.token_requests == 2


async def test_bad_client_secret_is_this_members_outage(fake: FakeUpstream) -> None:
    engine = AzureBackend(dataclasses.replace(entra_spec(fake), secret="wrong"))
    try:
        with pytest.raises(UpstreamError) as raised:
            await engine.chat(CALL)
    finally:
        await engine.close()
    assert (raised.value.kind, raised.value.status) == ("unavailable", 401)
    assert "AADSTS7000215" in raised.value.message and raised.value.retryable
    assert not any(seen.path.startswith("/openai/") for seen in fake.requests)  # no call without a token


async def test_token_endpoint_down_is_unreachable(fake: FakeUpstream) -> None:
    spec = entra_spec(fake)
    engine = AzureBackend(dataclasses.replace(spec, auth={**spec.auth, "authority": "http://127.0.0.1:9"}))
    try:
        with pytest.raises(UpstreamError) as raised:
            await engine.chat(CALL)
    finally:
        await engine.close()
    assert raised.value.kind == "unreachable"


async def test_azure_failures_map_like_any_engine(fake: FakeUpstream) -> None:
    fake.mode = "429"
    engine = AzureBackend(azure_spec(fake))
    try:
        with pytest.raises(UpstreamError) as raised:
            await engine.chat(CALL)
    finally:
        await engine.close()
    assert (raised.value.kind, raised.value.retry_after) == ("rate_limited", 1.5)
