"""`lapis role assignment create|list|delete --assignee` takes what az takes: a service
principal's appId, a managed identity's clientId or a user principal name, resolved
to the object id; an unknown GUID stays an object id, an unknown name is refused."""

from __future__ import annotations

import base64
import json
import uuid

import pytest
import requests

from support.cli import Cli
from support.server import start_server

TENANT = "2c6d6e8a-6c61-7069-7300-000000000000"
ROLE = "Cognitive Services OpenAI User"


def claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    home = tmp_path_factory.mktemp("assignee")
    server = start_server(home, demo=True)
    cli = Cli(server.home, home / "cli")
    yield server, cli, server.account_path("lapis-demo", "lapis-demo")
    server.stop()


def create(cli: Cli, assignee: str, scope: str) -> dict:
    return cli.json("role", "assignment", "create", "--assignee", assignee, "--role", ROLE, "--scope", scope)


def test_app_id_resolves_to_the_service_principal(setup):
    server, cli, scope = setup
    sp = cli.json("ad", "sp", "create-for-rbac", "--name", "assignee-app")
    object_id = next(p["objectId"] for p in cli.json("ad", "sp", "list") if p["appId"] == sp["appId"])
    assert object_id != sp["appId"]
    assert create(cli, sp["appId"], scope)["principalId"] == object_id
    listed = cli.json("role", "assignment", "list", "--assignee", sp["appId"], "--scope", scope)
    assert [(a["principalId"], a["roleDefinitionName"]) for a in listed] == [(object_id, ROLE)]
    # the assignment is the service principal's: its token now reaches the data plane
    token = requests.post(f"{server.url}/{TENANT}/oauth2/v2.0/token", timeout=10, data={
        "grant_type": "client_credentials", "client_id": sp["appId"], "client_secret": sp["password"],
        "scope": "https://cognitiveservices.azure.com/.default"}).json()["access_token"]
    endpoint = server.demo_env()["AZURE_OPENAI_ENDPOINT"]
    chat = requests.post(f"{endpoint}/openai/deployments/gpt-4o-mini/chat/completions",
                         params={"api-version": "2024-10-21"}, headers={"Authorization": f"Bearer {token}"},
                         json={"messages": [{"role": "user", "content": "hi"}]}, timeout=30)
    assert chat.status_code == 200, chat.text
    cli("role", "assignment", "delete", "--assignee", sp["appId"], "--role", ROLE, "--scope", scope)
    assert cli.json("role", "assignment", "list", "--assignee", sp["appId"], "--scope", scope) == []


def test_managed_identity_client_id_and_user_principal_name(setup):
    _, cli, scope = setup
    workload = next(m for m in cli.json("identity", "list") if m["resourceId"] == "/lapis/workload")
    assert workload["clientId"] != workload["principalId"]
    assert create(cli, workload["clientId"], scope)["principalId"] == workload["principalId"]
    admin_oid = claims(cli.json("account", "get-access-token")["accessToken"])["oid"]
    assert create(cli, "Admin@Lapis.Local", scope)["principalId"] == admin_oid.lower()
    unknown = str(uuid.uuid4())
    assert create(cli, unknown.upper(), scope)["principalId"] == unknown  # not in the directory: an object id
    refused = cli("role", "assignment", "create", "--assignee", "nobody@lapis.local", "--role", ROLE,
                  "--scope", scope, expect=1)
    assert refused.stderr.startswith("ERROR: Cannot find user or service principal in graph database for "
                                     "'nobody@lapis.local'.")
    refused = cli("role", "assignment", "create", "--assignee", "not-a-guid", "--role", ROLE, "--scope", scope,
                  expect=1)
    assert "'not-a-guid'" in refused.stderr


def test_create_for_rbac_assigns_the_role_at_each_scope(setup):
    server, cli, scope = setup
    sp = cli.json("ad", "sp", "create-for-rbac", "--name", "rbac-app", "--role", ROLE, "--scopes", scope)
    listed = cli.json("role", "assignment", "list", "--assignee", sp["appId"], "--scope", scope)
    assert [(a["roleDefinitionName"], a["principalType"], a["scope"].lower()) for a in listed] == [
        (ROLE, "ServicePrincipal", scope.lower())]
    token = requests.post(f"{server.url}/{TENANT}/oauth2/v2.0/token", timeout=10, data={
        "grant_type": "client_credentials", "client_id": sp["appId"], "client_secret": sp["password"],
        "scope": "https://cognitiveservices.azure.com/.default"}).json()["access_token"]
    endpoint = server.demo_env()["AZURE_OPENAI_ENDPOINT"]
    chat = requests.post(f"{endpoint}/openai/deployments/gpt-4o-mini/chat/completions",
                         params={"api-version": "2024-10-21"}, headers={"Authorization": f"Bearer {token}"},
                         json={"messages": [{"role": "user", "content": "hi"}]}, timeout=30)
    assert chat.status_code == 200, chat.text


def test_create_for_rbac_wants_role_and_scopes_together(setup):
    _, cli, scope = setup
    failed = cli("ad", "sp", "create-for-rbac", "--name", "half", "--role", ROLE, expect=1)
    assert "--role and --scopes must be given together" in failed.stderr
    assert not any(p["displayName"] == "half" for p in cli.json("ad", "sp", "list"))  # nothing was created
