"""The token service against a real server: OIDC discovery and JWKS, the
client-credentials token endpoint (raw HTTP, as MSAL sends it), managed
identity through azure-identity's ManagedIdentityCredential and an unmodified
DefaultAzureCredential() in both styles (App Service and IMDS), signing-key
rotation, and the CLI commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jwt
import pytest
import requests

from support.cli import Cli
from support.server import DEFAULT_SUBSCRIPTION, ROOT

TENANT = "2c6d6e8a-6c61-7069-7300-000000000000"
COG = "https://cognitiveservices.azure.com"
COG_SCOPE = f"{COG}/.default"


def admin(server, method: str, path: str, body=None) -> requests.Response:
    return requests.request(method, f"{server.url}/lapis/admin/{path}", json=body,
                            headers={"Authorization": f"Bearer {server.admin_token}"}, timeout=30)


def token_request(server, **form: str) -> requests.Response:
    return requests.post(f"{server.url}/{TENANT}/oauth2/v2.0/token", data=form, timeout=30,
                         headers={"client-request-id": "7a1c0000-0000-4000-8000-000000000001"})


def decode(server, token: str, audience: str = COG) -> dict:
    """Verify a token as any relying party would: keys from the published JWKS."""
    config = requests.get(f"{server.url}/{TENANT}/v2.0/.well-known/openid-configuration", timeout=30).json()
    key = jwt.PyJWKClient(config["jwks_uri"], cache_keys=False).get_signing_key_from_jwt(token)
    return jwt.decode(token, key.key, algorithms=["RS256"], audience=audience, issuer=config["issuer"])


@pytest.fixture()
def sp(fresh_server) -> dict:
    response = admin(fresh_server, "POST", "servicePrincipals", {"displayName": "lapis-ci"})
    assert response.status_code == 201, response.text
    return response.json()


def test_openid_configuration_and_jwks(fresh_server):
    base = fresh_server.url
    config = requests.get(f"{base}/{TENANT}/v2.0/.well-known/openid-configuration", timeout=30).json()
    assert config["token_endpoint"] == f"{base}/{TENANT}/oauth2/v2.0/token"
    assert config["authorization_endpoint"] == f"{base}/{TENANT}/oauth2/v2.0/authorize"
    assert config["jwks_uri"] == f"{base}/{TENANT}/discovery/v2.0/keys"
    assert config["issuer"] == f"{base}/{TENANT}/v2.0"
    common = requests.get(f"{base}/common/v2.0/.well-known/openid-configuration", timeout=30).json()
    assert common["token_endpoint"] == f"{base}/common/oauth2/v2.0/token"
    assert common["issuer"] == f"{base}/{{tenantid}}/v2.0"
    keys = requests.get(config["jwks_uri"], timeout=30).json()["keys"]
    assert len(keys) == 1
    assert set(keys[0]) >= {"kty", "use", "kid", "n", "e", "alg"}
    assert (keys[0]["kty"], keys[0]["use"], keys[0]["alg"]) == ("RSA", "sig", "RS256")
    unknown = requests.get(f"{base}/not-a-tenant/v2.0/.well-known/openid-configuration", timeout=30)
    assert unknown.status_code == 400 and unknown.json()["error_codes"] == [90002]


@pytest.mark.parametrize("scope, aud", [
    (COG_SCOPE, COG),
    (f"{COG}//.default", COG),
    ("https://management.azure.com/.default", "https://management.azure.com/"),
    ("https://management.core.windows.net//.default", "https://management.core.windows.net/"),
])
def test_client_credentials_token_verifies_against_jwks(fresh_server, sp, scope, aud):
    response = token_request(fresh_server, client_id=sp["appId"], grant_type="client_credentials", client_info="1",
                             client_secret=sp["password"], scope=scope,
                             claims='{"access_token":{"xms_cc":{"values":["CP1"]}}}')
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"token_type", "expires_in", "ext_expires_in", "access_token"}
    assert (body["token_type"], body["expires_in"], body["ext_expires_in"]) == ("Bearer", 3599, 3599)
    assert response.headers["Cache-Control"].startswith("no-store")
    claims = decode(fresh_server, body["access_token"], aud)
    assert claims["aud"] == aud and claims["tid"] == TENANT and claims["oid"] == sp["objectId"]
    assert claims["appid"] == claims["azp"] == sp["appId"] and claims["ver"] == "2.0"
    assert claims["exp"] - claims["nbf"] == 3599 and claims["iss"] == f"{fresh_server.url}/{TENANT}/v2.0"


def test_token_endpoint_errors(fresh_server, sp):
    good = {"client_id": sp["appId"], "grant_type": "client_credentials", "scope": COG_SCOPE}
    wrong = token_request(fresh_server, **good, client_secret="not-the-secret")
    assert wrong.status_code == 401
    body = wrong.json()
    assert body["error"] == "invalid_client" and body["error_codes"] == [7000215]
    assert body["error_description"].startswith("AADSTS7000215: Invalid client secret provided.")
    assert sp["appId"] in body["error_description"]
    assert body["correlation_id"] == "7a1c0000-0000-4000-8000-000000000001"
    assert body["trace_id"] == wrong.headers["apim-request-id"] and body["timestamp"].endswith("Z")
    assert "not-the-secret" not in wrong.text
    cases = [
        (dict(good, client_secret=sp["password"], grant_type="password"), 400, "unsupported_grant_type", 70003),
        (dict(good, client_secret=sp["password"], scope=COG), 400, "invalid_scope", 1002012),
        (dict(good, client_secret=sp["password"], scope="https://example.com/.default"), 400, "invalid_resource",
         500011),
        (good, 401, "invalid_client", 7000218),
        (dict(good, client_id="00000000-0000-0000-0000-00000000abcd", client_secret="x"), 400,
         "unauthorized_client", 700016),
        ({k: v for k, v in good.items() if k != "scope"} | {"client_secret": "x"}, 400, "invalid_request", 900144),
    ]
    for form, status, error, code in cases:
        response = token_request(fresh_server, **form)
        assert (response.status_code, response.json()["error"], response.json()["error_codes"]) == \
            (status, error, [code]), (form, response.text)


# -- managed identity through azure-identity -----------------------------------

CLIENT = r"""
import json, sys
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential
kind, selector = sys.argv[1], json.loads(sys.argv[2])
if kind == "default":
    credential = DefaultAzureCredential()
