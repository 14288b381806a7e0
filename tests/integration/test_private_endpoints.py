"""Private endpoints: an extra listener (127.0.0.2 and a port of its own) bound to
one account, which serves it with public network access disabled, refuses
other accounts, closes when deleted and comes back after a restart; on
PostgreSQL every replica opens it."""

from __future__ import annotations

import socket
import time
import uuid

import pytest
import requests
from openai import AzureOpenAI

from support.cli import Cli
from support.databases import create_database, drop_database
from support.server import DEFAULT_SUBSCRIPTION, start_server

V = "2024-10-21"
PUBLIC_OFF = b'{"error":{"code":"403","message": "Public access is disabled. Please configure private endpoint."}}'
NOT_FOUND = b'{"error":{"code":"404","message": "Resource not found"}}'
NETWORK_API = "2024-05-01"
GROUP = "rg-pe"


def account(server, public: bool = True) -> tuple[str, str, str]:
    server.arm("POST", f"/subscriptions/{DEFAULT_SUBSCRIPTION}/providers/Microsoft.CognitiveServices/register")
    server.arm("PUT", f"/subscriptions/{DEFAULT_SUBSCRIPTION}/resourceGroups/{GROUP}", {"location": "eastus"})
    name = f"pe{uuid.uuid4().hex[:8]}"
    path = server.account_path(GROUP, name)
    props = {"customSubDomainName": name, "publicNetworkAccess": "Enabled" if public else "Disabled"}
    assert server.arm("PUT", path, {"kind": "OpenAI", "sku": {"name": "S0"}, "location": "eastus",
                                    "properties": props}).status_code == 201
    server.arm("PUT", f"{path}/deployments/chat", {
        "sku": {"name": "Standard", "capacity": 10},
        "properties": {"model": {"format": "OpenAI", "name": "gpt-4o-mini"}}})
    return name, server.arm("POST", f"{path}/listKeys").json()["key1"], path


def chat(base: str, name: str, key: str) -> requests.Response:
    return requests.post(f"{base}/accounts/{name}/openai/deployments/chat/chat/completions", params={"api-version": V},
                         json={"messages": [{"role": "user", "content": "hi"}]}, headers={"api-key": key}, timeout=30)


def endpoint_path(name: str) -> str:
    return (f"/subscriptions/{DEFAULT_SUBSCRIPTION}/resourceGroups/{GROUP}"
            f"/providers/Microsoft.Network/privateEndpoints/{name}")


def put_endpoint(server, name: str, target: str, **listener) -> requests.Response:
    return server.arm("PUT", endpoint_path(name), {"location": "eastus", "properties": {
        "privateLinkServiceConnections": [{"name": "conn", "properties": {
            "privateLinkServiceId": target, "groupIds": ["account"]}}],
        "lapisListener": listener}}, api_version=NETWORK_API)


