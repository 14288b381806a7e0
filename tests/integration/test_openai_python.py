"""The Python `openai` SDK against a real Lapis process: AzureOpenAI (sync,
async, streaming), the plain OpenAI client on /openai/v1/, and the errors
the SDK raises. Fields are asserted one by one (strict validation cannot be
used against Azure-shaped output; see real-clients.md §1)."""

from __future__ import annotations

import base64
import math
import struct

import openai
import pytest

CHAT = "gpt-4o-mini"
EMBED = "text-embedding-3-small"
MESSAGES = [
    {"role": "system", "content": "You summarize expense notes."},
    {"role": "user", "content": "Taxi from the airport, 42 dollars, client visit."},
]


def azure_client(demo: dict[str, str], **kw) -> openai.AzureOpenAI:
    return openai.AzureOpenAI(azure_endpoint=demo["AZURE_OPENAI_ENDPOINT"], api_key=demo["AZURE_OPENAI_KEY"],
                              api_version=demo["AZURE_OPENAI_API_VERSION"], max_retries=0, **kw)


def check_completion(resp, finish_reasons=("stop", "length")) -> None:
    assert resp.id.startswith("chatcmpl-") and len(resp.id) == len("chatcmpl-") + 29
    assert resp.object == "chat.completion"
    assert isinstance(resp.created, int) and resp.created > 1_700_000_000
    assert resp.model == "gpt-4o-mini-2024-07-18"
    assert resp.system_fingerprint.startswith("fp_")
    choice = resp.choices[0]
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert isinstance(choice.message.content, str) and choice.message.content
    assert choice.finish_reason in finish_reasons
    extra = resp.model_extra
    assert extra["prompt_filter_results"][0]["prompt_index"] == 0
    assert extra["prompt_filter_results"][0]["content_filter_results"]["hate"] == {"filtered": False,
                                                                                  "severity": "safe"}
    assert choice.model_extra["content_filter_results"]["violence"]["severity"] == "safe"
    usage = resp.usage
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_sync_chat_fields_and_headers(demo):
    client = azure_client(demo)
    raw = client.chat.completions.with_raw_response.create(model=CHAT, messages=MESSAGES, max_tokens=40,
                                                           temperature=0.3)
    resp = raw.parse()
    check_completion(resp)
    assert resp.usage.completion_tokens <= 40
    assert raw.headers["x-ms-region"] == "East US"
    assert raw.headers["x-ms-deployment-name"] == CHAT
    assert raw.headers["apim-request-id"] == raw.headers["x-request-id"] == resp._request_id


def test_usage_counts_prompt_with_the_real_tokenizer(demo):
    from lapis import tokens

    resp = azure_client(demo).chat.completions.create(model=CHAT, messages=MESSAGES, max_tokens=10)
    assert resp.usage.prompt_tokens == tokens.count_chat_prompt(MESSAGES, None, "o200k_base")
    assert resp.usage.completion_tokens == tokens.count_text(resp.choices[0].message.content, "o200k_base")


def test_azure_deployment_routes_by_path_not_body(demo):
    client = azure_client(demo, azure_deployment=CHAT)
    resp = client.chat.completions.create(model="ignored-model", messages=MESSAGES, max_tokens=5)
    assert resp.model == "gpt-4o-mini-2024-07-18"


def test_seeded_requests_are_deterministic(demo):
    client = azure_client(demo)
    a = client.chat.completions.create(model=CHAT, messages=MESSAGES, seed=7, max_tokens=30)
    b = client.chat.completions.create(model=CHAT, messages=MESSAGES, seed=7, max_tokens=30)
    assert a.choices[0].message.content == b.choices[0].message.content


async def test_async_chat(demo):
    client = openai.AsyncAzureOpenAI(azure_endpoint=demo["AZURE_OPENAI_ENDPOINT"], api_key=demo["AZURE_OPENAI_KEY"],
                                     api_version="2024-06-01", max_retries=0)
    async with client:
        resp = await client.chat.completions.create(model=CHAT, messages=MESSAGES, max_tokens=20, n=2)
    check_completion(resp)
    assert [c.index for c in resp.choices] == [0, 1]


def test_streaming_sequence(demo):
    client = azure_client(demo)
    chunks = list(client.chat.completions.create(model=CHAT, messages=MESSAGES, max_tokens=25, stream=True,
                                                 stream_options={"include_usage": True}))
    first, role, last_choice, usage_chunk = chunks[0], chunks[1], chunks[-2], chunks[-1]
    assert first.choices == [] and first.id == "" and first.model_extra["prompt_filter_results"]
    assert role.choices[0].delta.role == "assistant" and role.choices[0].delta.content == ""
    assert last_choice.choices[0].finish_reason in ("stop", "length")
    assert usage_chunk.choices == [] and usage_chunk.usage.completion_tokens > 0
    text = "".join(c.choices[0].delta.content or "" for c in chunks[2:-2])
    ids = {c.id for c in chunks[1:]}
    assert len(ids) == 1 and ids.pop().startswith("chatcmpl-")
    assert {c.model for c in chunks[1:]} == {"gpt-4o-mini-2024-07-18"}
    # the stream says what a non-streamed call with the same seed says
    same = client.chat.completions.create(model=CHAT, messages=MESSAGES, max_tokens=25)
    assert text == same.choices[0].message.content
    assert usage_chunk.usage.completion_tokens == same.usage.completion_tokens


