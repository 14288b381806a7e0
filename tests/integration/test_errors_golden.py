"""Golden error bodies: every data-plane error Lapis answers with, byte for
byte, over raw HTTP against a real server. The expected bytes are written
out here from shared/docs/azure-wire-reference.md (and docs/wire-decisions.md
where the reference had no capture), not computed by Lapis's own code."""

from __future__ import annotations

import json

import pytest
import requests

V = "2024-10-21"


def post(demo, path: str, body: bytes | str, headers: dict | None = None, version: str | None = V):
    url = f"{demo['AZURE_OPENAI_ENDPOINT']}/openai/{path}"
    params = {"api-version": version} if version is not None else {}
    hdrs = {"api-key": demo["AZURE_OPENAI_KEY"], "Content-Type": "application/json"}
    hdrs.update(headers or {})
    return requests.post(url, params=params, data=body, headers=hdrs, timeout=30)


def chat(demo, body, **kw):
    payload = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return post(demo, "deployments/gpt-4o-mini/chat/completions", payload, **kw)


HELLO = [{"role": "user", "content": "hello"}]


def expect(resp, status: int, body: bytes) -> None:
    assert resp.status_code == status, resp.text
    assert resp.content == body
    assert resp.headers["Content-Type"].startswith("application/json")
    assert resp.headers["apim-request-id"]


def test_missing_api_version(demo):
    expect(chat(demo, {"messages": HELLO}, version=None), 404,
           b'{"error":{"code":"404","message": "Resource not found"}}')


def test_unknown_path(demo):
    expect(post(demo, "deployments/gpt-4o-mini/chat/complete", "{}"), 404,
           b'{"error":{"code":"404","message": "Resource not found"}}')


def test_unsupported_api_version(demo):
    expect(chat(demo, {"messages": HELLO}, version="2099-01-01"), 400,
           b'{"error":{"code":"BadRequest","message":"API version not supported"}}')


INVALID_KEY = (b'{"error":{"code":"401","message":"Access denied due to invalid subscription key or wrong API '
               b'endpoint. Make sure to provide a valid key for an active subscription and use a correct regional '
               b'API endpoint for your resource."}}')


def test_wrong_key(demo):
    resp = chat(demo, {"messages": HELLO}, headers={"api-key": "f" * 32})
    expect(resp, 401, INVALID_KEY)
    assert resp.headers["Content-Length"] == "224"


def test_missing_key(demo):
    url = f"{demo['AZURE_OPENAI_ENDPOINT']}/openai/deployments/gpt-4o-mini/chat/completions"
    expect(requests.post(url, params={"api-version": V}, json={"messages": HELLO}, timeout=30), 401, INVALID_KEY)


def test_bearer_token_on_legacy_route(demo):
    url = f"{demo['AZURE_OPENAI_ENDPOINT']}/openai/deployments/gpt-4o-mini/chat/completions"
    resp = requests.post(url, params={"api-version": V}, json={"messages": HELLO},
                         headers={"Authorization": "Bearer not-a-token"}, timeout=30)
    assert resp.status_code == 401
    assert resp.json() == {"statusCode": 401, "message": "Unauthorized. Access token is missing, invalid, audience "
                           "is incorrect (https://cognitiveservices.azure.com), or have expired."}


def test_deployment_not_found(demo):
    resp = post(demo, "deployments/nope/chat/completions", json.dumps({"messages": HELLO}))
    expect(resp, 404, b'{"error":{"code":"DeploymentNotFound","message":"The API deployment for this resource does '
                      b'not exist. If you created the deployment within the last 5 minutes, please wait a moment '
                      b'and try again."}}')


def test_chat_on_embeddings_deployment(demo):
    resp = post(demo, "deployments/text-embedding-3-small/chat/completions", json.dumps({"messages": HELLO}))
    expect(resp, 400, b'{"error":{"code":"OperationNotSupported","message":"The chatCompletion operation does not '
                      b'work with the specified model, text-embedding-3-small. Please choose different model and try '
                      b'again. You can learn more about which models can be used with each operation here: '
                      b'https://go.microsoft.com/fwlink/?linkid=2197993."}}')


def test_embeddings_on_chat_deployment(demo):
    resp = post(demo, "deployments/gpt-4o-mini/embeddings", json.dumps({"input": "x"}))
    expect(resp, 400, b'{"error":{"code":"OperationNotSupported","message":"The embeddings operation does not '
                      b'work with the specified model, gpt-4o-mini. Please choose different model and try '
                      b'again. You can learn more about which models can be used with each operation here: '
                      b'https://go.microsoft.com/fwlink/?linkid=2197993."}}')


def model_error(message: str, param: str | None = None, code: str | None = None, type_="invalid_request_error"):
    return json.dumps({"error": {"message": message, "type": type_, "param": param, "code": code}},
                      separators=(",", ":")).encode()


def test_unrecognized_argument(demo):
    expect(chat(demo, {"messages": HELLO, "frequencyPenalty": 1}), 400,
           model_error("Unrecognized request argument supplied: frequencyPenalty"))


def test_unrecognized_arguments_plural(demo):
    body = {"messages": HELLO, "frequencyPenalty": 1, "presencePenalty": 1, "topP": 1}
    expect(chat(demo, body), 400,
           model_error("Unrecognized request arguments supplied: frequencyPenalty, presencePenalty, topP"))


