"""Deployments beyond the demo's two: legacy completions (non-streamed and
streamed) and ada-002's refusal of `dimensions`, through the Python SDK."""

from __future__ import annotations

import openai
import pytest



@pytest.fixture(scope="module")
def client(lapis_server, demo) -> openai.AzureOpenAI:
    path = lapis_server.account_path("lapis-demo", "lapis-demo")
    for name, model in (("instruct", "gpt-35-turbo-instruct"), ("ada", "text-embedding-ada-002")):
        resp = lapis_server.arm("PUT", f"{path}/deployments/{name}", {
            "sku": {"name": "Standard", "capacity": 10}, "properties": {"model": {"format": "OpenAI", "name": model}}})
        assert resp.status_code in (200, 201), resp.text
    return openai.AzureOpenAI(azure_endpoint=demo["AZURE_OPENAI_ENDPOINT"], api_key=demo["AZURE_OPENAI_KEY"],
                              api_version="2024-10-21", max_retries=0)


def test_legacy_completions(client):
    resp = client.completions.create(model="instruct", prompt="Write a tagline", max_tokens=8, n=2)
    assert resp.object == "text_completion" and resp.id.startswith("cmpl-")
    assert resp.model == "gpt-35-turbo-instruct-0914"
    assert [c.index for c in resp.choices] == [0, 1]
    assert all(c.text and c.finish_reason in ("stop", "length") for c in resp.choices)
    assert resp.usage.completion_tokens <= 16
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens


def test_legacy_completions_default_to_16_tokens(client):
    resp = client.completions.create(model="instruct", prompt="Write a long story about the sea")
    assert resp.usage.completion_tokens <= 16


def test_legacy_completions_stream(client):
    plain = client.completions.create(model="instruct", prompt="Say something", max_tokens=12, seed=3)
    chunks = list(client.completions.create(model="instruct", prompt="Say something", max_tokens=12, seed=3,
                                            stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == plain.choices[0].text
    assert chunks[-1].usage.completion_tokens == plain.usage.completion_tokens


def test_chat_on_a_completions_model_is_not_supported(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="instruct", messages=[{"role": "user", "content": "hi"}])
    assert info.value.code == "OperationNotSupported"


def test_ada_refuses_dimensions(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model="ada", input="x", dimensions=64)
    assert info.value.body == {"message": "This model does not support specifying dimensions.",
                               "type": "invalid_request_error", "param": None, "code": None}
    assert len(client.embeddings.create(model="ada", input="x").data[0].embedding) == 1536
