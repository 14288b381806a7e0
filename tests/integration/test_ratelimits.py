"""Per-deployment limits seen through real clients: headers on every
response, Azure's 429, the Python SDK's retries against the advised wait, and
streams charged for what they generated."""

from __future__ import annotations

import math
import time
import types
import uuid

import openai
import pytest
import requests

from support.server import DEFAULT_SUBSCRIPTION

V = "2024-10-21"
HELLO = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def tiny(lapis_server):
    """An account with a capacity-1 gpt-4o-mini deployment: 1,000 TPM, one request per 10 s."""
    group, name = "rg-limits", f"lim{uuid.uuid4().hex[:8]}"
    lapis_server.arm("PUT", f"/subscriptions/{DEFAULT_SUBSCRIPTION}/resourceGroups/{group}", {"location": "eastus"})
    path = lapis_server.account_path(group, name)
    account = lapis_server.arm("PUT", path, {"kind": "OpenAI", "sku": {"name": "S0"}, "location": "eastus",
                                             "properties": {"customSubDomainName": name}}).json()
    endpoint = account["properties"]["endpoint"].rstrip("/")
    key = lapis_server.arm("POST", f"{path}/listKeys").json()["key1"]
    return types.SimpleNamespace(server=lapis_server, path=path, endpoint=endpoint, key=key)


def deploy(tiny, name: str, capacity: int, model: str = "gpt-4o-mini") -> None:
    resp = tiny.server.arm("PUT", f"{tiny.path}/deployments/{name}", {
        "sku": {"name": "Standard", "capacity": capacity}, "properties": {"model": {"format": "OpenAI", "name": model}}})
    assert resp.status_code in (200, 201), resp.text


def client(tiny, **kw) -> openai.AzureOpenAI:
    return openai.AzureOpenAI(azure_endpoint=tiny.endpoint, api_key=tiny.key, api_version=V, **kw)


def raw_chat(tiny, deployment: str, **body) -> requests.Response:
    return requests.post(f"{tiny.endpoint}/openai/deployments/{deployment}/chat/completions", params={"api-version": V},
                         json={"messages": HELLO, **body} if "messages" not in body else body, headers={"api-key": tiny.key}, timeout=30)


def test_every_response_carries_the_limits(tiny):
    deploy(tiny, "roomy", 10)
    resp = raw_chat(tiny, "roomy", max_tokens=50)
    assert resp.status_code == 200
    h = resp.headers
    assert h["x-ratelimit-limit-tokens"] == "10000" and h["x-ratelimit-limit-requests"] == "60"
    # the estimate was charged (ceil(5 / 4) + 50 = 52); the refund comes after the answer
    assert int(h["x-ratelimit-remaining-tokens"]) == 10000 - 52
    assert h["x-ratelimit-remaining-requests"] == "9"
    second = raw_chat(tiny, "roomy", max_tokens=50)
    used = resp.json()["usage"]["total_tokens"]
    assert int(second.headers["x-ratelimit-remaining-tokens"]) == 10000 - used - 52


def test_429_body_and_headers(tiny):
    deploy(tiny, "tiny429", 1)
    assert raw_chat(tiny, "tiny429", max_tokens=5).status_code == 200
    resp = raw_chat(tiny, "tiny429", max_tokens=5)
    assert resp.status_code == 429
    wait = int(resp.headers["retry-after"])
    assert 1 <= wait <= 11 and abs(int(resp.headers["retry-after-ms"]) / 1000 - wait) < 1  # 10 s window, 1 s buckets
    assert "x-ratelimit-reset-requests" in resp.headers
    assert resp.headers["x-ms-region"] == "East US" and resp.headers["apim-request-id"]
    assert resp.json() == {"error": {"code": "429", "message": (
        "Your requests to tiny429 for gpt-4o-mini in East US have exceeded the call rate limit for your current "
        f"OpenAI S0 pricing tier. This request was for ChatCompletions_Create under Azure OpenAI API version {V}. "
        f"Please retry after {wait} seconds. To increase your default rate limit, visit: "
        "https://aka.ms/oai/quotaincrease.")}}


def test_token_limit_429_says_token_rate_limit(tiny):
    deploy(tiny, "tokens", 2)  # 2,000 TPM, two requests per 10 s
    big = [{"role": "user", "content": "hello " * 1300}]  # estimated 1,950 tokens, ~1,300 real
    assert raw_chat(tiny, "tokens", messages=big, max_tokens=1).status_code == 200
    time.sleep(0.1)
    resp = raw_chat(tiny, "tokens", messages=big, max_tokens=1)
    assert resp.status_code == 429
    assert "exceeded the token rate limit" in resp.json()["error"]["message"]
    assert resp.headers["policy-id"] == "DeploymentRatelimit-Token"
    assert "x-ratelimit-reset-tokens" in resp.headers


