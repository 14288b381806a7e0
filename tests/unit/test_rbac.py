"""RBAC library: the built-in role matrix against Azure's published definitions,
wildcards, NotActions, scope inheritance, the ARM action mapping, the 5-second
cache, and the exact 401/403 bodies."""

from __future__ import annotations

import json

import pytest

from lapis.auth import rbac
from lapis.auth.actions import (CHAT, COMPLETIONS, EMBEDDINGS, MODELS_LIST, V1_CHAT, arm_permission)
from lapis.auth.rbac import Authorizer, Grant, covers, matches, role_by_id, role_by_name
from lapis.errors import catalogue as errors

SUB = "/subscriptions/11111111-2222-3333-4444-555555555555"
RG = f"{SUB}/resourceGroups/rg1"
ACCT = f"{RG}/providers/Microsoft.CognitiveServices/accounts/acct1"
OID = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"

DEPLOY_WRITE = "Microsoft.CognitiveServices/accounts/deployments/write"
LIST_KEYS = "Microsoft.CognitiveServices/accounts/listKeys/action"
ACCOUNT_READ = "Microsoft.CognitiveServices/accounts/read"
RA_WRITE = "Microsoft.Authorization/roleAssignments/write"

# role: (chat, embeddings, completions, deployments/write, listKeys, accounts/read, roleAssignments/write)
MATRIX = {
    "Owner": (False, False, False, True, True, True, True),
    "Contributor": (False, False, False, True, True, True, False),
    "Reader": (False, False, False, False, False, True, False),
    "Cognitive Services Contributor": (False, False, False, True, True, True, False),
    "Cognitive Services User": (True, True, True, False, True, True, False),
    "Cognitive Services OpenAI User": (True, True, True, False, False, True, False),
    "Cognitive Services OpenAI Contributor": (True, True, True, True, False, True, False),
    "Cognitive Services Usages Reader": (False, False, False, False, False, False, False),
}
GUIDS = {
    "Owner": "8e3af657-a8ff-443c-a75c-2fe8c4bcb635", "Contributor": "b24988ac-6180-42a0-ab88-20f7382dd24c",
    "Reader": "acdd72a7-3385-48ef-bd42-f606fba81ae7",
    "Cognitive Services Contributor": "25fbc0a9-bd7c-42a3-aa1a-3b75d497ee68",
    "Cognitive Services User": "a97b65f3-24c7-4388-baec-2e87135dc908",
    "Cognitive Services OpenAI User": "5e0bd9bd-7b93-4f28-af87-19fc36ad61bd",
    "Cognitive Services OpenAI Contributor": "a001fd3d-188f-4b5d-821b-7da978bf7442",
    "Cognitive Services Usages Reader": "bba48692-92b0-4667-a9ad-c31c7b334ac2",
}


class FakeSource:
    """A GrantSource whose assignments the test edits; counts the reads."""

    def __init__(self, grants: dict[str, list[Grant]] | None = None):
        self.grants = grants or {}
        self.reads = 0

    async def grants_for(self, principal_id: str) -> list[Grant]:
        self.reads += 1
        return list(self.grants.get(principal_id, []))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def authorizer_with(role: str, scope: str = ACCT, clock: Clock | None = None) -> tuple[Authorizer, FakeSource]:
    source = FakeSource({OID: [Grant(scope, GUIDS[role])]})
    return Authorizer(source, clock=clock or Clock()), source


def test_builtin_roles_have_azures_names_and_guids():
    assert {r.role_name: r.id for r in rbac.builtin_roles()} == GUIDS
    assert role_by_name("cognitive services openai user").id == GUIDS["Cognitive Services OpenAI User"]
    assert role_by_id(f"{SUB}/providers/Microsoft.Authorization/roleDefinitions/{GUIDS['Reader'].upper()}").role_name \
        == "Reader"
    assert role_by_id("00000000-0000-0000-0000-000000000000") is None
    owner = role_by_name("Owner")
    assert owner.actions == ("*",) and owner.data_actions == ()


