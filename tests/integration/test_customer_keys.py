"""Customer-managed keys: an account's data key wrapped by a key in Lapis's vault.

Rotation re-wraps without a single failed request; disabling the key makes
the account's data plane refuse with one exact body until it is enabled,
and nothing is lost (the same keys work again, across a restart too).
"""

from __future__ import annotations

import threading
from pathlib import Path

import requests

from support.cli import Cli
from support.server import DEFAULT_SUBSCRIPTION, LapisProcess

SUB = f"/subscriptions/{DEFAULT_SUBSCRIPTION}"
V = "2024-10-21"
KV = {"api-version": "7.4"}
REFUSED = (b'{"error":{"code":"CustomerManagedKeyInaccessible","message":"Access denied because the customer-managed '
           b'key that encrypts this resource is disabled or inaccessible. Enable the key in its key vault to restore '
           b'access."}}')


def account(server: LapisProcess, name: str) -> tuple[str, dict[str, str]]:
    server.arm("POST", f"{SUB}/providers/Microsoft.CognitiveServices/register")
    server.arm("PUT", f"{SUB}/resourceGroups/rg", {"location": "eastus"})
    path = server.account_path("rg", name)
    assert server.arm("PUT", path, {"kind": "OpenAI", "sku": {"name": "S0"}, "location": "eastus",
                                    "properties": {"customSubDomainName": name}}).status_code == 201
    assert server.arm("PUT", f"{path}/deployments/chat", {"sku": {"name": "Standard", "capacity": 50}, "properties": {
        "model": {"format": "OpenAI", "name": "gpt-4o-mini"}}}).status_code == 201
    return path, server.arm("POST", f"{path}/listKeys").json()


def vault(server: LapisProcess, method: str, tail: str, body: dict | None = None,
          token: str | None = "admin") -> requests.Response:
    headers = {"Authorization": f"Bearer {server.admin_token}"} if token == "admin" else {}
    return requests.request(method, f"{server.url}/vaults/{tail}", params=KV, json=body, headers=headers, timeout=60)


def chat(server: LapisProcess, name: str, key: str) -> requests.Response:
    return requests.post(f"{server.url}/accounts/{name}/openai/deployments/chat/chat/completions",
                         params={"api-version": V}, headers={"api-key": key}, timeout=30,
                         json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5})


def use_key(server: LapisProcess, path: str, key: str, version: str | None = None, uri: str | None = None):
    props = {"keyName": key, "keyVaultUri": uri or f"{server.url}/vaults/kv1/"}
    if version is not None:
        props["keyVersion"] = version
    return server.arm("PATCH", path, {"properties": {"encryption": {"keySource": "Microsoft.KeyVault",
                                                                    "keyVaultProperties": props}}})


def test_rotation_rewraps_while_requests_keep_succeeding(fresh_server):
    server = fresh_server
    path, keys = account(server, "cmkrot")
    created = vault(server, "POST", "kv1/keys/cmk/create", {"kty": "RSA"})
    assert created.status_code == 200
    answer = use_key(server, path, "cmk")
    assert answer.status_code == 200
    assert answer.json()["properties"]["encryption"] == {"keySource": "Microsoft.KeyVault", "keyVaultProperties": {
        "keyName": "cmk", "keyVersion": None, "keyVaultUri": f"{server.url}/vaults/kv1/"}}
    statuses: list[int] = []
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():  # 4 a second: under the deployment's 50 requests per 10 s
            statuses.append(chat(server, "cmkrot", keys["key1"]).status_code)
            stop.wait(0.25)

    worker = threading.Thread(target=traffic)
    worker.start()
    try:
        versions = [vault(server, "POST", "kv1/keys/cmk/rotate").json()["key"]["kid"] for _ in range(3)]
    finally:
        stop.set()
        worker.join()
    assert len(set(versions)) == 3 and created.json()["key"]["kid"] not in versions
    assert statuses and set(statuses) == {200}
    # the data key now follows the newest version: disabling only the first version changes nothing
    first_version = created.json()["key"]["kid"].rsplit("/", 1)[-1]
    assert vault(server, "PATCH", f"kv1/keys/cmk/{first_version}", {"attributes": {"enabled": False}}).json()[
        "attributes"]["enabled"] is False
    assert chat(server, "cmkrot", keys["key1"]).status_code == 200
    assert server.arm("POST", f"{path}/listKeys").json() == keys  # sealed before the rotations, still readable
    server.stop()
    server.start()
    assert server.arm("POST", f"{path}/listKeys").json() == keys
    assert chat(server, "cmkrot", keys["key2"]).status_code == 200


