"""networkAcls on the data plane: defaultAction Deny with ipRules, Azure's 403
for everyone else, and X-Forwarded-For believed only from trusted proxies."""

from __future__ import annotations

import uuid

import requests

from support.server import DEFAULT_SUBSCRIPTION, start_server

V = "2024-10-21"
FIREWALL = b'{"error":{"code":"403","message": "Access denied due to Virtual Network/Firewall rules."}}'


def account(server) -> tuple[str, str, str]:
    server.arm("POST", f"/subscriptions/{DEFAULT_SUBSCRIPTION}/providers/Microsoft.CognitiveServices/register")
    server.arm("PUT", f"/subscriptions/{DEFAULT_SUBSCRIPTION}/resourceGroups/rg-net", {"location": "eastus"})
    name = f"net{uuid.uuid4().hex[:8]}"
    path = server.account_path("rg-net", name)
    server.arm("PUT", path, {"kind": "OpenAI", "sku": {"name": "S0"}, "location": "eastus",
                             "properties": {"customSubDomainName": name}})
    server.arm("PUT", f"{path}/deployments/chat", {"sku": {"name": "Standard", "capacity": 10},
                                                   "properties": {"model": {"format": "OpenAI", "name": "gpt-4o-mini"}}})
    return name, server.arm("POST", f"{path}/listKeys").json()["key1"], path


def chat(server, name: str, key: str, **headers: str) -> requests.Response:
    return requests.post(f"{server.url}/accounts/{name}/openai/deployments/chat/chat/completions",
                         params={"api-version": V}, json={"messages": [{"role": "user", "content": "hi"}]},
                         headers={"api-key": key, **headers}, timeout=30)


def rules(server, path: str, action: str, *cidrs: str) -> requests.Response:
    return server.arm("PATCH", path, {"properties": {"networkAcls": {
        "defaultAction": action, "ipRules": [{"value": c} for c in cidrs]}}})


def test_ip_rules(fresh_server):
    name, key, path = account(fresh_server)
    assert rules(fresh_server, path, "Deny", "203.0.113.0/24").status_code == 200
    denied = chat(fresh_server, name, key)
    assert denied.status_code == 403 and denied.content == FIREWALL
    # a client cannot talk its way in: X-Forwarded-For from an untrusted peer is ignored
    assert chat(fresh_server, name, key, **{"X-Forwarded-For": "203.0.113.9"}).status_code == 403
    assert rules(fresh_server, path, "Deny", "203.0.113.0/24", "127.0.0.1").status_code == 200
    assert chat(fresh_server, name, key).status_code == 200
    assert rules(fresh_server, path, "Allow").status_code == 200
    assert chat(fresh_server, name, key).status_code == 200


def test_bad_ip_rule_is_refused(fresh_server):
    _, _, path = account(fresh_server)
    resp = rules(fresh_server, path, "Deny", "not-an-address")
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "InvalidNetworkRuleSet"


def test_forwarded_for_from_a_trusted_proxy(tmp_path):
    server = start_server(tmp_path / "proxy", LAPIS_TRUSTED_PROXIES="127.0.0.0/8")
    try:
        name, key, path = account(server)
        rules(server, path, "Deny", "198.51.100.7")
        assert chat(server, name, key, **{"X-Forwarded-For": "198.51.100.7"}).status_code == 200
        assert chat(server, name, key, **{"X-Forwarded-For": "198.51.100.8"}).status_code == 403
        assert chat(server, name, key).status_code == 403  # the proxy itself is not in the rules
    finally:
        server.stop()


def test_network_rules_through_the_cli(fresh_server, tmp_path):
    from support.cli import Cli

    cli = Cli(fresh_server.home, tmp_path / "elsewhere")
    name, key, _ = account(fresh_server)
    acct = ("--name", name, "--resource-group", "rg-net")
    cli("cognitiveservices", "account", "update", *acct, "--default-action", "Deny")
    assert chat(fresh_server, name, key).status_code == 403
    cli("cognitiveservices", "account", "network-rule", "add", *acct, "--ip-address", "127.0.0.0/8")
    assert cli.json("cognitiveservices", "account", "network-rule", "list", *acct) == {
        "ipRules": [{"value": "127.0.0.0/8"}], "virtualNetworkRules": []}
    assert chat(fresh_server, name, key).status_code == 200
    cli("cognitiveservices", "account", "network-rule", "remove", *acct, "--ip-address", "127.0.0.0/8")
    assert chat(fresh_server, name, key).status_code == 403
