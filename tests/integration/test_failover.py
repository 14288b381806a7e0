"""Failover, residency, pools and upstream errors, through the `openai` client
against a real server (issue 5). Engines are the built-in simulator and the
fake OpenAI-compatible engine (tests/support/fake_upstream.py) as a process.
"""

from __future__ import annotations

import json

import openai
import pytest
import requests

from support.fake_upstream import start_process
from support.server import DEFAULT_SUBSCRIPTION, ROOT, start_server

ACCOUNT = f"/subscriptions/{DEFAULT_SUBSCRIPTION}/resourceGroups/lapis-demo/providers/Microsoft.CognitiveServices/accounts"


def admin(server, method: str, path: str, body=None) -> requests.Response:
    return requests.request(method, f"{server.url}/lapis/admin/{path}", json=body, timeout=30,
                            headers={"Authorization": f"Bearer {server.admin_token}"})


def client(server) -> openai.AzureOpenAI:
    env = server.demo_env()
    return openai.AzureOpenAI(azure_endpoint=env["AZURE_OPENAI_ENDPOINT"], api_key=env["AZURE_OPENAI_KEY"],
                              api_version=env["AZURE_OPENAI_API_VERSION"], max_retries=0)


def deploy(server, account: str, name: str, sku: str, group: str = "lapis-demo") -> None:
    path = f"{server.account_path(group, account)}/deployments/{name}"
    answer = server.arm("PUT", path, {"sku": {"name": sku, "capacity": 100},
                                      "properties": {"model": {"format": "OpenAI", "name": "gpt-4o-mini"}}})
    assert answer.status_code in (200, 201), answer.text


def ask(c: openai.AzureOpenAI, deployment: str):
    return c.chat.completions.with_raw_response.create(
        model=deployment, messages=[{"role": "user", "content": "hi"}], max_tokens=5)


@pytest.fixture(scope="module")
def engine():
    proc, url = start_process(cwd=str(ROOT))
    yield url + "/v1"
    proc.terminate()
    proc.wait(10)


@pytest.fixture()
def server(tmp_path):
    server = start_server(tmp_path / "home", demo=True)
    yield server
    server.stop()


def test_global_deployment_fails_over_to_another_region_and_standard_stays_home(server, engine) -> None:
    for region in ("eastus", "westus"):
        body = {"region": region, "model": "gpt-4o-mini", "kind": "openai-compatible", "url": engine,
                "upstreamModel": "fake"}
        assert admin(server, "PUT", f"backends/{region}-engine", body).status_code in (200, 201)
    deploy(server, "lapis-demo", "global-mini", "GlobalStandard")
    c = client(server)
    assert ask(c, "global-mini").headers["x-lapis-served-region"] == "eastus"  # home region first

    assert admin(server, "PUT", "faults/region/eastus", {"rate503": 1.0}).status_code in (200, 201)
    served = {ask(c, "global-mini").headers["x-lapis-served-region"] for _ in range(20)}
    assert served == {"westus"}  # never a 503 while another region is healthy

    # Standard: the same failing region, and nothing leaves it. A request
    # sent to westus would have succeeded (it just did, 20 times).
    for _ in range(5):
        with pytest.raises(openai.InternalServerError) as failure:
            ask(c, "gpt-4o-mini")
        assert failure.value.status_code == 503
        assert failure.value.response.json() == {"error": {
            "code": "ServiceUnavailable",
            "message": "The service is temporarily unable to process your request. Please try again later."}}
        assert failure.value.response.headers["x-ms-region"] == "East US"

    assert admin(server, "DELETE", "faults").status_code in (200, 204)
    assert ask(c, "gpt-4o-mini").headers["x-lapis-served-region"] == "eastus"


def test_simulated_regions_fail_over_too(server) -> None:
    deploy(server, "lapis-demo", "global-mini", "GlobalStandard")
    assert admin(server, "PUT", "faults/region/eastus", {"down": True}).status_code in (200, 201)
    c = client(server)
    regions = {ask(c, "global-mini").headers["x-lapis-served-region"] for _ in range(10)}
    assert regions and "eastus" not in regions