@pytest.mark.parametrize("role", sorted(MATRIX))
async def test_role_matrix(role):
    auth, _ = authorizer_with(role)
    chat, embeddings, completions, deploy, keys, read, assign = MATRIX[role]
    assert await auth.allowed_data_action(OID, CHAT.action, ACCT) is chat
    assert await auth.allowed_data_action(OID, EMBEDDINGS.action, ACCT) is embeddings
    assert await auth.allowed_data_action(OID, COMPLETIONS.action, ACCT) is completions
    assert await auth.allowed_action(OID, DEPLOY_WRITE, f"{ACCT}/deployments/gpt") is deploy
    assert await auth.allowed_action(OID, LIST_KEYS, ACCT) is keys
    assert await auth.allowed_action(OID, ACCOUNT_READ, ACCT) is read
    assert await auth.allowed_action(OID, RA_WRITE, ACCT) is assign


async def test_usages_reader_reads_quota_only():
    auth, _ = authorizer_with("Cognitive Services Usages Reader", SUB)
    assert await auth.allowed_action(OID, "Microsoft.CognitiveServices/locations/usages/read", SUB)
    assert not await auth.allowed_action(OID, ACCOUNT_READ, ACCT)


async def test_models_list_is_a_read_data_action():
    auth, _ = authorizer_with("Cognitive Services OpenAI User")
    assert await auth.allowed_data_action(OID, MODELS_LIST.action, ACCT)
    reader, _ = authorizer_with("Reader")
    assert not await reader.allowed_data_action(OID, MODELS_LIST.action, ACCT)


def test_wildcards_match_any_segments_in_any_case():
    assert matches("*", "Microsoft.CognitiveServices/accounts/write")
    assert matches("*/read", "microsoft.cognitiveservices/ACCOUNTS/deployments/read")
    assert not matches("*/read", "Microsoft.CognitiveServices/accounts/write")
    assert matches("Microsoft.CognitiveServices/*/read", "Microsoft.CognitiveServices/accounts/read")
    assert matches("Microsoft.CognitiveServices/accounts/listkeys/action", LIST_KEYS)
    assert matches("Microsoft.CognitiveServices/accounts/OpenAI/*", CHAT.action)
    assert not matches("Microsoft.CognitiveServices/accounts/OpenAI/*", "Microsoft.CognitiveServices/accounts/read")
    assert not matches("Microsoft.CognitiveServices/accounts/read", "Microsoft.CognitiveServices/accounts/readx")
    assert not matches("Microsoft.Cognitive.Services/*", "MicrosoftXCognitive.Services/x")  # dots are literal


async def test_not_actions_subtract_within_their_role_only():
    contributor = role_by_name("Contributor")
    assert contributor.allows_action("Microsoft.CognitiveServices/accounts/write")
    assert not contributor.allows_action("Microsoft.Authorization/roleAssignments/write")
    assert not contributor.allows_action("microsoft.authorization/roleassignments/DELETE")
    assert contributor.allows_action("Microsoft.Authorization/roleAssignments/read")
    source = FakeSource({OID: [Grant(SUB, GUIDS["Contributor"]), Grant(ACCT, GUIDS["Owner"])]})
    auth = Authorizer(source, clock=Clock())
    assert await auth.allowed_action(OID, RA_WRITE, ACCT)  # Owner at the account grants what Contributor lacks
    assert not await auth.allowed_action(OID, RA_WRITE, RG)  # but not above the account


async def test_assignments_apply_at_their_scope_and_below():
    for scope, inside, outside in (
            (SUB, ACCT, "/subscriptions/99999999-2222-3333-4444-555555555555"),
            (RG, f"{ACCT}/deployments/gpt", f"{SUB}/resourceGroups/rg2"),
            (ACCT, f"{ACCT}/deployments/x", f"{RG}/providers/Microsoft.CognitiveServices/accounts/acct10")):
        auth, _ = authorizer_with("Cognitive Services OpenAI User", scope)
        assert await auth.allowed_data_action(OID, CHAT.action, scope)
        assert await auth.allowed_data_action(OID, CHAT.action, inside.upper())  # case-insensitive
        assert not await auth.allowed_data_action(OID, CHAT.action, outside)
    auth, _ = authorizer_with("Cognitive Services OpenAI User", ACCT)
    assert not await auth.allowed_data_action(OID, CHAT.action, RG)  # never upwards
    assert not await auth.allowed_data_action("another-principal", CHAT.action, ACCT)