def test_disabling_the_key_refuses_service_and_enabling_restores_it(fresh_server, tmp_path: Path):
    server = fresh_server
    cli = Cli(server.home, tmp_path / "cwd")
    path, keys = account(server, "cmkoff")
    made = cli.json("keyvault", "key", "create", "--vault-name", "kv1", "--name", "revocable")
    assert made["key"]["kty"] == "RSA" and made["attributes"]["enabled"] is True
    assert use_key(server, path, "revocable").status_code == 200
    assert chat(server, "cmkoff", keys["key1"]).status_code == 200

    disabled = cli.json("keyvault", "key", "disable", "--vault-name", "kv1", "--name", "revocable")
    assert [v["attributes"]["enabled"] for v in disabled] == [False]
    refused = chat(server, "cmkoff", keys["key1"])
    assert refused.status_code == 403 and refused.content == REFUSED
    assert chat(server, "cmkoff", "").content == REFUSED  # refused before any credential is looked at
    regenerate = server.arm("POST", f"{path}/regenerateKey", {"keyName": "Key1"})
    assert regenerate.status_code == 409 and regenerate.json()["error"]["code"] == "KeyVaultKeyDisabled"
    assert server.arm("GET", path).status_code == 200  # the resource itself is still there

    server.stop()  # the refusal survives a restart: nothing in memory decides it
    server.start()
    assert chat(server, "cmkoff", keys["key1"]).content == REFUSED

    enabled = cli.json("keyvault", "key", "enable", "--vault-name", "kv1", "--name", "revocable")
    assert [v["attributes"]["enabled"] for v in enabled] == [True]
    assert chat(server, "cmkoff", keys["key1"]).status_code == 200
    assert chat(server, "cmkoff", keys["key2"]).status_code == 200
    assert server.arm("POST", f"{path}/listKeys").json() == keys


def test_a_pinned_version_stays_until_the_account_names_another(fresh_server):
    server = fresh_server
    path, keys = account(server, "cmkpin")
    first = vault(server, "POST", "kv1/keys/pinned/create", {"kty": "RSA"}).json()["key"]["kid"].rsplit("/", 1)[-1]
    assert use_key(server, path, "pinned", version=first).status_code == 200
    second = vault(server, "POST", "kv1/keys/pinned/rotate").json()["key"]["kid"].rsplit("/", 1)[-1]
    assert vault(server, "PATCH", "kv1/keys/pinned", {"attributes": {"enabled": False}}).json()["key"]["kid"] \
        .endswith(second)  # the current version is the second one
    assert chat(server, "cmkpin", keys["key1"]).status_code == 200  # still wrapped by the first
    vault(server, "PATCH", f"kv1/keys/pinned/{first}", {"attributes": {"enabled": False}})
    assert chat(server, "cmkpin", keys["key1"]).content == REFUSED