def test_sdk_retries_after_the_advised_wait(tiny):
    deploy(tiny, "retry", 1)
    sdk = client(tiny, max_retries=0)
    sdk.chat.completions.create(model="retry", messages=HELLO, max_tokens=5)
    with pytest.raises(openai.RateLimitError) as info:
        sdk.chat.completions.create(model="retry", messages=HELLO, max_tokens=5)
    advised = int(info.value.response.headers["retry-after-ms"]) / 1000
    started = time.monotonic()
    resp = client(tiny).chat.completions.create(model="retry", messages=HELLO, max_tokens=5)  # default retries
    waited = time.monotonic() - started
    assert resp.choices[0].message.content
    assert abs(waited - advised) < 1.0, (waited, advised)


def test_sdk_gives_up_after_three_attempts(tiny, monkeypatch):
    """A request bigger than the whole TPM can never fit: the SDK tries three
    times, each time told to wait (its sleeps are recorded, not slept)."""
    import openai._base_client as base

    slept: list[float] = []
    monkeypatch.setattr(base, "time", types.SimpleNamespace(sleep=slept.append, time=time.time))
    deploy(tiny, "never", 1)
    before = _denied(tiny.server)
    with pytest.raises(openai.RateLimitError):
        client(tiny).chat.completions.create(model="never", messages=HELLO, max_tokens=5000)
    assert _denied(tiny.server) - before == 3
    assert slept == [60.0, 60.0]


def test_stream_is_charged_for_what_it_generated(tiny):
    deploy(tiny, "streamy", 10)
    with requests.post(f"{tiny.endpoint}/openai/deployments/streamy/chat/completions", params={"api-version": V},
                       json={"messages": HELLO, "max_tokens": 2000, "stream": True}, headers={"api-key": tiny.key},
                       stream=True, timeout=30) as resp:
        assert resp.headers["x-ratelimit-remaining-tokens"] == str(10000 - 2 - 2000)
        lines = [line for line in resp.iter_lines() if line]
    assert lines[-1] == b"data: [DONE]"
    time.sleep(0.2)  # the refund is off the hot path
    after = raw_chat(tiny, "streamy", max_tokens=1)
    remaining = int(after.headers["x-ratelimit-remaining-tokens"])
    # charged: the stream's prompt + generated tokens (well under 2,000), then this call's estimate
    assert 10000 - 2000 < remaining < 10000 - 3


def _denied(server) -> int:
    stats = requests.get(f"{server.url}/lapis/admin/stats", headers={"Authorization": f"Bearer {server.admin_token}"},
                         timeout=10).json()
    return stats["limits"]["denied"]


def test_capacity_change_applies_to_the_next_request(tiny):
    deploy(tiny, "grow", 1)
    assert raw_chat(tiny, "grow", max_tokens=5).status_code == 200
    assert raw_chat(tiny, "grow", max_tokens=5).status_code == 429
    deploy(tiny, "grow", 20)
    resp = raw_chat(tiny, "grow", max_tokens=5)
    assert resp.status_code == 200 and resp.headers["x-ratelimit-limit-tokens"] == "20000"
    assert math.isclose(int(resp.headers["x-ratelimit-limit-requests"]), 120)


def test_provisioned_deployment_reports_utilization(lapis_server):
    group, name = "rg-ptu", f"ptu{uuid.uuid4().hex[:8]}"
    lapis_server.arm("PUT", f"/subscriptions/{DEFAULT_SUBSCRIPTION}/resourceGroups/{group}", {"location": "eastus2"})
    path = lapis_server.account_path(group, name)
    account = lapis_server.arm("PUT", path, {"kind": "OpenAI", "sku": {"name": "S0"}, "location": "eastus2",
                                             "properties": {"customSubDomainName": name}}).json()
    resp = lapis_server.arm("PUT", f"{path}/deployments/ptu", {
        "sku": {"name": "ProvisionedManaged", "capacity": 15},
        "properties": {"model": {"format": "OpenAI", "name": "gpt-4o-mini"}}})
    assert resp.status_code == 201, resp.text
    ptu = types.SimpleNamespace(endpoint=account["properties"]["endpoint"].rstrip("/"),
                                key=lapis_server.arm("POST", f"{path}/listKeys").json()["key1"])
    ok = raw_chat(ptu, "ptu", max_tokens=10_000)
    assert ok.status_code == 200
    assert ok.headers["azure-openai-deployment-utilization"].endswith("%")
    assert float(ok.headers["azure-openai-deployment-utilization"][:-1]) > 0
    assert "x-ratelimit-remaining-tokens" not in ok.headers
    # 15 PTU serve 555,000 tokens a minute; 128 x 16,384 can never fit
    denied = raw_chat(ptu, "ptu", max_tokens=16_384, n=128)
    assert denied.status_code == 429
    assert int(denied.headers["retry-after-ms"]) > 0 and "retry-after" in denied.headers