def test_pool_prefers_priority_one_and_fails_over_to_the_other_account(server) -> None:
    west = server.account_path("lapis-demo", "lapis-west")
    answer = server.arm("PUT", west, {"kind": "OpenAI", "sku": {"name": "S0"}, "location": "westus",
                                      "properties": {"customSubDomainName": "lapis-west"}})
    assert answer.status_code in (200, 201), answer.text
    deploy(server, "lapis-west", "west-mini", "Standard")
    front = f"{ACCOUNT}/lapis-demo/deployments/gpt-4o-mini"
    assert admin(server, "PUT", "pools/mini", {"deploymentId": front, "members": [
        {"id": "east", "kind": "deployment", "target": front, "priority": 1},
        {"id": "west", "kind": "deployment", "target": f"{ACCOUNT}/lapis-west/deployments/west-mini",
         "priority": 2}]}).status_code in (200, 201)
    c = client(server)
    first = [ask(c, "gpt-4o-mini").headers for _ in range(10)]
    assert {(h["x-ms-deployment-name"], h["x-lapis-served-region"]) for h in first} == {("gpt-4o-mini", "eastus")}

    assert admin(server, "PUT", "faults/member/member:mini/east", {"rate503": 1.0}).status_code in (200, 201)
    later = [ask(c, "gpt-4o-mini").headers for _ in range(10)]
    assert {(h["x-ms-deployment-name"], h["x-lapis-served-region"]) for h in later} == {("west-mini", "westus")}


def test_a_stream_cut_midway_ends_with_an_in_band_error_and_done(server) -> None:
    assert admin(server, "PUT", "faults/region/eastus", {"cutAfter": 3}).status_code in (200, 201)
    env = server.demo_env()
    answer = requests.post(f"{env['AZURE_OPENAI_ENDPOINT']}/openai/deployments/gpt-4o-mini/chat/completions",
                           params={"api-version": env["AZURE_OPENAI_API_VERSION"]},
                           headers={"api-key": env["AZURE_OPENAI_KEY"]}, stream=True, timeout=30,
                           json={"messages": [{"role": "user", "content": "hi"}], "stream": True,
                                 "max_tokens": 50})
    assert answer.status_code == 200
    events = [line[6:] for line in answer.iter_lines(decode_unicode=True) if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    error = json.loads(events[-2])["error"]
    assert error["code"] == "ServiceUnavailable"
    # Azure's first event, the role chunk, the three items relayed before the cut, the error, [DONE].
    assert len(events) == 1 + 1 + 3 + 2


@pytest.mark.parametrize("mode,status,code", [
    ("429", 429, "429"), ("503", 503, "ServiceUnavailable"), ("500", 503, "ServiceUnavailable"),
    ("malformed", 500, None), ("400", 400, None),
])
def test_upstream_failures_map_to_azures_errors(server, engine, mode, status, code) -> None:
    url = engine.replace("/v1", f"/{mode}/v1")
    body = {"region": "eastus", "model": "gpt-4o-mini", "kind": "openai-compatible", "url": url,
            "upstreamModel": "fake", "timeoutSeconds": 2}
    assert admin(server, "PUT", "backends/broken", body).status_code in (200, 201)
    env = server.demo_env()
    answer = requests.post(f"{env['AZURE_OPENAI_ENDPOINT']}/openai/deployments/gpt-4o-mini/chat/completions",
                           params={"api-version": env["AZURE_OPENAI_API_VERSION"]},
                           headers={"api-key": env["AZURE_OPENAI_KEY"]}, timeout=60,
                           json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5})
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error.get("code") == code
    if mode == "429":
        assert int(answer.headers["retry-after"]) >= 1
        assert error["message"].startswith("The system is currently experiencing high demand")
    if mode == "malformed":
        assert error["type"] == "server_error" and answer.headers["apim-request-id"] in error["message"]
    assert "Traceback" not in answer.text