def test_an_account_created_with_a_customer_managed_key(fresh_server):
    server = fresh_server
    account(server, "cmkfirst")  # registers the provider and makes the group
    vault(server, "POST", "kv1/keys/atbirth/create", {"kty": "RSA"})
    path = server.account_path("rg", "cmkborn")
    encryption = {"keySource": "Microsoft.KeyVault", "keyVaultProperties": {
        "keyName": "atbirth", "keyVaultUri": f"{server.url}/vaults/kv1/", "identityClientId": "client-1"}}
    made = server.arm("PUT", path, {"kind": "OpenAI", "sku": {"name": "S0"}, "location": "eastus", "properties": {
        "customSubDomainName": "cmkborn", "encryption": encryption}})
    assert made.status_code == 201
    assert made.json()["properties"]["encryption"]["keyVaultProperties"] == {
        **encryption["keyVaultProperties"], "keyVersion": None}
    server.arm("PUT", f"{path}/deployments/chat", {"sku": {"name": "Standard", "capacity": 5}, "properties": {
        "model": {"format": "OpenAI", "name": "gpt-4o-mini"}}})
    keys = server.arm("POST", f"{path}/listKeys").json()
    assert chat(server, "cmkborn", keys["key1"]).status_code == 200
    vault(server, "PATCH", "kv1/keys/atbirth", {"attributes": {"enabled": False}})
    assert chat(server, "cmkborn", keys["key1"]).content == REFUSED
    assert chat(server, "cmkfirst", server.arm("POST", server.account_path("rg", "cmkfirst") + "/listKeys").json()[
        "key1"]).status_code == 200  # other accounts are not touched


def test_switching_back_to_service_managed_keys(fresh_server):
    server = fresh_server
    path, keys = account(server, "cmkback")
    vault(server, "POST", "kv1/keys/temp/create", {"kty": "RSA"})
    assert use_key(server, path, "temp").status_code == 200
    back = server.arm("PATCH", path, {"properties": {"encryption": {"keySource": "microsoft.cognitiveservices"}}})
    assert back.status_code == 200
    assert back.json()["properties"]["encryption"] == {"keySource": "Microsoft.CognitiveServices"}
    vault(server, "PATCH", "kv1/keys/temp", {"attributes": {"enabled": False}})
    assert chat(server, "cmkback", keys["key1"]).status_code == 200  # the vault key no longer matters


def test_bad_encryption_properties_are_arm_400s(fresh_server):
    server = fresh_server
    path, _ = account(server, "cmkbad")
    missing = use_key(server, path, "nosuchkey")
    assert missing.status_code == 400
    assert missing.content == (b'{"error":{"code":"KeyVaultKeyNotFound","message":"The key \'nosuchkey\' was not '
                               b'found in the key vault \'' + server.url.encode() + b'/vaults/kv1/\'."}}')
    assert missing.headers["x-ms-error-code"] == "KeyVaultKeyNotFound"
    vault(server, "POST", "kv1/keys/off/create", {"kty": "RSA", "attributes": {"enabled": False}})
    assert use_key(server, path, "off").json()["error"]["code"] == "KeyVaultKeyDisabled"
    source = server.arm("PATCH", path, {"properties": {"encryption": {"keySource": "Microsoft.Nope"}}})
    assert source.status_code == 400 and source.json()["error"] == {
        "code": "InvalidEncryptionProperties", "message": "The keySource 'Microsoft.Nope' is invalid. Valid values "
        "are 'Microsoft.CognitiveServices' and 'Microsoft.KeyVault'."}
    elsewhere = server.arm("PATCH", path, {"properties": {"encryption": {"keySource": "Microsoft.KeyVault",
                                                                         "keyVaultProperties": {
                                                                             "keyName": "k",
                                                                             "keyVaultUri": "https://example.com/"}}}})
    assert elsewhere.status_code == 400 and elsewhere.json()["error"]["code"] == "InvalidEncryptionProperties"
    assert server.arm("GET", path).json()["properties"]["encryption"] is None  # none of those was saved
    vault(server, "POST", "kv2/keys/azureform/create", {"kty": "RSA"})
    azure_form = use_key(server, path, "azureform", uri="https://kv2.vault.azure.net/")  # Azure's vault URI form
    assert azure_form.status_code == 200, azure_form.text
    assert azure_form.json()["properties"]["encryption"]["keyVaultProperties"]["keyVaultUri"] == \
        "https://kv2.vault.azure.net/"


