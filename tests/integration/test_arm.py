"""The ARM-shaped management plane over raw HTTP: shapes, case-insensitive
paths, the access gates, and golden bodies for its errors."""

from __future__ import annotations

import uuid

import pytest
import requests

from support.server import DEFAULT_SUBSCRIPTION

SUB = f"/subscriptions/{DEFAULT_SUBSCRIPTION}"


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def group(lapis_server):
    name = unique("rg")
    assert lapis_server.arm("PUT", f"{SUB}/resourcegroups/{name}", {"location": "eastus"}).status_code == 201
    return name


def new_account(server, group: str, name: str | None = None, **props):
    name = name or unique("acct")
    body = {"kind": "OpenAI", "sku": {"name": "S0"}, "location": "eastus",
            "properties": {"customSubDomainName": name, **props}}
    return name, server.arm("PUT", server.account_path(group, name), body)


def test_account_shape(lapis_server, group):
    name, resp = new_account(lapis_server, group)
    assert resp.status_code == 201
    body = resp.json()
    assert body["id"] == f"{SUB}/resourceGroups/{group}/providers/Microsoft.CognitiveServices/accounts/{name}"
    assert body["type"] == "Microsoft.CognitiveServices/accounts"
    assert body["kind"] == "OpenAI" and body["sku"] == {"name": "S0"} and body["location"] == "eastus"
    props = body["properties"]
    assert props["provisioningState"] == "Succeeded"
    assert props["customSubDomainName"] == name
    assert props["endpoint"] == f"{lapis_server.url}/accounts/{name}/"
    assert props["publicNetworkAccess"] == "Enabled"
    assert len(props["internalId"]) == 32
    assert body["etag"].startswith('"') and body["etag"].endswith('"')
    again = lapis_server.arm("PUT", lapis_server.account_path(group, name),
                             {"kind": "OpenAI", "sku": {"name": "S0"}, "location": "eastus",
                              "properties": {"customSubDomainName": name}, "tags": {"team": "ai"}})
    assert again.status_code == 200 and again.json()["tags"] == {"team": "ai"}


def test_paths_match_case_insensitively(lapis_server, group):
    name, _ = new_account(lapis_server, group)
    path = lapis_server.account_path(group, name).replace("resourceGroups", "RESOURCEGROUPS").replace(
        "Microsoft.CognitiveServices", "microsoft.cognitiveservices")
    assert lapis_server.arm("GET", path).json()["name"] == name
    assert lapis_server.arm("GET", lapis_server.account_path(group.upper(), name.upper())).status_code == 200


def test_keys_list_and_regenerate(lapis_server, group):
    name, created = new_account(lapis_server, group)
    path = lapis_server.account_path(group, name)
    keys = lapis_server.arm("POST", f"{path}/listKeys").json()
    assert set(keys) == {"key1", "key2"} and keys["key1"] != keys["key2"] and len(keys["key1"]) == 32
    new = lapis_server.arm("POST", f"{path}/regenerateKey", {"keyName": "Key2"}).json()
    assert new["key1"] == keys["key1"] and new["key2"] != keys["key2"]


def test_deployment_shape_and_default_version(lapis_server, group):
    name, _ = new_account(lapis_server, group)
    path = lapis_server.account_path(group, name) + "/deployments/chat"
    resp = lapis_server.arm("PUT", path, {"sku": {"name": "Standard", "capacity": "10"},
                                          "properties": {"model": {"format": "OpenAI", "name": "gpt-4o-mini"}}})
    assert resp.status_code == 201
    body = resp.json()
    assert body["type"] == "Microsoft.CognitiveServices/accounts/deployments"
    assert body["sku"] == {"capacity": 10, "name": "Standard"}
    assert body["properties"]["model"]["version"] == "2024-07-18"
    assert body["properties"]["provisioningState"] == "Succeeded"
    limits = {r["key"]: r for r in body["properties"]["rateLimits"]}
    assert limits["token"]["count"] == 10000.0 and limits["token"]["renewalPeriod"] == 60.0
    assert limits["request"]["count"] == 10.0 and limits["request"]["renewalPeriod"] == 10.0
    listed = lapis_server.arm("GET", lapis_server.account_path(group, name) + "/deployments").json()["value"]
    assert [d["name"] for d in listed] == ["chat"]
    assert lapis_server.arm("DELETE", path).status_code == 200
    assert lapis_server.arm("DELETE", path).status_code == 204