def test_scope_helpers():
    assert covers(SUB + "/", ACCT) and not covers(ACCT, SUB)
    assert not covers(f"{SUB}/resourceGroups/rg", f"{SUB}/resourceGroups/rg1")  # whole segments only
    assert rbac.is_valid_scope(SUB) and rbac.is_valid_scope(RG) and rbac.is_valid_scope(ACCT + "/")
    assert not rbac.is_valid_scope("/subscriptions") and not rbac.is_valid_scope(f"{SUB}/foo")
    assert rbac.ancestors(f"{ACCT}/deployments/d") == [
        f"{ACCT}/deployments/d".lower(), ACCT.lower(), RG.lower(), SUB.lower()]
    assert rbac.subscription_of(ACCT) == SUB.split("/")[-1]


async def test_cache_keeps_assignments_at_most_five_seconds():
    clock = Clock()
    source = FakeSource()
    auth = Authorizer(source, clock=clock)
    assert not await auth.allowed_data_action(OID, CHAT.action, ACCT)
    source.grants[OID] = [Grant(ACCT, GUIDS["Cognitive Services OpenAI User"])]  # created on another replica
    clock.now += 4.9
    assert not await auth.allowed_data_action(OID, CHAT.action, ACCT)  # still cached
    assert source.reads == 1
    clock.now += 0.1
    assert await auth.allowed_data_action(OID, CHAT.action, ACCT)  # 5 s: reloaded
    source.grants[OID] = []  # removed elsewhere
    clock.now += 5.0
    assert not await auth.allowed_data_action(OID, CHAT.action, ACCT)
    assert source.reads == 3


async def test_invalidate_takes_effect_at_once():
    auth, source = authorizer_with("Cognitive Services OpenAI User")
    assert await auth.allowed_data_action(OID, CHAT.action, ACCT)
    source.grants[OID] = []
    auth.invalidate(OID)
    assert not await auth.allowed_data_action(OID, CHAT.action, ACCT)
    source.grants[OID] = [Grant(ACCT, GUIDS["Owner"])]
    auth.invalidate()
    assert await auth.allowed_action(OID, DEPLOY_WRITE, ACCT)


async def test_unknown_role_grants_nothing():
    source = FakeSource({OID: [Grant(ACCT, "00000000-0000-0000-0000-000000000000")]})
    assert not await Authorizer(source).allowed_action(OID, ACCOUNT_READ, ACCT)


@pytest.mark.parametrize("method,path,action,scope", [
    ("PUT", f"{ACCT}/deployments/gpt", DEPLOY_WRITE, f"{ACCT}/deployments/gpt"),
    ("PATCH", f"{ACCT}/deployments/gpt", DEPLOY_WRITE, f"{ACCT}/deployments/gpt"),
    ("DELETE", f"{ACCT}/deployments/gpt", "Microsoft.CognitiveServices/accounts/deployments/delete",
     f"{ACCT}/deployments/gpt"),
    ("GET", f"{ACCT}/deployments", "Microsoft.CognitiveServices/accounts/deployments/read", ACCT),
    ("POST", f"{ACCT}/listKeys", LIST_KEYS, ACCT),
    ("POST", f"{ACCT}/listkeys", LIST_KEYS, ACCT),
    ("POST", f"{ACCT}/regenerateKey", "Microsoft.CognitiveServices/accounts/regenerateKey/action", ACCT),
    ("GET", ACCT, ACCOUNT_READ, ACCT),
    ("PUT", ACCT, "Microsoft.CognitiveServices/accounts/write", ACCT),
    ("GET", f"{RG}/providers/Microsoft.CognitiveServices/accounts", ACCOUNT_READ, RG),
    ("GET", f"{SUB}/providers/Microsoft.CognitiveServices/accounts", ACCOUNT_READ, SUB),
    ("PUT", RG.lower(), "Microsoft.Resources/subscriptions/resourceGroups/write", RG.lower()),
    ("GET", RG, "Microsoft.Resources/subscriptions/resourceGroups/read", RG),
    ("HEAD", RG, "Microsoft.Resources/subscriptions/resourceGroups/read", RG),
    ("DELETE", RG, "Microsoft.Resources/subscriptions/resourceGroups/delete", RG),
    ("GET", f"{SUB}/resourcegroups", "Microsoft.Resources/subscriptions/resourceGroups/read", SUB),
    ("GET", SUB, "Microsoft.Resources/subscriptions/read", SUB),
    ("POST", f"{SUB}/providers/Microsoft.CognitiveServices/register", "Microsoft.CognitiveServices/register/action",
     SUB),
    ("GET", f"{SUB}/providers/Microsoft.CognitiveServices/locations/eastus/usages",
     "Microsoft.CognitiveServices/locations/usages/read",
     f"{SUB}/providers/Microsoft.CognitiveServices/locations/eastus"),
    ("PUT", f"{ACCT}/providers/Microsoft.Authorization/roleAssignments/x", RA_WRITE,
     f"{ACCT}/providers/Microsoft.Authorization/roleAssignments/x"),
    ("DELETE", f"{SUB}/providers/Microsoft.Authorization/roleAssignments/x",
     "Microsoft.Authorization/roleAssignments/delete", f"{SUB}/providers/Microsoft.Authorization/roleAssignments/x"),
    ("GET", f"{RG}/providers/Microsoft.Authorization/roleAssignments", "Microsoft.Authorization/roleAssignments/read",
     RG),
    ("GET", f"{SUB}/providers/Microsoft.Authorization/roleDefinitions", "Microsoft.Authorization/roleDefinitions/read",
     SUB),
])
def test_arm_permission(method, path, action, scope):
    found = arm_permission(method, path)
    assert (found.action, found.scope) == (action, scope)