elif "client_id" in selector:
    credential = ManagedIdentityCredential(client_id=selector["client_id"])
else:
    credential = ManagedIdentityCredential(identity_config=selector or None)
token = credential.get_token("https://cognitiveservices.azure.com/.default")
again = credential.get_token("https://cognitiveservices.azure.com/.default")
print(json.dumps({"token": token.token, "expires_on": token.expires_on, "cached": again.token == token.token}))
"""


def mi_env(server, style: str) -> dict[str, str]:
    """A clean environment (no Azure credentials of the host) plus one managed-identity style."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AZURE_", "IDENTITY_", "MSI_", "IMDS_", "LAPIS_"))}
    env["PYTHONPATH"] = str(ROOT / "src")
    exports = admin(server, "GET", "identity/environment").json()
    if style == "appservice":
        env.update(IDENTITY_ENDPOINT=exports["IDENTITY_ENDPOINT"], IDENTITY_HEADER=exports["IDENTITY_HEADER"])
    else:
        env["AZURE_POD_IDENTITY_AUTHORITY_HOST"] = exports["AZURE_POD_IDENTITY_AUTHORITY_HOST"]
    return env


def get_token(server, style: str, kind: str, selector: dict | None = None, cwd: Path | None = None) -> dict:
    done = subprocess.run([sys.executable, "-c", CLIENT, kind, json.dumps(selector or {})], env=mi_env(server, style),
                          capture_output=True, text=True, timeout=90, cwd=cwd)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("style", ["appservice", "imds"])