def test_location_and_account_models(lapis_server, group):
    located = lapis_server.arm("GET", f"{SUB}/providers/Microsoft.CognitiveServices/locations/eastus/models").json()
    names = {(m["model"]["name"], m["model"]["version"]) for m in located["value"]}
    assert ("gpt-4o-mini", "2024-07-18") in names
    assert all(m["kind"] == "OpenAI" and m["skuName"] == "S0" for m in located["value"])
    name, _ = new_account(lapis_server, group)
    flat = lapis_server.arm("GET", lapis_server.account_path(group, name) + "/models").json()["value"]
    assert {"name", "version", "format", "skus"} <= set(flat[0])


# -- golden error bodies -------------------------------------------------------

def test_missing_authorization(lapis_server):
    resp = requests.get(f"{lapis_server.url}{SUB}", params={"api-version": "2021-04-01"}, timeout=10)
    assert resp.status_code == 401
    assert resp.content == (b'{"error":{"code":"AuthenticationFailed","message":"Authentication failed. '
                            b'The \'Authorization\' header is missing."}}')
    assert resp.headers["WWW-Authenticate"].startswith("Bearer ")


def test_invalid_token(lapis_server):
    resp = lapis_server.arm("GET", SUB, token="nope")
    assert resp.status_code == 401
    assert resp.content == b'{"error":{"code":"InvalidAuthenticationToken","message":"The access token is invalid."}}'


def test_missing_api_version(lapis_server):
    resp = requests.get(f"{lapis_server.url}{SUB}", headers={"Authorization": f"Bearer {lapis_server.admin_token}"},
                        timeout=10)
    assert resp.status_code == 400
    assert resp.content == (b'{"error":{"code":"MissingApiVersionParameter","message":"The api-version query '
                            b'parameter (?api-version=) is required for all requests."}}')


def test_group_not_found(lapis_server):
    resp = lapis_server.arm("GET", lapis_server.account_path("no-such-rg", "x"))
    assert resp.status_code == 404
    assert resp.content == b'{"error":{"code":"ResourceGroupNotFound","message":"Resource group \'no-such-rg\' could not be found."}}'


def test_account_not_found(lapis_server, group):
    resp = lapis_server.arm("GET", lapis_server.account_path(group, "ghost"))
    assert resp.status_code == 404
    assert resp.json() == {"error": {"code": "ResourceNotFound", "message": (
        f"The Resource 'Microsoft.CognitiveServices/accounts/ghost' under resource group '{group}' was not found. "
        "For more details please go to https://aka.ms/ARMResourceNotFoundFix")}}


def test_deployment_not_found(lapis_server, group):
    name, _ = new_account(lapis_server, group)
    path = lapis_server.account_path(group, name) + "/deployments/ghost"
    resp = lapis_server.arm("GET", path)
    assert resp.status_code == 404
    assert resp.json() == {"error": {"code": "NotFound",
                                     "message": f"Specified resource '{path}' cannot be found."}}


def test_bad_key_name(lapis_server, group):
    name, _ = new_account(lapis_server, group)
    resp = lapis_server.arm("POST", lapis_server.account_path(group, name) + "/regenerateKey", {"keyName": "key1"})
    assert resp.status_code == 400
    assert resp.json() == {"error": {"code": "BadRequest",
                                     "message": "The key name 'key1' is invalid. Valid values are 'Key1' and 'Key2'."}}


def test_subdomain_in_use(lapis_server, group):
    taken, _ = new_account(lapis_server, group)
    _, resp = new_account(lapis_server, group, customSubDomainName=taken)
    assert resp.status_code == 409
    assert resp.json() == {"error": {"code": "CustomDomainInUse", "message": (
        f"Please pick a different name. The subdomain name '{taken}' is not available as it's already used by a "
        "resource. If the resource using the name was deleted in the last 48 hours, you may need to purge the "
        'deleted resource. Learn more at "https://go.microsoft.com/fwlink/?linkid=2215493"')}}


