"""Entra-style tokens on both planes, checked against role assignments: a
service principal gets a token, is refused until a role is assigned, and is
then let in; keys keep bypassing RBAC; the openai SDK takes a token provider."""

from __future__ import annotations

import uuid

import jwt
import openai
import pytest
import requests

from support.server import DEFAULT_SUBSCRIPTION

V = "2024-10-21"
TENANT = "2c6d6e8a-6c61-7069-7300-000000000000"
OPENAI_USER = "5e0bd9bd-7b93-4f28-af87-19fc36ad61bd"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
CHAT_ACTION = "Microsoft.CognitiveServices/accounts/OpenAI/deployments/chat/completions/action"


@pytest.fixture(scope="module")
def env(lapis_server):
    admin = {"Authorization": f"Bearer {lapis_server.admin_token}"}
    sp = requests.post(f"{lapis_server.url}/lapis/admin/servicePrincipals", json={"displayName": "app-" + uuid.uuid4().hex[:6]},
                       headers=admin, timeout=10).json()

    def token(scope: str) -> str:
        resp = requests.post(f"{lapis_server.url}/{TENANT}/oauth2/v2.0/token", timeout=10, data={
            "grant_type": "client_credentials", "client_id": sp["appId"], "client_secret": sp["password"],
            "scope": scope, "client_info": "1"})
        assert resp.status_code == 200, resp.text
        return resp.json()["access_token"]

    data_token = token("https://cognitiveservices.azure.com/.default")
    oid = jwt.decode(data_token, options={"verify_signature": False})["oid"]
    account_path = lapis_server.account_path("lapis-demo", "lapis-demo")
    return {"server": lapis_server, "data": data_token, "arm": token("https://management.azure.com/.default"),
            "oid": oid, "account": account_path, "demo": lapis_server.demo_env()}


def chat(env, token: str) -> requests.Response:
    return requests.post(f"{env['demo']['AZURE_OPENAI_ENDPOINT']}/openai/deployments/gpt-4o-mini/chat/completions",
                         params={"api-version": V}, json={"messages": [{"role": "user", "content": "hi"}]},
                         headers={"Authorization": f"Bearer {token}"}, timeout=30)


def assign(env, role: str, scope: str) -> str:
    name = str(uuid.uuid4())
    resp = env["server"].arm("PUT", f"{scope}/providers/Microsoft.Authorization/roleAssignments/{name}", {
        "properties": {"roleDefinitionId": f"/subscriptions/{DEFAULT_SUBSCRIPTION}/providers/Microsoft.Authorization/"
                                           f"roleDefinitions/{role}", "principalId": env["oid"],
                       "principalType": "ServicePrincipal"}}, api_version="2022-04-01")
    assert resp.status_code == 201, resp.text
    return f"{scope}/providers/Microsoft.Authorization/roleAssignments/{name}"


def test_token_without_a_role_is_permission_denied(env):
    resp = chat(env, env["data"])
    assert resp.status_code == 401
    assert resp.json() == {"error": {"code": "PermissionDenied", "message": (
        f"The principal `{env['oid']}` lacks the required data action `{CHAT_ACTION}` to perform "
        "`POST /openai/deployments/{deployment-id}/chat/completions` operation.")}}


def test_bad_and_wrong_audience_tokens_get_the_apim_401(env):
    for token in ("not.a.token", env["arm"]):
        resp = chat(env, token)
        assert resp.status_code == 401
        assert resp.json()["statusCode"] == 401 and "audience is incorrect" in resp.json()["message"]


def test_openai_user_role_lets_the_principal_chat_and_stream(env):
    assignment = assign(env, OPENAI_USER, env["account"])
    try:
        assert chat(env, env["data"]).status_code == 200
        client = openai.AzureOpenAI(azure_endpoint=env["demo"]["AZURE_OPENAI_ENDPOINT"], api_version=V,
                                    azure_ad_token_provider=lambda: env["data"], max_retries=0)
        text = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True) if c.choices)
        assert text
        # the data role is not a management role
        resp = env["server"].arm("POST", f"{env['account']}/listKeys", token=env["arm"])
        assert resp.status_code == 403 and resp.json()["error"]["code"] == "AuthorizationFailed"
    finally:
        env["server"].arm("DELETE", assignment, api_version="2022-04-01")
    assert chat(env, env["data"]).status_code == 401  # removal takes effect at once on this replica


def test_arm_reader_can_read_but_not_write(env):
    scope = f"/subscriptions/{DEFAULT_SUBSCRIPTION}/resourceGroups/lapis-demo"
    denied = env["server"].arm("GET", env["account"], token=env["arm"])
    assert denied.status_code == 403
    assert denied.json()["error"]["message"].startswith("The client '")
    assignment = assign(env, READER, scope)
    try:
        assert env["server"].arm("GET", env["account"], token=env["arm"]).status_code == 200
        write = env["server"].arm("PATCH", env["account"], {"tags": {"x": "y"}}, token=env["arm"])
        assert write.status_code == 403
        assert "Microsoft.CognitiveServices/accounts/write" in write.json()["error"]["message"]
    finally:
        env["server"].arm("DELETE", assignment, api_version="2022-04-01")
