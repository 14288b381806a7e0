"""The Activity Log: every management write and every denied request, with who, what, when,
from where and the outcome, served as Azure serves it and filtered as az filters it."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest

from lapis.diagnostics.shaping import iso
from support.diagnostics_harness import DEMO_ACCOUNT, SUB, start_lapis

VALUES = f"/subscriptions/{SUB}/providers/Microsoft.Insights/eventtypes/management/values"


@pytest.fixture()
async def lapis(tmp_path):
    server = await start_lapis(tmp_path / "home")
    yield server
    await server.client.close()


async def events(lapis, extra: str = "", **params: str) -> list[dict]:
    start = iso(time.time() - 3600)
    status, body = await lapis.arm("GET", VALUES, api_version="2015-04-01",
                                   params={"$filter": f"eventTimestamp ge '{start}'{extra}", **params})
    assert status == 200, body
    return body["value"]


async def test_a_management_write_is_recorded_with_who_what_when_where_and_outcome(lapis):
    before = time.time()
    status, _ = await lapis.arm("POST", f"{DEMO_ACCOUNT}/regenerateKey", {"keyName": "Key2"})
    assert status == 200
    [event] = [e for e in await events(lapis) if e["authorization"]["action"].endswith("regenerateKey/action")]
    assert event["caller"] == "admin@lapis.local"
    assert event["authorization"] == {"action": "Microsoft.CognitiveServices/accounts/regenerateKey/action",
                                      "scope": DEMO_ACCOUNT}
    assert event["operationName"] == {"value": "Microsoft.CognitiveServices/accounts/regenerateKey/action",
                                      "localizedValue": "Regenerate key"}
    assert event["status"] == {"value": "Succeeded", "localizedValue": "Succeeded"}
    assert event["subStatus"] == {"value": "OK", "localizedValue": "OK (HTTP Status Code: 200)"}
    assert event["httpRequest"]["method"] == "POST" and event["httpRequest"]["clientIpAddress"] == "127.0.0.1"
    assert event["resourceId"] == DEMO_ACCOUNT and event["resourceGroupName"] == "lapis-demo"
    assert event["resourceProviderName"]["value"] == "Microsoft.CognitiveServices"
    assert event["category"]["value"] == "Administrative" and event["level"] == "Informational"
    assert event["subscriptionId"] == SUB and event["tenantId"]
    stamp = datetime.strptime(event["eventTimestamp"][:26], "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=timezone.utc)
    assert before - 1 <= stamp.timestamp() <= time.time() + 1
    assert event["id"].startswith(f"{DEMO_ACCOUNT}/events/{event['eventDataId']}/ticks/")


async def test_reads_are_not_recorded_but_failures_and_denials_are(lapis):
    assert (await lapis.arm("GET", DEMO_ACCOUNT))[0] == 200
    missing = f"/subscriptions/{SUB}/resourceGroups/nowhere/providers/Microsoft.CognitiveServices/accounts/x"
    status, _ = await lapis.arm("PUT", missing, {"kind": "OpenAI", "sku": {"name": "S0"}, "location": "eastus"})
    assert status == 404
    assert (await lapis.arm("GET", DEMO_ACCOUNT, token="not-a-token"))[0] == 401
    assert (await lapis.chat("wrong-key"))[0] == 401
    found = await events(lapis)
    assert not [e for e in found if e["httpRequest"]["method"] == "GET" and e["status"]["value"] == "Succeeded"]
    [failed_write] = [e for e in found if e["resourceId"].lower().startswith(missing.lower().rsplit("/", 4)[0])]
    assert failed_write["status"]["value"] == "Failed" and failed_write["level"] == "Error"
    assert failed_write["subStatus"] == {"value": "NotFound", "localizedValue": "Not Found (HTTP Status Code: 404)"}
    assert '"ResourceGroupNotFound"' in failed_write["properties"]["statusMessage"]
    [bad_token] = [e for e in found if e["subStatus"]["value"] == "Unauthorized" and e["category"]["value"] ==
                   "Administrative"]
    assert bad_token["caller"] == "" and bad_token["httpRequest"]["method"] == "GET"
    assert '"InvalidAuthenticationToken"' in bad_token["properties"]["statusMessage"]
    [data_plane] = [e for e in found if e["category"]["value"] == "Security"]
    assert data_plane["operationName"] == {
        "value": "Microsoft.CognitiveServices/accounts/OpenAI/deployments/chat/completions/action",
        "localizedValue": "ChatCompletions_Create"}
    assert data_plane["resourceId"] == DEMO_ACCOUNT and data_plane["status"]["value"] == "Failed"
    assert data_plane["properties"]["statusCode"] == "Unauthorized"


async def test_filters_work_as_az_sends_them(lapis):
    await lapis.arm("PUT", f"/subscriptions/{SUB}/resourceGroups/other-rg", {"location": "westus"})
    await lapis.chat("wrong-key")
    everything = await events(lapis)
    assert [e["eventTimestamp"] for e in everything] == sorted((e["eventTimestamp"] for e in everything),
                                                               reverse=True)  # newest first
    failed = await events(lapis, " and status eq 'failed'")
    assert failed and {e["status"]["value"] for e in failed} == {"Failed"}
    in_group = await events(lapis, " and resourceGroupName eq 'OTHER-RG'")
    assert [e["authorization"]["action"] for e in in_group] == ["Microsoft.Resources/subscriptions/resourceGroups/write"]
    by_caller = await events(lapis, " and caller eq 'admin@lapis.local'")
    assert by_caller and {e["caller"] for e in by_caller} == {"admin@lapis.local"}
    under_account = await events(lapis, f" and resourceUri eq '{DEMO_ACCOUNT}'")
    assert under_account and all(e["resourceId"].startswith(DEMO_ACCOUNT) for e in under_account)
    selected = await events(lapis, **{"$select": "caller, status"})
    assert selected and set(selected[0]) == {"caller", "status"}
    later, latest = iso(time.time() + 3600), iso(time.time() + 7200)
    status, body = await lapis.arm("GET", VALUES, api_version="2015-04-01", params={
        "$filter": f"eventTimestamp ge '{later}' and eventTimestamp le '{latest}'"})
    assert status == 200 and body == {"value": []}


async def test_a_filter_without_a_start_is_refused(lapis):
    for params in ({}, {"$filter": "resourceGroupName eq 'x'"}, {"$filter": "eventTimestamp ge 'x' or 1"}):
        status, body = await lapis.arm("GET", VALUES, api_version="2015-04-01", params=params)
        assert status == 400 and body["code"] == "BadRequest", (params, body)
    status, body = await lapis.arm("GET", f"/subscriptions/00000000-0000-0000-0000-00000000dead/providers/"
                                          "Microsoft.Insights/eventtypes/management/values",
                                   api_version="2015-04-01", params={"$filter": f"eventTimestamp ge '{iso(0)}'"})
    assert status == 404 and body["error"]["code"] == "SubscriptionNotFound"


async def test_the_activity_log_outlives_the_process(tmp_path):
    first = await start_lapis(tmp_path / "home")
    await first.arm("POST", f"{DEMO_ACCOUNT}/regenerateKey", {"keyName": "Key1"})
    await first.client.close()  # a clean stop drains the queue into the table
    second = await start_lapis(tmp_path / "home")
    try:
        found = [e for e in await events(second) if e["authorization"]["action"].endswith("regenerateKey/action")]
        assert len(found) == 1 and found[0]["status"]["value"] == "Succeeded"
    finally:
        await second.client.close()


async def test_a_principal_refused_by_rbac_is_named_in_the_event(lapis):
    tenant = "2c6d6e8a-6c61-7069-7300-000000000000"
    async with lapis.client.post("/lapis/admin/servicePrincipals", json={"displayName": "audited-app"},
                                 headers={"Authorization": f"Bearer {lapis.services.admin_token}"}) as resp:
        sp = await resp.json()

    async def token(scope: str) -> str:
        async with lapis.client.post(f"/{tenant}/oauth2/v2.0/token", data={
                "grant_type": "client_credentials", "client_id": sp["appId"], "client_secret": sp["password"],
                "scope": scope}) as resp:
            return (await resp.json())["access_token"]

    status, body = await lapis.arm("GET", DEMO_ACCOUNT, token=await token("https://management.azure.com/.default"))
    assert status == 403 and body["error"]["code"] == "AuthorizationFailed"
    async with lapis.client.post("/accounts/lapis-demo/openai/deployments/gpt-4o-mini/chat/completions",
                                 params={"api-version": "2024-10-21"}, json={"messages": []}, headers={
                                     "Authorization": f"Bearer {await token('https://cognitiveservices.azure.com/.default')}"}) as resp:
        assert resp.status == 401
    found = await events(lapis)
    [arm] = [e for e in found if e["subStatus"]["value"] == "Forbidden"]
    assert arm["caller"] == sp["appId"] and arm["httpRequest"]["method"] == "GET"
    assert arm["authorization"] == {"action": "Microsoft.CognitiveServices/accounts/read", "scope": DEMO_ACCOUNT}
    assert arm["claims"]["http://schemas.microsoft.com/identity/claims/objectidentifier"]
    assert '"AuthorizationFailed"' in arm["properties"]["statusMessage"]
    [data_plane] = [e for e in found if e["category"]["value"] == "Security"]
    oid = arm["claims"]["http://schemas.microsoft.com/identity/claims/objectidentifier"]
    assert data_plane["caller"] == oid and data_plane["properties"]["errorCode"] == "PermissionDenied"