def test_invalid_account_name(lapis_server, group):
    _, resp = new_account(lapis_server, group, name="bad name!")
    assert resp.status_code in (400, 404)  # a space cannot even reach the route on some clients
    if resp.status_code == 400:
        assert resp.json()["error"]["code"] == "InvalidAccountName"


def test_model_errors(lapis_server, group):
    name, _ = new_account(lapis_server, group)
    base = lapis_server.account_path(group, name) + "/deployments/"

    def deploy(model, sku, version=None):
        m = {"format": "OpenAI", "name": model, **({"version": version} if version else {})}
        return lapis_server.arm("PUT", base + "d1", {"sku": {"name": sku, "capacity": 1}, "properties": {"model": m}})

    resp = deploy("gpt-4.1", "Standard")
    assert resp.status_code == 400 and resp.json() == {"error": {"code": "InvalidResourceProperties", "message": (
        "The specified SKU 'Standard' for model 'gpt-4.1 2025-04-14' is not supported in this region 'eastus'.")}}
    resp = deploy("gpt-5-imaginary", "Standard")
    assert resp.status_code == 400 and resp.json() == {"error": {"code": "DeploymentModelNotSupported", "message": (
        "The model 'Format:OpenAI,Name:gpt-5-imaginary,Version:' of account deployment is not supported.")}}
    resp = deploy("gpt-4o-mini", "Standard", "1999-01-01")
    assert resp.json()["error"]["code"] == "DeploymentModelNotSupported"
    resp = deploy("gpt-4o-mini", "Imaginary")
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "InvalidResourceProperties"


def test_unregistered_and_unapproved_subscriptions(lapis_server):
    created = requests.post(f"{lapis_server.url}/lapis/admin/subscriptions", json={"displayName": "team b"},
                            headers={"Authorization": f"Bearer {lapis_server.admin_token}"}, timeout=10)
    assert created.status_code == 201
    sub = created.json()["subscriptionId"]
    assert lapis_server.arm("PUT", f"/subscriptions/{sub}/resourcegroups/rg1", {"location": "eastus"}).ok
    body = {"kind": "OpenAI", "sku": {"name": "S0"}, "location": "eastus",
            "properties": {"customSubDomainName": unique("b")}}
    resp = lapis_server.arm("PUT", lapis_server.account_path("rg1", "acct", sub), body)
    assert resp.status_code == 409
    message = ("The subscription is not registered to use namespace 'Microsoft.CognitiveServices'. "
               "See https://aka.ms/rps-not-found for how to register subscriptions.")
    assert resp.json() == {"error": {"code": "MissingSubscriptionRegistration", "message": message, "details": [
        {"code": "MissingSubscriptionRegistration", "target": "Microsoft.CognitiveServices", "message": message}]}}
    reg = lapis_server.arm("POST", f"/subscriptions/{sub}/providers/Microsoft.CognitiveServices/register",
                           api_version="2021-04-01")
    assert reg.json()["registrationState"] == "Registered"
    resp = lapis_server.arm("PUT", lapis_server.account_path("rg1", "acct", sub), body)
    assert resp.status_code == 400 and resp.json() == {"error": {"code": "SpecialFeatureOrQuotaIdRequired", "message": (
        "The subscription does not have QuotaId/Feature required by SKU 'S0' from kind 'OpenAI' or contains blocked "
        "QuotaId/Feature.")}}
    requests.post(f"{lapis_server.url}/lapis/admin/subscriptions/{sub}/approve",
                  headers={"Authorization": f"Bearer {lapis_server.admin_token}"}, timeout=10).raise_for_status()
    assert lapis_server.arm("PUT", lapis_server.account_path("rg1", "acct", sub), body).status_code == 201


def test_other_namespaces_are_not_served(lapis_server):
    resp = lapis_server.arm("GET", f"{SUB}/providers/Microsoft.Storage", api_version="2021-04-01")
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "NamespaceNotFound"


def test_subscription_ids_must_be_guids(lapis_server):
    resp = requests.post(f"{lapis_server.url}/lapis/admin/subscriptions",
                         json={"displayName": "x", "subscriptionId": "not-a-guid"},
                         headers={"Authorization": f"Bearer {lapis_server.admin_token}"}, timeout=10)
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "InvalidSubscriptionId"