def test_the_vault_speaks_key_vaults_rest_shapes(fresh_server):
    server = fresh_server
    made = vault(server, "POST", "Vault-One/keys/Shape/create", {"kty": "RSA", "key_size": 3072,
                                                                 "tags": {"purpose": "test"}})
    assert made.status_code == 200
    body = made.json()
    version = body["key"]["kid"].rsplit("/", 1)[-1]
    assert body["key"]["kid"] == f"{server.url}/vaults/Vault-One/keys/Shape/{version}" and len(version) == 32
    assert body["key"]["key_ops"] == ["encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"]
    assert body["key"]["e"] == "AQAB" and len(body["key"]["n"]) == 512  # 3072 bits, base64url
    assert body["attributes"]["enabled"] is True and body["attributes"]["recoveryLevel"] == "Recoverable+Purgeable"
    assert body["tags"] == {"purpose": "test"}
    assert vault(server, "GET", "vault-one/keys/shape").json() == body  # names are case-insensitive
    assert vault(server, "GET", f"vault-one/keys/shape/{version}").json() == body
    listed = vault(server, "GET", "vault-one/keys").json()
    assert listed["nextLink"] is None and [i["kid"] for i in listed["value"]] == [
        f"{server.url}/vaults/Vault-One/keys/Shape"]
    vault(server, "POST", "vault-one/keys/shape/rotate")
    assert len(vault(server, "GET", "vault-one/keys/shape/versions").json()["value"]) == 2
    gone = vault(server, "GET", "vault-one/keys/nothere")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "KeyNotFound"
    assert gone.json()["error"]["message"].startswith("A key with (name/id) nothere was not found in this key vault.")
    bad = vault(server, "POST", "vault-one/keys/ec/create", {"kty": "EC"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "BadParameter"
    bad_name = vault(server, "POST", "v/keys/x/create", {"kty": "RSA"})
    assert bad_name.status_code == 400 and bad_name.json()["error"]["code"] == "BadParameter"
    anonymous = vault(server, "GET", "vault-one/keys", token=None)
    assert anonymous.status_code == 401 and anonymous.json() == {"error": {
        "code": "Unauthorized", "message": "AKV10000: Request is missing a Bearer or PoP token."}}
    assert anonymous.headers["WWW-Authenticate"].endswith('resource="https://vault.azure.net"')


def test_keyvault_cli_commands(fresh_server, tmp_path: Path):
    cli = Cli(fresh_server.home, tmp_path / "cwd")
    made = cli.json("keyvault", "key", "create", "--vault-name", "clivault", "--name", "k1", "--size", "2048",
                    "--tags", "team=ai", "env=dev")
    assert made["tags"] == {"team": "ai", "env": "dev"}
    rotated = cli.json("keyvault", "key", "rotate", "--vault-name", "clivault", "--name", "k1")
    assert rotated["key"]["kid"] != made["key"]["kid"]
    assert cli.json("keyvault", "key", "show", "--vault-name", "clivault", "--name", "k1") == rotated
    old = made["key"]["kid"].rsplit("/", 1)[-1]
    assert cli.json("keyvault", "key", "show", "--vault-name", "clivault", "--name", "k1", "--version", old) == made
    assert len(cli.json("keyvault", "key", "list-versions", "--vault-name", "clivault", "--name", "k1")) == 2
    assert [k["kid"].rsplit("/", 1)[-1] for k in cli.json("keyvault", "key", "list", "--vault-name", "clivault")] \
        == ["k1"]
    off = cli.json("keyvault", "key", "set-attributes", "--vault-name", "clivault", "--name", "k1", "--enabled",
                   "false")
    assert off["attributes"]["enabled"] is False and off["key"]["kid"] == rotated["key"]["kid"]
    cli.fails("KeyNotFound", "keyvault", "key", "show", "--vault-name", "clivault", "--name", "missing")
