"""Role assignments against SQLite and PostgreSQL (fixture database_url): the
store's queries, the Authorizer over the store, and the Microsoft.Authorization
ARM routes (auth.routes.handle) served by a small aiohttp app of the test's own."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from lapis.auth import rbac, routes
from lapis.auth.actions import CHAT
from lapis.auth.rbac import Authorizer
from lapis.auth.store import AssignmentExists, AssignmentStore, RoleAssignment
from lapis.errors import ApiError
from lapis.store.records import Account, ResourceGroup, Subscription
from lapis.store.sql import SqlStore

SUB_ID = "11111111-2222-3333-4444-555555555555"
SUB = f"/subscriptions/{SUB_ID}"
RG = f"{SUB}/resourceGroups/rg_1"
ACCT = f"{RG}/providers/Microsoft.CognitiveServices/accounts/acct1"
OID = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
OTHER = "bbbbbbbb-bbbb-cccc-dddd-eeeeeeeeeeee"
T = "2026-01-01T00:00:00Z"
OPENAI_USER = rbac.OPENAI_USER
RA = "/providers/Microsoft.Authorization/roleAssignments"
API = {"api-version": "2022-04-01"}


def assignment(name: str, scope: str, role: str = OPENAI_USER, principal: str = OID) -> RoleAssignment:
    return RoleAssignment(id=name, scope=scope, role_definition_id=role, principal_id=principal,
                          principal_type="ServicePrincipal", created_at=T, created_by="admin@lapis.local")


def guid(n: int) -> str:
    return f"{n:08d}-0000-0000-0000-000000000000"


@pytest.fixture()
async def store(database_url):
    sql = await SqlStore.open(database_url)
    await sql.add_subscription(Subscription(SUB_ID, "sub", "tenant", created_at=T))
    for group in ("rg_1", "rgx1"):
        await sql.put_group(ResourceGroup(SUB_ID, group, "eastus", {}, T))
    await sql.save_account(Account(id="a" * 32, subscription_id=SUB_ID, group="rg_1", name="acct1", kind="OpenAI",
                                   sku_name="S0", location="eastus", key1="k" * 32, key2="l" * 32, etag='"e"',
                                   doc={}, created_at=T, updated_at=T))
    yield sql
    await sql.close()


async def test_create_get_find_delete(store):
    ra = AssignmentStore(store.db)
    created = await ra.create(assignment(guid(1).upper(), ACCT + "/", principal=OID.upper()))
    assert created.id == guid(1) and created.scope == ACCT and created.principal_id == OID
    assert (await ra.get(guid(1).upper())).scope == ACCT
    assert (await ra.find(ACCT.lower(), OPENAI_USER, OID)).id == guid(1)
    with pytest.raises(AssignmentExists):  # same triple, another name
        await ra.create(assignment(guid(2), ACCT.upper()))
    with pytest.raises(AssignmentExists):  # same name
        await ra.create(assignment(guid(1), SUB))
    assert (await ra.delete(guid(1))).id == guid(1)
    assert await ra.delete(guid(1)) is None and await ra.get(guid(1)) is None


async def test_list_at_above_and_below(store):
    ra = AssignmentStore(store.db)
    await ra.create(assignment(guid(1), SUB))
    await ra.create(assignment(guid(2), RG, principal=OTHER))
    await ra.create(assignment(guid(3), ACCT))
    await ra.create(assignment(guid(4), f"{SUB}/resourceGroups/rgx1", principal=OTHER))  # `_` must not match x
    ids = lambda found: sorted(a.id for a in found)  # noqa: E731
    assert ids(await ra.list(RG)) == [guid(1), guid(2), guid(3)]
    assert ids(await ra.list(RG, below=False)) == [guid(1), guid(2)]
    assert ids(await ra.list(RG, principal_id=OTHER)) == [guid(2)]
    assert ids(await ra.list(SUB)) == [guid(1), guid(2), guid(3), guid(4)]
    assert ids(await ra.list(ACCT.upper(), below=False)) == [guid(1), guid(2), guid(3)]
    assert ids(await ra.list(principal_id=OID)) == [guid(1), guid(3)]
    assert [g.scope for g in await ra.grants_for(OTHER.upper())] == [RG, f"{SUB}/resourceGroups/rgx1"]


async def test_authorizer_over_the_store(store):
    ra = AssignmentStore(store.db)
    clock = [0.0]
    auth = Authorizer(ra, clock=lambda: clock[0])
    assert not await auth.allowed_data_action(OID, CHAT.action, ACCT)
    await ra.create(assignment(guid(1), RG))  # written by "another replica": no invalidate here
    assert not await auth.allowed_data_action(OID, CHAT.action, ACCT)
    clock[0] = 5.0
    assert await auth.allowed_data_action(OID, CHAT.action, ACCT)
    await ra.delete(guid(1))
    clock[0] = 10.0
    assert not await auth.allowed_data_action(OID, CHAT.action, ACCT)


# -- routes --------------------------------------------------------------------------------

@pytest.fixture()
async def api(store):
    services = SimpleNamespace(store=store)
    authorizer = Authorizer(AssignmentStore(store.db), clock=lambda: 0.0)  # never expires: invalidation shows

    async def dispatch(request: web.Request) -> web.StreamResponse:
        try:
            response = await routes.handle(services, request, authorizer)
        except ApiError as error:
            return web.Response(body=error.body, status=error.status, content_type="application/json")
        return response if response is not None else web.Response(status=418)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", dispatch)
    client = TestClient(TestServer(app))
    await client.start_server()
    client.authorizer = authorizer
    yield client
    await client.close()


def body(role: str = OPENAI_USER, principal: str = OID, **extra) -> dict:
    return {"properties": {"roleDefinitionId": f"{SUB}/providers/Microsoft.Authorization/roleDefinitions/{role}",
                           "principalId": principal, "principalType": "ServicePrincipal", **extra}}


async def test_put_get_list_delete_roundtrip(api):
    assert not await api.authorizer.allowed_data_action(OID, CHAT.action, ACCT)  # cached "no" from now on
    url = f"{ACCT}{RA}/{guid(7)}"
    r = await api.put(url, json=body(), params=API)
    assert r.status == 201
    created = await r.json()
    assert created == {**created, "id": url, "name": guid(7), "type": "Microsoft.Authorization/roleAssignments"}
    props = created["properties"]
    assert props["roleDefinitionId"] == f"{SUB}/providers/Microsoft.Authorization/roleDefinitions/{OPENAI_USER}"
    assert (props["principalId"], props["principalType"], props["scope"]) == (OID, "ServicePrincipal", ACCT)
    assert await api.authorizer.allowed_data_action(OID, CHAT.action, ACCT)  # invalidated by the write

    again = await api.put(url.lower().replace("roleassignments", "ROLEASSIGNMENTS"), json=body(), params=API)
    assert again.status == 200  # identical re-PUT of the same name
    dup = await api.put(f"{ACCT}{RA}/{guid(8)}", json=body(), params=API)
    assert (dup.status, (await dup.json())["error"]["code"]) == (409, "RoleAssignmentExists")
    changed = await api.put(url, json=body(role=rbac.READER), params=API)
    assert (changed.status, (await changed.json())["error"]["code"]) == (400, "RoleAssignmentUpdateNotPermitted")

    got = await api.get(url, params=API)
    assert got.status == 200 and (await got.json())["name"] == guid(7)
    listed = await api.get(f"{RG}{RA}", params={**API, "$filter": f"principalId eq '{OID}'"})
    assert [a["name"] for a in (await listed.json())["value"]] == [guid(7)]
    at = await api.get(f"{RG}{RA}", params={**API, "$filter": "atScope()"})
    assert (await at.json())["value"] == []

    gone = await api.delete(url, params=API)
    assert gone.status == 200 and (await gone.json())["name"] == guid(7)
    assert not await api.authorizer.allowed_data_action(OID, CHAT.action, ACCT)
    assert (await api.delete(url, params=API)).status == 204
    missing = await api.get(url, params=API)
    assert (missing.status, (await missing.json())["error"]["code"]) == (404, "RoleAssignmentNotFound")


@pytest.mark.parametrize("url,payload,status,code", [
    (f"{ACCT}{RA}/not-a-guid", body(), 400, "InvalidRoleAssignmentId"),
    (f"{ACCT}{RA}/{guid(1)}", body(role="00000000-0000-0000-0000-000000000000"), 400, "RoleDefinitionDoesNotExist"),
    (f"{ACCT}{RA}/{guid(1)}", body(principal="nobody"), 400, "InvalidPrincipalId"),
    (f"{SUB}/resourceGroups/nope{RA}/{guid(1)}", body(), 404, "ResourceGroupNotFound"),
    (f"{RG}/providers/Microsoft.CognitiveServices/accounts/nope{RA}/{guid(1)}", body(), 404, "ResourceNotFound"),
    (f"/subscriptions/99999999-2222-3333-4444-555555555555{RA}/{guid(1)}", body(), 404, "SubscriptionNotFound"),
])
async def test_put_rejections(api, url, payload, status, code):
    r = await api.put(url, json=payload, params=API)
    assert (r.status, (await r.json())["error"]["code"]) == (status, code)


async def test_role_definitions_and_other_paths(api):
    listed = await api.get(f"{SUB}/providers/Microsoft.Authorization/roleDefinitions", params=API)
    names = [d["properties"]["roleName"] for d in (await listed.json())["value"]]
    assert len(names) == 8 and "Cognitive Services OpenAI Contributor" in names
    one = await api.get(f"{SUB}/providers/Microsoft.Authorization/roleDefinitions",
                        params={**API, "$filter": "roleName eq 'Cognitive Services User'"})
    [found] = (await one.json())["value"]
    assert found["id"] == f"{SUB}/providers/Microsoft.Authorization/roleDefinitions/{rbac.COGNITIVE_SERVICES_USER}"
    by_id = await api.get(f"{ACCT}/providers/microsoft.authorization/roledefinitions/{rbac.OWNER}", params=API)
    assert (await by_id.json())["properties"]["permissions"][0]["actions"] == ["*"]
    nope = await api.get(f"{SUB}/providers/Microsoft.Authorization/roleDefinitions/{guid(0)}", params=API)
    assert (nope.status, (await nope.json())["error"]["code"]) == (404, "RoleDefinitionDoesNotExist")
    no_version = await api.get(f"{SUB}/providers/Microsoft.Authorization/roleDefinitions")
    assert (await no_version.json())["error"]["code"] == "MissingApiVersionParameter"
    assert (await api.get(f"{ACCT}/deployments", params=API)).status == 418  # not ours: None


async def test_concurrent_duplicates_create_one(api):
    results = await asyncio.gather(*(api.put(f"{RG}{RA}/{guid(n)}", json=body(), params=API) for n in range(10, 16)))
    assert sorted(r.status for r in results) == [201] + [409] * 5


async def test_cli_create_list_delete(api, tmp_path, monkeypatch):
    """`lapis role ...` over HTTP against the routes (the CLI is sync: it runs in a thread)."""
    import json

    from typer.testing import CliRunner

    from lapis.cli.main import app

    (tmp_path / "server.json").write_text(json.dumps({"url": str(api.make_url("")).rstrip("/"),
                                                      "admin_token": "t"}))
    monkeypatch.setenv("LAPIS_HOME", str(tmp_path))
    monkeypatch.delenv("LAPIS_URL", raising=False)
    runner = CliRunner()

    async def lapis(*args: str):
        result = await asyncio.to_thread(runner.invoke, app, ["role", *args])
        assert result.exit_code == 0, (result.output, result.exception)
        return json.loads(result.output) if result.output.strip() else None

    created = await lapis("assignment", "create", "--assignee", OID, "--role", "Cognitive Services OpenAI User",
                          "--scope", ACCT, "--assignee-principal-type", "ServicePrincipal", "--subscription", SUB_ID)
    assert (created["principalId"], created["scope"], created["resourceGroup"]) == (OID, ACCT, "rg_1")
    assert created["roleDefinitionId"].endswith(OPENAI_USER)
    await lapis("assignment", "create", "--assignee", OID, "--role", rbac.READER, "--scope", SUB,
                "--subscription", SUB_ID)
    listed = await lapis("assignment", "list", "--assignee", OID, "--subscription", SUB_ID)
    assert sorted(a["roleDefinitionName"] for a in listed) == ["Cognitive Services OpenAI User", "Reader"]
    assert await api.authorizer.allowed_data_action(OID, CHAT.action, ACCT)
    await lapis("assignment", "delete", "--assignee", OID, "--role", "Cognitive Services OpenAI User",
                "--scope", ACCT, "--subscription", SUB_ID)
    assert not await api.authorizer.allowed_data_action(OID, CHAT.action, ACCT)
    [left] = await lapis("assignment", "list", "--all", "--subscription", SUB_ID)
    await lapis("assignment", "delete", "--ids", left["id"], "--subscription", SUB_ID)
    assert await lapis("assignment", "list", "--all", "--subscription", SUB_ID) == []
    [owner] = await lapis("definition", "list", "--name", "Owner", "--subscription", SUB_ID)
    assert (owner["roleName"], owner["roleType"], owner["name"]) == ("Owner", "BuiltInRole", rbac.OWNER)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # one process owns a SQLite file
async def test_other_replica_hears_the_change(api, store, database_url):
    """PostgreSQL: a write on one replica invalidates the other's cache at once (NOTIFY)."""
    replica = await SqlStore.open(database_url)
    try:
        other = Authorizer(AssignmentStore(replica.db), clock=lambda: 0.0)  # never expires by itself
        await other.follow(replica.db)
        assert not await other.allowed_data_action(OID, CHAT.action, ACCT)
        assert (await api.put(f"{ACCT}{RA}/{guid(9)}", json=body(), params=API)).status == 201
        for _ in range(50):
            if await other.allowed_data_action(OID, CHAT.action, ACCT):
                break
            await asyncio.sleep(0.05)
        assert await other.allowed_data_action(OID, CHAT.action, ACCT)
    finally:
        await replica.close()