def test_stream_helper_handles_the_empty_first_chunk(demo):
    client = azure_client(demo)
    with client.chat.completions.stream(model=CHAT, messages=MESSAGES, max_tokens=500) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.content


def test_embeddings_float_and_base64(demo):
    client = azure_client(demo)
    sdk = client.embeddings.create(model=EMBED, input=["a b c", "d"])  # SDK asks for base64, decodes
    assert [d.index for d in sdk.data] == [0, 1]
    vec = sdk.data[0].embedding
    assert len(vec) == 1536
    assert math.isclose(math.sqrt(sum(x * x for x in vec)), 1.0, abs_tol=1e-5)
    assert sdk.usage.prompt_tokens == sdk.usage.total_tokens == 4
    floats = client.embeddings.create(model=EMBED, input="a b c", encoding_format="float")
    assert floats.data[0].embedding == pytest.approx(vec, abs=1e-6)
    small = client.embeddings.create(model=EMBED, input="a b c", dimensions=256, encoding_format="float")
    assert len(small.data[0].embedding) == 256
    raw = client.embeddings.with_raw_response.create(model=EMBED, input=[[1, 2, 3]], encoding_format="base64")
    item = raw.http_response.json()["data"][0]["embedding"]
    unpacked = struct.unpack("<1536f", base64.b64decode(item))
    assert math.isclose(math.sqrt(sum(x * x for x in unpacked)), 1.0, abs_tol=1e-5)


def test_plain_openai_client_on_v1(demo):
    client = openai.OpenAI(base_url=demo["AZURE_OPENAI_ENDPOINT"] + "/openai/v1/", api_key=demo["AZURE_OPENAI_KEY"],
                           max_retries=0)
    resp = client.chat.completions.create(model=CHAT, messages=MESSAGES, max_tokens=12)
    check_completion(resp)
    emb = client.embeddings.create(model=EMBED, input="hello")
    assert len(emb.data[0].embedding) == 1536
    models = client.models.list()
    assert "gpt-4o-mini-2024-07-18" in [m.id for m in models.data]


def test_unknown_deployment_is_not_found(demo):
    with pytest.raises(openai.NotFoundError) as info:
        azure_client(demo).chat.completions.create(model="no-such-deployment", messages=MESSAGES)
    assert info.value.status_code == 404
    assert info.value.code == "DeploymentNotFound"


def test_wrong_key_is_authentication_error(demo):
    client = openai.AzureOpenAI(azure_endpoint=demo["AZURE_OPENAI_ENDPOINT"], api_key="0" * 32,
                                api_version="2024-10-21", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        client.chat.completions.create(model=CHAT, messages=MESSAGES)
    assert info.value.code == "401"


def test_chat_on_embeddings_deployment_is_operation_not_supported(demo):
    with pytest.raises(openai.BadRequestError) as info:
        azure_client(demo).chat.completions.create(model=EMBED, messages=MESSAGES)
    assert info.value.code == "OperationNotSupported"
    assert "text-embedding-3-small" in info.value.message


def test_tool_call_arguments_match_the_schema(demo):
    import json

    import jsonschema

    params = {"type": "object", "properties": {"city": {"type": "string"},
                                               "unit": {"type": "string", "enum": ["c", "f"]},
                                               "days": {"type": "integer", "minimum": 1, "maximum": 7}},
              "required": ["city", "unit", "days"], "additionalProperties": False}
    tools = [{"type": "function", "function": {"name": "forecast", "parameters": params}}]
    resp = azure_client(demo).chat.completions.create(model=CHAT, messages=MESSAGES, tools=tools,
                                                      tool_choice="required")
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.function.name == "forecast" and call.id.startswith("call_")
    jsonschema.validate(json.loads(call.function.arguments), params)


def test_json_schema_response_format(demo):
    import json

    import jsonschema

    schema = {"type": "object", "properties": {"items": {"type": "array", "items": {"type": "string"},
                                                         "minItems": 1}},
              "required": ["items"], "additionalProperties": False}
    resp = azure_client(demo).chat.completions.create(
        model=CHAT, messages=MESSAGES, response_format={"type": "json_schema",
                                                        "json_schema": {"name": "actions", "schema": schema}})
    jsonschema.validate(json.loads(resp.choices[0].message.content), schema)


def test_streamed_responses_carry_the_request_id(demo):
    import requests

    with requests.post(f"{demo['AZURE_OPENAI_ENDPOINT']}/openai/deployments/{CHAT}/chat/completions",
                       params={"api-version": "2024-10-21"}, headers={"api-key": demo["AZURE_OPENAI_KEY"]},
                       json={"messages": MESSAGES, "stream": True, "max_tokens": 3}, stream=True, timeout=30) as resp:
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        assert resp.headers["apim-request-id"] == resp.headers["x-request-id"]
        assert resp.headers["x-ms-region"] == "East US" and "x-ratelimit-remaining-tokens" in resp.headers