@pytest.mark.parametrize("kind", ["managed", "default"])
def test_managed_identity_with_azure_identity(fresh_server, tmp_path, style, kind):
    got = get_token(fresh_server, style, kind, cwd=tmp_path)
    claims = decode(fresh_server, got["token"])
    assert claims["aud"] == COG and claims["tid"] == TENANT
    workload = [m for m in admin(fresh_server, "GET", "managedIdentities").json()["value"]
                if m["resourceId"] == "/lapis/workload"]
    assert [claims["oid"], claims["appid"]] == [workload[0]["principalId"], workload[0]["clientId"]]
    assert got["expires_on"] == claims["exp"] and got["cached"]


@pytest.mark.parametrize("style", ["appservice", "imds"])
def test_user_assigned_and_account_identities(fresh_server, tmp_path, style):
    assert fresh_server.arm("PUT", f"/subscriptions/{DEFAULT_SUBSCRIPTION}/resourcegroups/rg-mi",
                            {"location": "eastus"}).status_code in (200, 201)
    uami = admin(fresh_server, "POST", "userAssignedIdentities", {"resourceGroup": "rg-mi", "name": "app-id"})
    assert uami.status_code == 201, uami.text
    props = uami.json()["properties"]
    by_client = decode(fresh_server, get_token(fresh_server, style, "managed", {"client_id": props["clientId"]},
                                               tmp_path)["token"])
    assert (by_client["oid"], by_client["appid"]) == (props["principalId"], props["clientId"])
    by_resource = get_token(fresh_server, style, "managed", {"resource_id": uami.json()["id"]}, tmp_path)
    assert decode(fresh_server, by_resource["token"])["oid"] == props["principalId"]

    fresh_server.arm("POST", f"/subscriptions/{DEFAULT_SUBSCRIPTION}/providers/Microsoft.CognitiveServices/register")
    account = fresh_server.arm("PUT", fresh_server.account_path("rg-mi", "mi-acct"), {
        "location": "eastus", "kind": "OpenAI", "sku": {"name": "S0"}, "identity": {"type": "SystemAssigned"},
        "properties": {"customSubDomainName": f"mi-acct-{style}"}})
    assert account.status_code in (200, 201), account.text
    principal = account.json()["identity"]["principalId"]
    by_object = get_token(fresh_server, style, "managed", {"object_id": principal}, tmp_path)
    assert decode(fresh_server, by_object["token"])["oid"] == principal

    exports = admin(fresh_server, "GET", "identity/environment").json()
    missing = requests.get(f"{fresh_server.url}/metadata/identity/oauth2/token", headers={"Metadata": "true"},
                           params={"api-version": "2018-02-01", "resource": COG,
                                   "client_id": "00000000-0000-0000-0000-000000000000"}, timeout=30)
    assert (missing.status_code, missing.json()) == (400, {"error": "invalid_request",
                                                           "error_description": "Identity not found"})
    no_header = requests.get(exports["IDENTITY_ENDPOINT"], params={"api-version": "2019-08-01", "resource": COG},
                             timeout=30)
    assert no_header.status_code == 401
    no_metadata = requests.get(f"{fresh_server.url}/metadata/identity/oauth2/token/", timeout=30,
                               params={"api-version": "2018-02-01", "resource": COG})
    assert (no_metadata.status_code, no_metadata.json()["error"]) == (400, "bad_request_102")