def test_invalid_json(demo):
    expect(chat(demo, b'{"messages": [{"role": "user", "content": "hi"}'), 400, model_error(
        "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP "
        "library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. If you "
        "have trouble figuring out how to fix this, please contact us through our help center at help.openai.com.)"))


@pytest.mark.parametrize("field,value,message", [
    ("temperature", "hot", "Invalid type for 'temperature': expected a decimal, but got a string instead."),
    ("max_tokens", "10", "Invalid type for 'max_tokens': expected an integer, but got a string instead."),
    ("stream", 1, "Invalid type for 'stream': expected a boolean, but got an integer instead."),
])
def test_wrong_types(demo, field, value, message):
    expect(chat(demo, {"messages": HELLO, field: value}), 400, model_error(message, field, "invalid_type"))


def test_wrong_type_nested_path(demo):
    expect(chat(demo, {"messages": "x"}), 400,
           model_error("Invalid type for 'messages': expected an array, but got a string instead.", "messages",
                       "invalid_type"))


def test_missing_messages(demo):
    expect(chat(demo, {"max_tokens": 5}), 400,
           model_error("Missing required parameter: 'messages'.", "messages", "missing_required_parameter"))


def test_empty_messages(demo):
    expect(chat(demo, {"messages": []}), 400, model_error(
        "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
        "messages", "empty_array"))


def test_n_above_maximum(demo):
    expect(chat(demo, {"messages": HELLO, "n": 130}), 400, model_error(
        "Invalid 'n': integer above maximum value. Expected a value <= 128, but got 130 instead.", "n",
        "integer_above_max_value"))


def test_max_tokens_too_large(demo):
    expect(chat(demo, {"messages": HELLO, "max_tokens": 20000}), 400, model_error(
        "max_tokens is too large: 20000. This model supports at most 16384 completion tokens, whereas you provided "
        "20000.", "max_tokens", "invalid_value"))


def test_context_length_exceeded(demo):
    from lapis import tokens

    messages = [{"role": "user", "content": "hello " * 130_000}]
    prompt = tokens.count_chat_prompt(messages, None, "o200k_base")
    expect(chat(demo, {"messages": messages}), 400, model_error(
        f"This model's maximum context length is 128000 tokens. However, your messages resulted in {prompt} tokens. "
        "Please reduce the length of the messages.", "messages", "context_length_exceeded"))


def test_context_length_exceeded_with_completion(demo):
    from lapis import tokens

    messages = [{"role": "user", "content": "hello " * 120_000}]
    prompt = tokens.count_chat_prompt(messages, None, "o200k_base")
    expect(chat(demo, {"messages": messages, "max_tokens": 16000}), 400, model_error(
        f"This model's maximum context length is 128000 tokens. However, you requested {prompt + 16000} tokens "
        f"({prompt} in the messages, 16000 in the completion). Please reduce the length of the messages or "
        "completion.", "messages", "context_length_exceeded"))


def test_oversized_body(demo):
    body = b'{"messages":[{"role":"user","content":"' + b"a" * (17 * 1024 * 1024) + b'"}]}'
    expect(chat(demo, body), 413, b'{"error":{"code":"413","message":"The request body is too large. The maximum '
                                  b'request size is 16777216 bytes."}}')


def test_text_plain_body_is_parsed_as_json(demo):
    resp = chat(demo, json.dumps({"messages": HELLO}), headers={"Content-Type": "text/plain;charset=UTF-8"})
    assert resp.status_code == 200
    assert resp.json()["object"] == "chat.completion"


def test_embeddings_bad_encoding_format(demo):
    resp = post(demo, "deployments/text-embedding-3-small/embeddings",
                json.dumps({"input": "x", "encoding_format": "hex"}))
    expect(resp, 400, model_error("Invalid value: 'hex'. Supported values are: 'float' and 'base64'.",
                                  "encoding_format", "invalid_value"))


def test_embeddings_too_many_inputs(demo):
    resp = post(demo, "deployments/text-embedding-3-small/embeddings", json.dumps({"input": ["x"] * 2049}))
    expect(resp, 400, model_error(
        "Too many inputs. The max number of inputs is 2048.  We hope to increase the number of inputs per request "
        "soon. Please contact us through an Azure support request at: "
        "https://go.microsoft.com/fwlink/?linkid=2213926 for further questions."))


def test_v1_rejects_unknown_api_version(demo):
    url = f"{demo['AZURE_OPENAI_ENDPOINT']}/openai/v1/chat/completions"
    resp = requests.post(url, params={"api-version": "2024-10-21"}, json={"model": "gpt-4o-mini", "messages": HELLO},
                         headers={"Authorization": f"Bearer {demo['AZURE_OPENAI_KEY']}"}, timeout=30)
    expect(resp, 400, b'{"error":{"code":"BadRequest","message":"API version not supported"}}')


@pytest.mark.parametrize("version", [None, "v1", "preview", "latest"])
def test_v1_accepts_its_versions(demo, version):
    url = f"{demo['AZURE_OPENAI_ENDPOINT']}/openai/v1/chat/completions"
    params = {"api-version": version} if version else {}
    resp = requests.post(url, params=params, json={"model": "gpt-4o-mini", "messages": HELLO},
                         headers={"Authorization": f"Bearer {demo['AZURE_OPENAI_KEY']}"}, timeout=30)
    assert resp.status_code == 200 and resp.json()["model"] == "gpt-4o-mini-2024-07-18"
