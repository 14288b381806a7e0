"""Node's @azure/identity against real Lapis servers, feeding the npm `openai` AzureOpenAI
client through getBearerTokenProvider (tests/node/identity.mjs): a chat and a streamed chat.

* ManagedIdentityCredential and DefaultAzureCredential, unmodified, through both
  managed-identity styles: App Service (IDENTITY_ENDPOINT + IDENTITY_HEADER) and IMDS
  (AZURE_POD_IDENTITY_AUTHORITY_HOST), over plain HTTP;
* ClientSecretCredential over HTTPS (`lapis serve --tls`, NODE_EXTRA_CA_CERTS = the local CA,
  authorityHost = the Lapis URL, disableInstanceDiscovery: true), as real-clients.md §4 records.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid

import pytest
import requests

from support.server import DEFAULT_SUBSCRIPTION, start_server
from test_node_clients import NODE_DIR, RUN_TIMEOUT, _require, node_modules  # noqa: F401 - the session's npm ci

TENANT = "2c6d6e8a-6c61-7069-7300-000000000000"
OPENAI_USER = "5e0bd9bd-7b93-4f28-af87-19fc36ad61bd"
COGNITIVE_SERVICES = "https://cognitiveservices.azure.com"
IDENTITY_VERSION = "4.13.1"  # tests/node/package.json pins it; 4.14 needs Node 22

pytestmark = pytest.mark.timeout(RUN_TIMEOUT + 180)


def admin(server, method: str, path: str, **kw) -> requests.Response:
    return requests.request(method, f"{server.url}/lapis/admin/{path}", timeout=10, verify=server.verify,
                            headers={"Authorization": f"Bearer {server.admin_token}"}, **kw)


def grant(server, principal: str) -> None:
    """Cognitive Services OpenAI User on the demo account."""
    scope = server.account_path("lapis-demo", "lapis-demo")
    resp = server.arm("PUT", f"{scope}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}", {
        "properties": {"roleDefinitionId": f"/subscriptions/{DEFAULT_SUBSCRIPTION}/providers/Microsoft.Authorization/"
                                           f"roleDefinitions/{OPENAI_USER}",
                       "principalId": principal, "principalType": "ServicePrincipal"}}, api_version="2022-04-01")
    assert resp.status_code == 201, resp.text


def run_node(modules, cwd, **env: str) -> tuple[int, dict]:  # noqa: ANN001
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("AZURE_", "IDENTITY_", "MSI_", "IMDS_", "LAPIS_", "OPENAI_", "NODE_EXTRA_CA"))}
    done = subprocess.run([_require("node"), str(NODE_DIR / "identity.mjs")], env={**base, **env}, cwd=cwd,
                          capture_output=True, text=True, timeout=RUN_TIMEOUT)
    lines = done.stdout.strip().splitlines()
    assert lines, f"no output (exit {done.returncode}):\n{done.stderr[-3000:]}"
    return done.returncode, json.loads(lines[-1])


def check_chat(code: int, out: dict, oid: str) -> None:
    assert code == 0, out
    assert out["aud"] == COGNITIVE_SERVICES and out["oid"] == oid
    assert out["expiresOnTimestamp"] > time.time() * 1000  # epoch milliseconds, as @azure/identity reports
    assert out["chat"] and out["stream"] and out["usage"] > 0


@pytest.fixture(scope="module")
def plain_server(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("node-mi"), demo=True)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("node-sp"), demo=True, tls=True)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def workload(plain_server) -> str:
    """The server's workload identity (what both managed-identity styles hand out), allowed to chat."""
    found = next(m for m in admin(plain_server, "GET", "managedIdentities").json()["value"]
                 if m["resourceId"] == "/lapis/workload")
    grant(plain_server, found["principalId"])
    return found["principalId"]


def test_identity_is_pinned(node_modules):  # noqa: F811
    installed = json.loads((node_modules / "@azure" / "identity" / "package.json").read_text())["version"]
    assert installed == IDENTITY_VERSION
    assert json.loads((NODE_DIR / "package.json").read_text())["dependencies"]["@azure/identity"] == IDENTITY_VERSION


@pytest.mark.parametrize("credential", ["managed", "default"])
@pytest.mark.parametrize("style", ["appservice", "imds"])
def test_managed_identity_with_openai(node_modules, plain_server, workload, tmp_path, credential, style):  # noqa: F811
    exports = admin(plain_server, "GET", "identity/environment").json()
    env = {"CREDENTIAL": credential, "ENDPOINT": plain_server.demo_env()["AZURE_OPENAI_ENDPOINT"]}
    if style == "appservice":
        env.update(IDENTITY_ENDPOINT=exports["IDENTITY_ENDPOINT"], IDENTITY_HEADER=exports["IDENTITY_HEADER"])
    else:
        env["AZURE_POD_IDENTITY_AUTHORITY_HOST"] = exports["AZURE_POD_IDENTITY_AUTHORITY_HOST"]
    check_chat(*run_node(node_modules, tmp_path, **env), workload)


def test_client_secret_over_https_with_openai(node_modules, tls_server, tmp_path):  # noqa: F811
    allowed = admin(tls_server, "POST", "servicePrincipals", json={"displayName": "node-app"}).json()
    refused = admin(tls_server, "POST", "servicePrincipals", json={"displayName": "node-app-no-role"}).json()
    grant(tls_server, allowed["objectId"])
    env = {"CREDENTIAL": "secret", "TENANT": TENANT, "AUTHORITY": tls_server.url,
           "NODE_EXTRA_CA_CERTS": str(tls_server.home / "tls" / "ca.pem"),
           "ENDPOINT": tls_server.demo_env()["AZURE_OPENAI_ENDPOINT"]}
    assert env["ENDPOINT"].startswith("https://")
    check_chat(*run_node(node_modules, tmp_path, APP_ID=allowed["appId"], SECRET=allowed["password"], **env),
               allowed["objectId"])
    # a principal without the role gets its token, then Azure's 401 PermissionDenied from the data plane
    code, out = run_node(node_modules, tmp_path, APP_ID=refused["appId"], SECRET=refused["password"], **env)
    assert code == 1 and out["name"] == "AuthenticationError", out
    assert f"The principal `{refused['objectId']}` lacks the required data action" in out["error"]
    # a wrong secret is refused by the token endpoint as Entra refuses it; @azure/identity 4.13 wraps
    # msal's invalid_client in AuthenticationRequiredError
    code, out = run_node(node_modules, tmp_path, APP_ID=allowed["appId"], SECRET="wrong", **env)
    assert code == 1 and out["name"] == "AuthenticationRequiredError", out
    assert "invalid_client" in out["error"] and "AADSTS7000215" in out["error"], out
