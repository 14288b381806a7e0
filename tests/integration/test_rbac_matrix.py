"""The RBAC matrix against a real server (issue 4): each built-in role, assigned
at the account, against chat, embeddings, deployment create and key listing,
with Entra tokens from the token endpoint; exact status and body each time."""

from __future__ import annotations

import uuid

import jwt
import pytest
import requests

from support.server import DEFAULT_SUBSCRIPTION, start_server

V = "2024-10-21"
TENANT = "2c6d6e8a-6c61-7069-7300-000000000000"
OPENAI = "Microsoft.CognitiveServices/accounts/OpenAI"
ROLES = {  # name: (guid, chat, embeddings, deployment create, listKeys), from Azure's role definitions
    "Owner": ("8e3af657-a8ff-443c-a75c-2fe8c4bcb635", False, False, True, True),
    "Contributor": ("b24988ac-6180-42a0-ab88-20f7382dd24c", False, False, True, True),
    "Reader": ("acdd72a7-3385-48ef-bd42-f606fba81ae7", False, False, False, False),
    "Cognitive Services Contributor": ("25fbc0a9-bd7c-42a3-aa1a-3b75d497ee68", False, False, True, True),
    "Cognitive Services User": ("a97b65f3-24c7-4388-baec-2e87135dc908", True, True, False, True),
    "Cognitive Services OpenAI User": ("5e0bd9bd-7b93-4f28-af87-19fc36ad61bd", True, True, False, False),
    "Cognitive Services OpenAI Contributor": ("a001fd3d-188f-4b5d-821b-7da978bf7442", True, True, True, False),
    "Cognitive Services Usages Reader": ("bba48692-92b0-4667-a9ad-c31c7b334ac2", False, False, False, False),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("matrix"), demo=True)
    yield server
    server.stop()


def principal_with(server, role_guid: str) -> dict:
    admin = {"Authorization": f"Bearer {server.admin_token}"}
    sp = requests.post(f"{server.url}/lapis/admin/servicePrincipals", headers=admin, timeout=10,
                       json={"displayName": "matrix-" + uuid.uuid4().hex[:8]}).json()

    def token(scope: str) -> str:
        answer = requests.post(f"{server.url}/{TENANT}/oauth2/v2.0/token", timeout=10, data={
            "grant_type": "client_credentials", "client_id": sp["appId"], "client_secret": sp["password"],
            "scope": scope})
        assert answer.status_code == 200, answer.text
        return answer.json()["access_token"]

    data = token("https://cognitiveservices.azure.com/.default")
    oid = jwt.decode(data, options={"verify_signature": False})["oid"]
    account = server.account_path("lapis-demo", "lapis-demo")
    assigned = server.arm("PUT", f"{account}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}", {
        "properties": {"roleDefinitionId": f"/subscriptions/{DEFAULT_SUBSCRIPTION}/providers/Microsoft.Authorization/"
                                           f"roleDefinitions/{role_guid}", "principalId": oid,
                       "principalType": "ServicePrincipal"}}, api_version="2022-04-01")
    assert assigned.status_code == 201, assigned.text
    return {"data": data, "arm": token("https://management.azure.com/.default"), "oid": oid,
            "app": sp["appId"], "account": account}


def data_call(server, who: dict, deployment: str, operation: str, body: dict) -> requests.Response:
    endpoint = server.demo_env()["AZURE_OPENAI_ENDPOINT"]
    return requests.post(f"{endpoint}/openai/deployments/{deployment}/{operation}", params={"api-version": V},
                         json=body, headers={"Authorization": f"Bearer {who['data']}"}, timeout=30)


def denied_data(who: dict, action: str, template: str) -> dict:
    return {"error": {"code": "PermissionDenied", "message": (
        f"The principal `{who['oid']}` lacks the required data action `{OPENAI}/{action}` to perform "
        f"`POST {template}` operation.")}}


def denied_arm(who: dict, action: str, scope: str) -> dict:
    return {"error": {"code": "AuthorizationFailed", "message": (
        f"The client '{who['app']}' with object id '{who['oid']}' does not have authorization to perform action "
        f"'{action}' over scope '{scope}' or the scope is invalid. If access was recently granted, please refresh "
        "your credentials.")}}


@pytest.mark.parametrize("role", sorted(ROLES))
def test_role(server, role: str) -> None:
    guid, chat, embeddings, deploy, keys = ROLES[role]
    who = principal_with(server, guid)

    answer = data_call(server, who, "gpt-4o-mini", "chat/completions",
                       {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5})
    if chat:
        assert answer.status_code == 200 and answer.json()["object"] == "chat.completion", answer.text
    else:
        assert (answer.status_code, answer.json()) == (401, denied_data(
            who, "deployments/chat/completions/action", "/openai/deployments/{deployment-id}/chat/completions"))

    answer = data_call(server, who, "text-embedding-3-small", "embeddings", {"input": "hello"})
    if embeddings:
        assert answer.status_code == 200 and answer.json()["object"] == "list", answer.text
    else:
        assert (answer.status_code, answer.json()) == (401, denied_data(
            who, "deployments/embeddings/action", "/openai/deployments/{deployment-id}/embeddings"))

    name = "m" + uuid.uuid4().hex[:8]
    deployment = f"{who['account']}/deployments/{name}"
    answer = server.arm("PUT", deployment, {"sku": {"name": "Standard", "capacity": 1}, "properties": {
        "model": {"format": "OpenAI", "name": "gpt-4o-mini"}}}, token=who["arm"])
    if deploy:
        assert answer.status_code in (200, 201) and answer.json()["name"] == name, answer.text
        assert server.arm("DELETE", deployment).status_code in (200, 204)
    else:
        assert (answer.status_code, answer.json()) == (403, denied_arm(
            who, "Microsoft.CognitiveServices/accounts/deployments/write", deployment))

    answer = server.arm("POST", f"{who['account']}/listKeys", token=who["arm"])
    if keys:
        assert answer.status_code == 200 and set(answer.json()) == {"key1", "key2"}, answer.text
    else:
        assert (answer.status_code, answer.json()) == (403, denied_arm(
            who, "Microsoft.CognitiveServices/accounts/listKeys/action", who["account"]))