def test_arm_permission_none_for_unchecked_paths():
    assert arm_permission("GET", "/subscriptions") is None
    assert arm_permission("GET", "/providers/Microsoft.CognitiveServices/operations") is None


async def test_mapping_and_matrix_agree_for_openai_roles():
    user, _ = authorizer_with("Cognitive Services OpenAI User")
    contributor, _ = authorizer_with("Cognitive Services OpenAI Contributor")
    put = arm_permission("PUT", f"{ACCT}/deployments/gpt")
    keys = arm_permission("POST", f"{ACCT}/listKeys")
    assert not await user.allowed_action(OID, put.action, put.scope)
    assert await contributor.allowed_action(OID, put.action, put.scope)
    assert not await contributor.allowed_action(OID, keys.action, keys.scope)


def test_data_actions_and_templates():
    assert CHAT.action == "Microsoft.CognitiveServices/accounts/OpenAI/deployments/chat/completions/action"
    assert (CHAT.method, CHAT.route_template) == ("POST", "/openai/deployments/{deployment-id}/chat/completions")
    assert EMBEDDINGS.route_template == "/openai/deployments/{deployment-id}/embeddings"
    assert COMPLETIONS.action.endswith("/deployments/completions/action")
    assert V1_CHAT.action == CHAT.action


def test_permission_denied_body_is_azures():
    error = errors.permission_denied(OID, CHAT.action, CHAT.method, CHAT.route_template)
    assert error.status == 401
    assert error.body == (
        b'{"error":{"code":"PermissionDenied","message":"The principal `aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee` '
        b'lacks the required data action `Microsoft.CognitiveServices/accounts/OpenAI/deployments/chat/completions/'
        b'action` to perform `POST /openai/deployments/{deployment-id}/chat/completions` operation."}}')


def test_authorization_failed_body_is_arms():
    error = errors.authorization_failed("app@lapis", OID, DEPLOY_WRITE, f"{ACCT}/deployments/gpt")
    assert error.status == 403
    assert json.loads(error.body) == {"error": {"code": "AuthorizationFailed", "message": (
        f"The client 'app@lapis' with object id '{OID}' does not have authorization to perform action "
        f"'{DEPLOY_WRITE}' over scope '{ACCT}/deployments/gpt' or the scope is invalid. If access was recently "
        "granted, please refresh your credentials.")}}


def test_role_assignment_errors():
    assert errors.role_assignment_exists().status == 409
    assert errors.role_assignment_exists().json() == {"error": {"code": "RoleAssignmentExists",
                                                                "message": "The role assignment already exists."}}
    assert errors.role_definition_not_found("x").status == 404
    assert errors.role_definition_not_found("x", 400).code == "RoleDefinitionDoesNotExist"


def test_role_definition_arm_body():
    body = role_by_name("Cognitive Services OpenAI User").to_arm(SUB.split("/")[-1])
    guid = GUIDS["Cognitive Services OpenAI User"]
    assert body["id"] == f"{SUB}/providers/Microsoft.Authorization/roleDefinitions/{guid}"
    assert body["properties"]["roleName"] == "Cognitive Services OpenAI User"
    assert body["properties"]["type"] == "BuiltInRole"
    assert CHAT.action in body["properties"]["permissions"][0]["dataActions"]