def refused(address: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(5)
        return sock.connect_ex((address, port)) != 0


def test_second_loopback_address_is_usable():
    with socket.socket() as sock:
        sock.bind(("127.0.0.2", 0))
        assert sock.getsockname()[0] == "127.0.0.2"


def test_private_endpoint_serves_its_account_only(fresh_server, tmp_path):
    cli = Cli(fresh_server.home, tmp_path / "cli")
    name, key, path = account(fresh_server, public=False)
    other, other_key, _ = account(fresh_server)
    denied = chat(fresh_server.url, name, key)
    assert denied.status_code == 403 and denied.content == PUBLIC_OFF

    created = cli.json("network", "private-endpoint", "create", "--name", "pe1", "--resource-group", GROUP,
                       "--vnet-name", "vnet1", "--subnet", "default", "--private-connection-resource-id", path,
                       "--group-id", "account", "--connection-name", "conn1")
    listener = created["lapisListener"]
    address, port = listener["address"], listener["port"]
    assert address == "127.0.0.2" and port > 0
    assert listener["endpoint"] == f"http://127.0.0.2:{port}/accounts/{name}/"
    assert created["provisioningState"] == "Succeeded" and created["resourceGroup"] == GROUP
    assert created["customDnsConfigs"] == [{"fqdn": f"{name}.openai.azure.com", "ipAddresses": ["127.0.0.2"]}]
    link = created["privateLinkServiceConnections"][0]
    assert link["name"] == "conn1" and link["groupIds"] == ["account"] and link["privateLinkServiceId"] == path
    assert link["privateLinkServiceConnectionState"]["status"] == "Approved"
    assert created["subnet"]["id"].endswith("/virtualNetworks/vnet1/subnets/default")

    # the openai client, pointed at the endpoint's address, gets through; the public listener still refuses
    client = AzureOpenAI(azure_endpoint=listener["endpoint"], api_key=key, api_version=V, max_retries=0)
    reply = client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content
    assert chat(fresh_server.url, name, key).content == PUBLIC_OFF
    # firewall rules do not apply to private endpoint traffic either
    fresh_server.arm("PATCH", path, {"properties": {"networkAcls": {"defaultAction": "Deny",
                                                                    "ipRules": [{"value": "203.0.113.0/24"}]}}})
    assert chat(f"http://127.0.0.2:{port}", name, key).status_code == 200
    # credentials are still checked
    assert chat(f"http://127.0.0.2:{port}", name, "0" * 32).status_code == 401
    # another account through this endpoint: as if it did not exist there
    stranger = chat(f"http://127.0.0.2:{port}", other, other_key)
    assert stranger.status_code == 404 and stranger.content == NOT_FOUND
    assert chat(fresh_server.url, other, other_key).status_code == 200

    # the account lists the connection, as ARM does
    connections = fresh_server.arm("GET", path).json()["properties"]["privateEndpointConnections"]
    assert [c["properties"]["privateEndpoint"]["id"] for c in connections] == [endpoint_path("pe1")]
    assert connections[0]["name"].startswith("pe1.") and connections[0]["type"] == (
        "Microsoft.CognitiveServices/accounts/privateEndpointConnections")
    listed = fresh_server.arm("GET", f"{path}/privateEndpointConnections").json()["value"]
    assert listed == connections
    one = fresh_server.arm("GET", f"{path}/privateEndpointConnections/{connections[0]['name']}")
    assert one.status_code == 200 and one.json() == connections[0]
    shown = cli.json("network", "private-endpoint", "list", "--resource-group", GROUP)
    assert [e["name"] for e in shown] == ["pe1"]

    cli("network", "private-endpoint", "delete", "--name", "pe1", "--resource-group", GROUP)
    assert refused("127.0.0.2", port)
    assert chat(fresh_server.url, name, key).content == PUBLIC_OFF
    assert fresh_server.arm("GET", path).json()["properties"]["privateEndpointConnections"] == []
    missing = fresh_server.arm("GET", endpoint_path("pe1"), api_version=NETWORK_API)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "ResourceNotFound"


def test_listener_comes_back_after_a_restart(fresh_server):
    name, key, path = account(fresh_server, public=False)
    created = put_endpoint(fresh_server, "pe-restart", path)
    assert created.status_code == 201, created.text
    port = created.json()["properties"]["lapisListener"]["port"]
    assert chat(f"http://127.0.0.2:{port}", name, key).status_code == 200
    fresh_server.stop()
    assert refused("127.0.0.2", port)
    fresh_server.start()
    assert chat(f"http://127.0.0.2:{port}", name, key).status_code == 200
    again = put_endpoint(fresh_server, "pe-restart", path)  # a PUT without a port keeps the one it has
    assert again.status_code == 200 and again.json()["properties"]["lapisListener"]["port"] == port


def test_bad_private_endpoints_are_refused(fresh_server):
    _, _, path = account(fresh_server)
    first = put_endpoint(fresh_server, "pe-a", path)
    port = first.json()["properties"]["lapisListener"]["port"]
    cases = [
        (put_endpoint(fresh_server, "pe-b", path, port=port), "PrivateIPAddressInUse"),
        (put_endpoint(fresh_server, "pe-c", path.replace("/accounts/", "/accounts/missing")),
         "InvalidPrivateLinkServiceId"),
        (put_endpoint(fresh_server, "pe-d", path, address="not-an-address"), "InvalidPrivateIPAddress"),
        (put_endpoint(fresh_server, "pe-e", path, address="0.0.0.0"), "InvalidPrivateIPAddress"),
        (put_endpoint(fresh_server, "pe-f", path, port="80"), "InvalidRequestContent"),
        (put_endpoint(fresh_server, "bad name!", path), "InvalidResourceName"),
        (fresh_server.arm("PUT", endpoint_path("pe-g"), {"location": "eastus", "properties": {
            "privateLinkServiceConnections": [{"name": "c", "properties": {"privateLinkServiceId": path,
                                                                           "groupIds": ["blob"]}}]}},
            api_version=NETWORK_API), "InvalidGroupId"),
        (fresh_server.arm("PUT", endpoint_path("pe-h"), {"location": "eastus", "properties": {}},
                          api_version=NETWORK_API), "InvalidRequestFormat"),
        (fresh_server.arm("PUT", endpoint_path("pe-i"), {"properties": {}}, api_version=NETWORK_API),
         "LocationRequired"),
    ]
    for response, code in cases:
        assert response.status_code == 400 and response.json()["error"]["code"] == code, response.text
    listed = fresh_server.arm("GET", endpoint_path("").rstrip("/"), api_version=NETWORK_API).json()["value"]
    assert [e["name"] for e in listed] == ["pe-a"]
    # a listener this process cannot open (the main listener's own address and port) is refused, not stored
    clash = put_endpoint(fresh_server, "pe-j", path, address="127.0.0.1", port=fresh_server.port)
    assert clash.status_code == 400 and clash.json()["error"]["code"] == "PrivateIPAddressInUse"
    assert fresh_server.arm("GET", endpoint_path("pe-j"), api_version=NETWORK_API).status_code == 404
    assert requests.get(f"{fresh_server.url}/healthz", timeout=10).status_code == 200


@pytest.mark.postgres
def test_every_replica_opens_the_listener(tmp_path):
    database, url = create_database()
    env = {"LAPIS_DATABASE_URL": url, "LAPIS_KEK_FILE": str(tmp_path / "kek")}
    first = start_server(tmp_path / "a", **env)
    second = start_server(tmp_path / "b", **env)
    try:
        name, key, path = account(first, public=False)
        port = put_endpoint(first, "pe-shared", path).json()["properties"]["lapisListener"]["port"]
        first.stop()  # from now on only the second replica can answer on the endpoint's port
        deadline = time.monotonic() + 10
        while refused("127.0.0.2", port) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert chat(f"http://127.0.0.2:{port}", name, key).status_code == 200
        assert second.arm("DELETE", endpoint_path("pe-shared"), api_version=NETWORK_API).status_code == 200
        assert refused("127.0.0.2", port)
    finally:
        first.stop()
        second.stop()
        drop_database(database)
