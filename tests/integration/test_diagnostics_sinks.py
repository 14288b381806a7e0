"""Each diagnostic-settings destination receives the right records, for real: the workspace
files (read back, and through the query API), the storage archive, a webhook, Redis
streams (the Event Hubs stand-in), an OTLP collector. A sink that goes down does not
slow the data plane, loses at most what does not fit in its queue (counted), and
catches up when it returns. Each account's records reach only its own region's sinks."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid

import pytest
import redis.asyncio as aioredis

from support.diagnostics_harness import DEMO_ACCOUNT, SUB, start_lapis
from support.log_receivers import Receiver, until
from support.broken_backend import BrokenBackend

RG = f"/subscriptions/{SUB}/resourceGroups/lapis-demo/providers"
ALL_LOGS = [{"categoryGroup": "allLogs", "enabled": True}]


@pytest.fixture()
async def lapis(tmp_path):
    server = await start_lapis(tmp_path / "home", LAPIS_DIAGNOSTICS_QUEUE="6")
    yield server
    await server.client.close()


async def rows(lapis, workspace: str, text: str) -> list[dict]:
    status, body = await lapis.arm("GET", f"{workspace}/api/query", api_version="2017-01-01-preview",
                                   params={"query": text, "timespan": "PT1H"})
    assert status == 200, body
    table = body["tables"][0]
    names = [c["name"] for c in table["columns"]]
    return [dict(zip(names, r)) for r in table["rows"]]


async def test_workspace_files_hold_request_audit_and_metric_records(lapis):
    workspace = f"{RG}/Microsoft.OperationalInsights/workspaces/ws1"
    status, body = await lapis.put_setting(DEMO_ACCOUNT, "to-workspace", {
        "workspaceId": workspace, "logs": ALL_LOGS, "metrics": [{"category": "AllMetrics", "enabled": True}]})
    assert status == 200 and body["properties"]["workspaceId"] == workspace
    key = await lapis.key(DEMO_ACCOUNT)
    ok, ok_id = await lapis.chat(key)
    denied, denied_id = await lapis.chat("wrong-key")
    missing, _ = await lapis.chat(key, deployment="no-such-deployment")
    assert (ok, denied, missing) == (200, 401, 404)
    query = "AzureDiagnostics | where Category == 'RequestResponse' | order by TimeGenerated asc"
    for _ in range(1000):
        found = await rows(lapis, workspace, query)
        if len(found) == 3:
            break
        await asyncio.sleep(0.02)
    assert [r["ResultSignature"] for r in found] == ["200", "401", "404"]
    first = found[0]
    assert first["CorrelationId"] == ok_id and first["OperationName"] == "ChatCompletions_Create"
    assert first["keyName_s"] == "key1" and first["modelDeploymentName_s"] == "gpt-4o-mini"
    assert first["promptTokens_d"] > 0 and first["completionTokens_d"] > 0 and first["DurationMs"] >= 0
    assert first["apiVersion_s"] == "2024-10-21" and first["location_s"] == "eastus"
    assert first["CallerIPAddress"] == "127.0.0.***"
    audit = await rows(lapis, workspace, "AzureDiagnostics | where Category == 'Audit' | order by TimeGenerated asc")
    # management writes on the account (this setting's own PUT, listKeys) and the denied call
    assert [(r["OperationName"], r["ResultSignature"]) for r in audit] == [
        ("Microsoft.Insights/diagnosticSettings/write", "200"), ("ListKey", "200"),
        ("ChatCompletions_Create", "401")]
    assert audit[1]["caller_s"] == "admin@lapis.local" and audit[2]["CorrelationId"] == denied_id
    # the file sink, read back from disk: one JSON line per row, and no prompt text anywhere
    folder = lapis.home / "workspaces" / SUB / "lapis-demo" / "ws1"
    text = (folder / "AzureDiagnostics.jsonl").read_text()
    assert len(text.splitlines()) == 6 and "secret prompt words" not in text
    assert json.loads(text.splitlines()[0])["Type"] == "AzureDiagnostics"
    # AllMetrics: the minute's aggregates, handed over when the minute is flushed
    assert lapis.services.diagnostics.flush_metrics(None) > 0
    metric_query = "AzureMetrics | where MetricName == 'AzureOpenAIRequests'"
    for _ in range(1000):
        if await rows(lapis, workspace, metric_query):
            break
        await asyncio.sleep(0.02)
    [requests] = await rows(lapis, workspace, metric_query)
    assert requests["Total"] == 3.0 and requests["TimeGrain"] == "PT1M"


async def test_storage_archive_uses_azures_blob_layout(lapis):
    storage = f"{RG}/Microsoft.Storage/storageAccounts/archive1"
    assert (await lapis.put_setting(DEMO_ACCOUNT, "archive", {
        "storageAccountId": storage, "logs": [{"category": "RequestResponse", "enabled": True}]}))[0] == 200
    _, request_id = await lapis.chat(await lapis.key(DEMO_ACCOUNT))
    root = lapis.home / "storage" / "archive1" / "insights-logs-requestresponse"
    await until(lambda: [b for b in root.rglob("PT1H.json") if b.read_text().endswith("\n")])
    [blob] = list(root.rglob("PT1H.json"))
    relative = blob.relative_to(root).as_posix()
    assert relative.startswith(f"resourceId=/SUBSCRIPTIONS/{SUB.upper()}/RESOURCEGROUPS/LAPIS-DEMO/PROVIDERS/"
                               "MICROSOFT.COGNITIVESERVICES/ACCOUNTS/LAPIS-DEMO/y=")
    assert relative.endswith("/m=00/PT1H.json")
    [record] = [json.loads(line) for line in blob.read_text().splitlines()]
    assert record["correlationId"] == request_id and record["category"] == "RequestResponse"


async def test_event_hubs_destination_writes_redis_streams_per_category(lapis):
    namespace = f"ns{uuid.uuid4().hex[:10]}"
    rule = f"{RG}/Microsoft.EventHub/namespaces/{namespace}/authorizationRules/RootManageSharedAccessKey"
    assert (await lapis.put_setting(DEMO_ACCOUNT, "to-hub", {
        "eventHubAuthorizationRuleId": rule, "logs": ALL_LOGS}))[0] == 200
    _, ok_id = await lapis.chat(await lapis.key(DEMO_ACCOUNT))
    _, denied_id = await lapis.chat("wrong-key")
    broker = aioredis.from_url("redis://127.0.0.1:6379/0")
    streams = {c: f"eventhubs/{namespace}/insights-logs-{c}" for c in ("requestresponse", "audit")}
    try:
        async def records(category: str) -> list[dict]:
            entries = await broker.xrange(streams[category])
            return [r for _, fields in entries for r in json.loads(fields[b"body"])["records"]]

        for _ in range(1000):
            if len(await records("requestresponse")) == 2 and len(await records("audit")) == 3:
                break
            await asyncio.sleep(0.02)
        request_response = await records("requestresponse")
        assert [r["correlationId"] for r in request_response] == [ok_id, denied_id]
        assert {r["category"] for r in request_response} == {"RequestResponse"}
        audit = await records("audit")  # the setting's PUT, listKeys, then the denied call
        assert [r["operationName"] for r in audit] == ["Microsoft.Insights/diagnosticSettings/write", "ListKey",
                                                       "ChatCompletions_Create"]
        assert (audit[2]["correlationId"], audit[2]["resultSignature"]) == (denied_id, "401")
    finally:
        await broker.delete(*streams.values())
        await broker.aclose()


async def test_otlp_collector_receives_log_records(lapis):
    collector = await Receiver("/v1/logs").start()
    try:
        assert (await lapis.put_setting(DEMO_ACCOUNT, "to-otel", {
            "otlpEndpoint": collector.base, "logs": [{"category": "RequestResponse", "enabled": True}]}))[0] == 200
        _, request_id = await lapis.chat(await lapis.key(DEMO_ACCOUNT))
        await until(lambda: collector.log_records())
        [(resource, log)] = collector.log_records()
        assert resource["cloud.region"] == {"stringValue": "eastus"}
        assert resource["cloud.resource_id"]["stringValue"].endswith("/ACCOUNTS/LAPIS-DEMO")
        attributes = {a["key"]: a["value"] for a in log["attributes"]}
        assert attributes["azure.correlation_id"] == {"stringValue": request_id}
        assert attributes["http.response.status_code"] == {"intValue": "200"} and log["severityText"] == "INFO"
    finally:
        await collector.stop()


async def test_a_webhook_outage_costs_only_what_overflows_the_queue(lapis, caplog):
    caplog.set_level(logging.WARNING, logger="lapis.diagnostics")
    hook = await Receiver().start()
    assert (await lapis.put_setting(DEMO_ACCOUNT, "to-hook", {
        "webhookUrl": hook.url, "logs": [{"category": "RequestResponse", "enabled": True}]}))[0] == 200
    key = await lapis.key(DEMO_ACCOUNT)
    _, first = await lapis.chat(key)
    await until(lambda: [r["correlationId"] for r in hook.records()] == [first])
    [name] = [n for n in lapis.services.diagnostics.counters() if n.endswith("/to-hook/webhook")]

    def counters() -> dict:
        return lapis.services.diagnostics.counters()[name]

    await hook.stop()
    during = [await lapis.chat(key) for _ in range(10)]
    assert [status for status, _ in during] == [200] * 10  # the data plane never waits on a sink
    await until(lambda: counters()["failed"] > 0)
    assert counters()["queued"] == 6 and counters()["dropped"] == 4  # a queue of 6 holds; 4 did not fit
    assert "is down" in caplog.text and "queue full" in caplog.text
    await hook.start()  # back: the queue drains at the next retry, then new records flow again
    await until(lambda: counters()["queued"] == 0)
    _, after = await lapis.chat(key)
    await until(lambda: after in [r["correlationId"] for r in hook.records()])
    arrived = [r["correlationId"] for r in hook.records()]
    held = [request_id for _, request_id in during[:6]]
    assert arrived == [first, *held, after]  # what the queue held arrives first, in order
    assert counters() == {"queued": 0, "delivered": 8, "dropped": 4, "failed": counters()["failed"]}
    assert "is back; 4 records were dropped" in caplog.text
    await hook.stop()


async def test_records_stay_in_their_accounts_region(lapis):
    west_id = await lapis.account("rg-west", "acct-west", "westus")
    east_hook, west_hook = await Receiver("/east").start(), await Receiver("/west").start()
    try:
        for account_id, hook in ((DEMO_ACCOUNT, east_hook), (west_id, west_hook)):
            status, body = await lapis.put_setting(account_id, "regional", {
                "webhookUrl": hook.url, "logs": ALL_LOGS})
            assert status == 200, body
        east_key, west_key = await lapis.key(DEMO_ACCOUNT), await lapis.key(west_id)
        east_ids = [(await lapis.chat(east_key))[1] for _ in range(2)]
        west_ids = [(await lapis.chat(west_key, subdomain="acct-west"))[1] for _ in range(3)]
        def calls(hook: Receiver) -> list[str]:
            return [r["correlationId"] for r in hook.records() if r["category"] == "RequestResponse"]

        await until(lambda: len(calls(east_hook)) == 2 and len(calls(west_hook)) == 3)
        assert calls(east_hook) == east_ids and calls(west_hook) == west_ids
        # every record, the Audit ones (listKeys, the settings' PUTs) included, stayed home
        assert {(r["location"], r["resourceId"].split("/")[-1]) for r in east_hook.records()} == \
               {("eastus", "LAPIS-DEMO")}
        assert {(r["location"], r["resourceId"].split("/")[-1]) for r in west_hook.records()} == \
               {("westus", "ACCT-WEST")}
        # one destination never serves two regions
        status, body = await lapis.put_setting(west_id, "sneaky", {"webhookUrl": east_hook.url, "logs": ALL_LOGS})
        assert status == 400 and body["code"] == "BadRequest" and "region 'eastus'" in body["message"]
    finally:
        await east_hook.stop()
        await west_hook.stop()


async def test_service_failures_go_to_trace_and_only_enabled_categories_are_sent(lapis):
    hook = await Receiver().start()
    try:
        assert (await lapis.put_setting(DEMO_ACCOUNT, "traces", {
            "webhookUrl": hook.url, "logs": [{"category": "Trace", "enabled": True},
                                             {"category": "RequestResponse", "enabled": False}]}))[0] == 200
        key = await lapis.key(DEMO_ACCOUNT)
        lapis.services.backend = BrokenBackend()  # before the first call: the serving plan picks it up
        status, failed_id = await lapis.chat(key)
        assert status == 500
        await until(lambda: hook.records())
        [trace] = hook.records()  # RequestResponse is off: the same call leaves only its Trace record
        [counts] = [c for n, c in lapis.services.diagnostics.counters().items() if n.endswith("/traces/webhook")]
        assert counts["delivered"] == 1 and counts["queued"] == 0
        assert (trace["category"], trace["correlationId"], trace["resultSignature"]) == ("Trace", failed_id, "500")
        assert trace["level"] == "Error" and trace["properties"]["errorCode"]
    finally:
        await hook.stop()