def test_msi_response_shapes(fresh_server):
    exports = admin(fresh_server, "GET", "identity/environment").json()
    app_service = requests.get(exports["IDENTITY_ENDPOINT"], params={"api-version": "2019-08-01", "resource": COG},
                               headers={"X-IDENTITY-HEADER": exports["IDENTITY_HEADER"]}, timeout=30).json()
    assert set(app_service) == {"access_token", "expires_on", "resource", "token_type", "client_id"}
    assert isinstance(app_service["expires_on"], int) and app_service["resource"] == COG
    imds = requests.get(f"{fresh_server.url}/metadata/identity/oauth2/token/", headers={"Metadata": "true"},
                        params={"api-version": "2018-02-01", "resource": f"{COG}/"}, timeout=30).json()
    assert imds["expires_in"] == "3599" and imds["expires_on"].isdigit() and imds["token_type"] == "Bearer"
    assert decode(fresh_server, imds["access_token"])["aud"] == COG


def test_rotation_keeps_old_tokens_verifiable(fresh_server, sp):
    form = dict(client_id=sp["appId"], grant_type="client_credentials", client_secret=sp["password"],
                scope=COG_SCOPE)
    old = token_request(fresh_server, **form).json()["access_token"]
    old_kid = jwt.get_unverified_header(old)["kid"]
    rotated = admin(fresh_server, "POST", "signingKeys/rotate")
    assert rotated.status_code == 200 and rotated.json()["kid"] != old_kid
    jwks = requests.get(f"{fresh_server.url}/{TENANT}/discovery/v2.0/keys", timeout=30).json()
    assert [k["kid"] for k in jwks["keys"]] == [rotated.json()["kid"], old_kid]
    assert decode(fresh_server, old)["oid"] == sp["objectId"]
    new = token_request(fresh_server, **form).json()["access_token"]
    assert jwt.get_unverified_header(new)["kid"] == rotated.json()["kid"]
    assert decode(fresh_server, new)["oid"] == sp["objectId"]
    fresh_server.stop()
    fresh_server.start()  # the keys live in the database: a restart keeps both
    assert decode(fresh_server, old)["oid"] == sp["objectId"]
    assert decode(fresh_server, new)["oid"] == sp["objectId"]


# -- CLI -----------------------------------------------------------------------

def test_cli_identity_commands(fresh_server, tmp_path):
    cli = Cli(fresh_server.home, tmp_path / "elsewhere")
    done = cli("ad", "sp", "create-for-rbac", "--name", "from-cli")
    created = json.loads(done.stdout)
    assert set(created) == {"appId", "displayName", "password", "tenant"}
    assert created["displayName"] == "from-cli" and created["tenant"] == TENANT
    assert "credentials that you must protect" in done.stderr
    token = token_request(fresh_server, client_id=created["appId"], client_secret=created["password"],
                          grant_type="client_credentials", scope=COG_SCOPE)
    assert token.status_code == 200, token.text

    cli("group", "create", "--name", "rg-cli", "--location", "westus")
    uami = cli.json("identity", "create", "--name", "cli-uami", "--resource-group", "rg-cli")
    assert uami["type"] == "Microsoft.ManagedIdentity/userAssignedIdentities" and uami["location"] == "westus"
    assert uami["resourceGroup"] == "rg-cli" and uami["tenantId"] == TENANT and uami["clientId"]
    assert uami["principalId"] in {m["principalId"] for m in cli.json("identity", "list")}

    got = cli.json("account", "get-access-token", "--resource", f"{COG}/")
    assert set(got) == {"accessToken", "expiresOn", "expires_on", "subscription", "tenant", "tokenType"}
    assert got["tenant"] == TENANT and got["subscription"] == DEFAULT_SUBSCRIPTION and got["tokenType"] == "Bearer"
    assert len(got["expiresOn"]) == len("2026-01-01 00:00:00.000000")
    claims = decode(fresh_server, got["accessToken"])
    assert claims["aud"] == COG and claims["exp"] == got["expires_on"] and claims["upn"] == "admin@lapis.local"
    arm = cli.json("account", "get-access-token")
    assert decode(fresh_server, arm["accessToken"], "https://management.core.windows.net/")
    assert "AADSTS500011" in cli.fails("invalid_resource", "account", "get-access-token", "--resource",
                                       "https://example.com/")
