"""How an account is reached: its path endpoint, the Host header, the regional
endpoint; isolation between accounts; keys and network switches taking effect
at once; and a stream that stops when its client leaves."""

from __future__ import annotations

import socket
import time
import uuid

import requests

from support.server import DEFAULT_SUBSCRIPTION

V = "2024-10-21"
BODY = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 5}


def make_account(server, group: str, subdomain: str | None, deployment: str = "chat") -> tuple[str, str, str]:
    """(endpoint, key1, ARM path) of a new account with one gpt-4o-mini deployment."""
    server.arm("PUT", f"/subscriptions/{DEFAULT_SUBSCRIPTION}/resourceGroups/{group}", {"location": "eastus"})
    name = f"acct{uuid.uuid4().hex[:8]}"
    props = {"customSubDomainName": subdomain} if subdomain else {}
    path = server.account_path(group, name)
    account = server.arm("PUT", path, {"kind": "OpenAI", "sku": {"name": "S0"}, "location": "eastus",
                                       "properties": props}).json()
    server.arm("PUT", f"{path}/deployments/{deployment}", {
        "sku": {"name": "Standard", "capacity": 10}, "properties": {"model": {"format": "OpenAI", "name": "gpt-4o-mini"}}})
    key = server.arm("POST", f"{path}/listKeys").json()["key1"]
    return account["properties"]["endpoint"].rstrip("/"), key, path


def chat(endpoint: str, key: str, deployment: str = "chat", **kw) -> requests.Response:
    return requests.post(f"{endpoint}/openai/deployments/{deployment}/chat/completions", params={"api-version": V},
                         json=BODY, headers={"api-key": key, **kw.pop("headers", {})}, timeout=30, **kw)


def test_host_header_routing(lapis_server):
    sub = f"host{uuid.uuid4().hex[:8]}"
    _, key, _ = make_account(lapis_server, "rg-endpoints", sub)
    resp = requests.post(f"{lapis_server.url}/openai/deployments/chat/chat/completions", params={"api-version": V},
                         json=BODY, headers={"api-key": key, "Host": f"{sub}.openai.azure.com"}, timeout=30)
    assert resp.status_code == 200, resp.text
    unknown = requests.post(f"{lapis_server.url}/openai/deployments/chat/chat/completions", params={"api-version": V},
                            json=BODY, headers={"api-key": key, "Host": "nobody.openai.azure.com"}, timeout=30)
    assert unknown.status_code == 404


def test_regional_endpoint_finds_the_account_by_key(lapis_server):
    endpoint, key, _ = make_account(lapis_server, "rg-endpoints", None)
    assert endpoint == f"{lapis_server.url}/regions/eastus"
    assert chat(endpoint, key).status_code == 200
    assert chat(endpoint, "0" * 32).status_code == 401
    assert chat(f"{lapis_server.url}/regions/westus", key).status_code == 401


def test_accounts_do_not_see_each_others_deployments_or_keys(lapis_server):
    ep_a, key_a, _ = make_account(lapis_server, "rg-endpoints", f"a{uuid.uuid4().hex[:8]}", "only-a")
    ep_b, key_b, _ = make_account(lapis_server, "rg-endpoints", f"b{uuid.uuid4().hex[:8]}", "only-b")
    assert chat(ep_a, key_a, "only-a").status_code == 200
    assert chat(ep_a, key_b, "only-a").status_code == 401
    assert chat(ep_a, key_a, "only-b").json()["error"]["code"] == "DeploymentNotFound"


def test_regenerated_key_stops_working_at_once(lapis_server):
    endpoint, key, path = make_account(lapis_server, "rg-endpoints", f"k{uuid.uuid4().hex[:8]}")
    assert chat(endpoint, key).status_code == 200
    new = lapis_server.arm("POST", f"{path}/regenerateKey", {"keyName": "Key1"}).json()
    assert chat(endpoint, key).status_code == 401
    assert chat(endpoint, new["key1"]).status_code == 200
    assert chat(endpoint, new["key2"]).status_code == 200


def test_public_network_access_disabled(lapis_server):
    endpoint, key, path = make_account(lapis_server, "rg-endpoints", f"n{uuid.uuid4().hex[:8]}")
    lapis_server.arm("PATCH", path, {"properties": {"publicNetworkAccess": "Disabled"}})
    resp = chat(endpoint, key)
    assert resp.status_code == 403
    assert resp.content == (b'{"error":{"code":"403","message": "Public access is disabled. Please configure '
                            b'private endpoint."}}')
    lapis_server.arm("PATCH", path, {"properties": {"publicNetworkAccess": "Enabled"}})
    assert chat(endpoint, key).status_code == 200


def test_deleted_deployment_is_not_found_at_once(lapis_server):
    endpoint, key, path = make_account(lapis_server, "rg-endpoints", f"d{uuid.uuid4().hex[:8]}")
    lapis_server.arm("DELETE", f"{path}/deployments/chat")
    assert chat(endpoint, key).json()["error"]["code"] == "DeploymentNotFound"


def _stats(server) -> dict:
    return requests.get(f"{server.url}/lapis/admin/stats", params={"api-version": "1"},
                        headers={"Authorization": f"Bearer {server.admin_token}"}, timeout=10).json()["backend"]


def test_generation_stops_when_the_client_disconnects(tmp_path):
    from support.server import start_server

    server = start_server(tmp_path / "slow", demo=True, LAPIS_SIM_TOKEN_MS="50")
    try:
        env = server.demo_env()
        endpoint = env["AZURE_OPENAI_ENDPOINT"].replace("http://", "")
        host, _, rest = endpoint.partition("/")
        body = ('{"messages":[{"role":"user","content":"count"}],"stream":true,"max_tokens":400,"n":3}').encode()
        request = (f"POST /{rest}/openai/deployments/gpt-4o-mini/chat/completions?api-version={V} HTTP/1.1\r\n"
                   f"Host: {host}\r\napi-key: {env['AZURE_OPENAI_KEY']}\r\nContent-Type: application/json\r\n"
                   f"Content-Length: {len(body)}\r\n\r\n").encode() + body
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(request)
        received = b""
        while received.count(b"data: ") < 4:
            received += sock.recv(65536)
        assert _stats(server)["active_streams"] == 1
        sock.close()
        deadline = time.monotonic() + 5
        while _stats(server)["active_streams"] and time.monotonic() < deadline:
            time.sleep(0.05)
        stats = _stats(server)
        assert stats["active_streams"] == 0
        assert stats["streams_cancelled"] == 1
        generated = stats["tokens_generated"]
        time.sleep(0.3)
        assert _stats(server)["tokens_generated"] == generated  # nothing more is produced
        assert generated < 30  # three choices of 12+ tokens each were asked for, at 50 ms a token
        # the dropped stream is charged for its prompt and what it generated, not its 3 x 400 estimate
        time.sleep(0.2)
        after = requests.post(f"{env['AZURE_OPENAI_ENDPOINT']}/openai/deployments/gpt-4o-mini/chat/completions",
                              params={"api-version": V}, headers={"api-key": env["AZURE_OPENAI_KEY"]},
                              json={"messages": [{"role": "user", "content": "count"}], "max_tokens": 1}, timeout=30)
        charged = 50_000 - 3 - int(after.headers["x-ratelimit-remaining-tokens"])
        assert 0 < charged < 100
    finally:
        server.stop()
