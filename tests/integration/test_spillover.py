"""Spillover (wire reference §3.5): a deployment's 429 overflows to another
deployment named by the request header x-ms-spillover-deployment or by the
deployment's spilloverDeploymentName; x-ms-deployment-name then names the
one that served, x-ms-spillover-from-deployment the one that was full."""

from __future__ import annotations

import pytest
import requests

from support.server import start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("home"), demo=True)
    yield server
    server.stop()


def deploy(server, name: str, capacity: int, **properties) -> None:
    path = f"{server.account_path('lapis-demo', 'lapis-demo')}/deployments/{name}"
    answer = server.arm("PUT", path, {"sku": {"name": "Standard", "capacity": capacity}, "properties": {
        "model": {"format": "OpenAI", "name": "gpt-4o-mini"}, **properties}})
    assert answer.status_code in (200, 201), answer.text
    assert answer.json()["properties"].get("spilloverDeploymentName") == properties.get("spilloverDeploymentName")


def chat(server, deployment: str, **headers) -> requests.Response:
    env = server.demo_env()
    return requests.post(f"{env['AZURE_OPENAI_ENDPOINT']}/openai/deployments/{deployment}/chat/completions",
                         params={"api-version": env["AZURE_OPENAI_API_VERSION"]}, timeout=30,
                         headers={"api-key": env["AZURE_OPENAI_KEY"], **headers},
                         json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5})


def exhaust(server, deployment: str) -> None:
    """Capacity 1 is 6 requests a minute, one per 10 s window: the second request is throttled."""
    chat(server, deployment)


def test_the_request_header_sends_a_429_to_the_spillover_deployment(server) -> None:
    deploy(server, "tiny", 1)
    deploy(server, "roomy", 50)
    exhaust(server, "tiny")
    assert chat(server, "tiny").status_code == 429  # no spillover asked for
    spilled = chat(server, "tiny", **{"x-ms-spillover-deployment": "roomy"})
    assert spilled.status_code == 200, spilled.text
    assert spilled.headers["x-ms-deployment-name"] == "roomy"
    assert spilled.headers["x-ms-spillover-from-deployment"] == "tiny"


def test_the_deployment_property_spills_without_a_header(server) -> None:
    deploy(server, "roomy2", 50)
    deploy(server, "tiny2", 1, spilloverDeploymentName="roomy2")
    first = chat(server, "tiny2")
    assert first.status_code == 200 and first.headers["x-ms-deployment-name"] == "tiny2"
    assert "x-ms-spillover-from-deployment" not in first.headers
    spilled = chat(server, "tiny2")
    assert spilled.status_code == 200
    assert (spilled.headers["x-ms-deployment-name"], spilled.headers["x-ms-spillover-from-deployment"]) == (
        "roomy2", "tiny2")


def test_an_unknown_spillover_deployment_leaves_the_429(server) -> None:
    deploy(server, "tiny3", 1)
    exhaust(server, "tiny3")
    answer = chat(server, "tiny3", **{"x-ms-spillover-deployment": "nope"})
    assert answer.status_code == 429
    assert answer.headers["x-ms-deployment-name"] == "tiny3"
