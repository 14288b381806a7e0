"""Records as Azure writes them, the workspace's query language, and the Activity Log's $filter."""

from __future__ import annotations

import json
import random
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path

import pytest

from lapis.audit.filter import parse_filter, parse_time
from lapis.diagnostics import query
from lapis.diagnostics.files import archive_path
from lapis.diagnostics.metrics import MinuteMetrics
from lapis.diagnostics.otlp import export_body
from lapis.diagnostics.shaping import iso, mask_ip, request_log, ticks, workspace_row
from lapis.errors import ApiError
from lapis.observe.record import RequestRecord

ARM_ID = "/subscriptions/s1/resourceGroups/rg1/providers/Microsoft.CognitiveServices/accounts/acct"


def record(**changes) -> RequestRecord:
    base = dict(time=1_716_553_382.435, request_id="9d3a6e98-fc11-48d0-82cf-4de065c1a1f8", operation="chat",
                operation_name="ChatCompletions_Create", api_version="2024-10-21", status=200, streaming=False,
                duration_ms=1021.4, ttfb_ms=250.25, caller="key1", caller_ip="81.2.69.142", account_id="a1",
                account_name="acct", account_arm_id=ARM_ID, location="eastus", deployment="chat",
                model="gpt-4o-mini", model_version="2024-07-18", sku="Standard", prompt_tokens=12,
                completion_tokens=30)
    base.update(changes)
    return RequestRecord(**base)


def test_request_response_record_has_azures_fields_and_lapiss_additions():
    log = request_log(record())
    assert log["time"] == "2024-05-24T12:23:02.4350000Z"
    assert log["resourceId"] == ARM_ID.upper() and log["category"] == "RequestResponse"
    assert log["operationName"] == "ChatCompletions_Create" and log["durationMs"] == 1021
    assert log["callerIpAddress"] == "81.2.69.***" and log["resultSignature"] == "200"
    assert log["correlationId"] == "9d3a6e98-fc11-48d0-82cf-4de065c1a1f8"
    assert log["location"] == log["Tenant"] == "eastus" and log["event"] == "ShoeboxCallResult"
    props = log["properties"]
    assert props["apiName"] == "Azure OpenAI API version 2024-10-21" and props["streamType"] == "Non-Streaming"
    assert props["requestTime"] == ticks(1_716_553_382.435) and props["requestTime"] > 638_500_000_000_000_000
    assert (props["modelDeploymentName"], props["modelName"], props["modelVersion"]) == \
           ("chat", "gpt-4o-mini", "2024-07-18")
    assert (props["keyName"], props["objectId"]) == ("key1", "")
    assert (props["promptTokens"], props["completionTokens"], props["timeToFirstByteMs"]) == (12, 30, 250.25)


def test_principals_go_in_object_id_and_failures_carry_the_code():
    log = request_log(record(caller="0f5a-oid", status=503, error_code="ServiceUnavailable"), "Trace")
    assert log["properties"]["objectId"] == "0f5a-oid" and log["properties"]["keyName"] == ""
    assert log["level"] == "Error" and log["properties"]["errorCode"] == "ServiceUnavailable"


def test_addresses_are_masked_like_azure():
    assert mask_ip("10.1.2.3") == "10.1.2.***"
    assert mask_ip("2001:db8::1") == "2001:db8::****"
    assert mask_ip("") == ""


def test_workspace_rows_use_the_table_columns_and_typed_extras():
    table, row = workspace_row(request_log(record()))
    assert table == "AzureDiagnostics"
    assert row["OperationName"] == "ChatCompletions_Create" and row["DurationMs"] == 1021
    assert row["ResourceGroup"] == "RG1" and row["Resource"] == "ACCT"
    assert row["ResourceProvider"] == "MICROSOFT.COGNITIVESERVICES"
    assert json.loads(row["properties_s"])["modelName"] == "gpt-4o-mini"
    assert row["modelDeploymentName_s"] == "chat" and row["promptTokens_d"] == 12.0


def test_iso_rounds_and_formats_as_datetime_does():
    def by_datetime(epoch: float) -> str:
        moment = datetime.fromtimestamp(epoch, timezone.utc)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}0Z"

    picks = random.Random(6)
    stamps = [picks.uniform(0, 4e9) for _ in range(20_000)]
    stamps += [s + 5e-7 for s in stamps[:5000]]  # halfway between two microseconds
    stamps += [0.0, 59.9999996, 1_716_553_382.9999994, 1_716_553_382.9999996, 1.5e-6, 2.5e-6]
    assert [iso(s) for s in stamps] == [by_datetime(s) for s in stamps]
    assert iso(1_716_553_382.9999996) == "2024-05-24T12:23:03.0000000Z"  # rounds into the next second


class Tier(str, Enum):
    STANDARD = "Standard"


def test_workspace_columns_are_typed_by_value_subclasses_included():
    log = request_log(record())
    log["properties"].update(sku=Tier.STANDARD, flagged=True, count=3, ratio=0.5, nothing=None, listed=[1])
    _, row = workspace_row(log)
    assert row["sku_s"] is Tier.STANDARD and row["flagged_b"] is True
    assert row["count_d"] == 3.0 and isinstance(row["count_d"], float) and row["ratio_d"] == 0.5
    assert not [c for c in row if c.startswith(("nothing_", "listed_", "flagged_d"))]


def test_archive_blob_is_the_hour_of_the_record():
    log = request_log(record())
    path = archive_path(Path("/x"), log).as_posix()
    assert path == (f"/x/insights-logs-requestresponse/resourceId={ARM_ID.upper()}/y=2024/m=05/d=24/h=12/m=00/"
                    "PT1H.json")


def test_metrics_aggregate_per_minute():
    metrics = MinuteMetrics()
    metrics.add(record(time=120.5, prompt_tokens=10, completion_tokens=5))
    metrics.add(record(time=150.0, prompt_tokens=20, completion_tokens=1))
    metrics.add(record(time=185.0))
    assert metrics.take(before=179.0) == []  # the minute starting at 120 is not over yet
    [(bucket, records)] = metrics.take(before=180.0)
    found = {r["metricName"]: r for r in records}
    assert found["AzureOpenAIRequests"]["count"] == 2 and found["AzureOpenAIRequests"]["total"] == 2.0
    assert found["ProcessedPromptTokens"] | {"total": 30.0, "minimum": 10.0, "maximum": 20.0} == \
           found["ProcessedPromptTokens"]
    assert found["TokenTransaction"]["total"] == 36.0 and found["GeneratedTokens"]["average"] == 3.0
    assert found["AzureOpenAIRequests"]["time"] == iso(120.0) and found["AzureOpenAIRequests"]["timeGrain"] == "PT1M"
    assert len(metrics.take()) == 1  # the later minute, on demand


ROWS = [workspace_row(request_log(record(time=1000.0 + i, status=s, duration_ms=d, request_id=f"r{i}")))[1]
        for i, (s, d) in enumerate([(200, 50), (200, 500), (401, 5), (200, 900)])]


def rows_of(table: str):
    return ROWS if table == "AzureDiagnostics" else []


def result(text: str, timespan: str | None = None, now: float = 1010.0):
    found = query.run(text, rows_of, timespan, now)["tables"][0]
    names = [c["name"] for c in found["columns"]]
    return [dict(zip(names, row)) for row in found["rows"]], found["columns"]


def test_where_project_order_take():
    rows, columns = result("AzureDiagnostics | where ResultSignature == '200' and DurationMs > 100 "
                           "| project CorrelationId, DurationMs | order by DurationMs desc | take 1")
    assert rows == [{"CorrelationId": "r3", "DurationMs": 900}]
    assert columns == [{"name": "CorrelationId", "type": "string"}, {"name": "DurationMs", "type": "long"}]


def test_time_filters_and_count():
    assert result("AzureDiagnostics | where TimeGenerated >= ago(8s) | count")[0] == [{"Count": 2}]
    assert result("AzureDiagnostics | count", timespan="PT9S")[0] == [{"Count": 3}]
    rows, _ = result("AzureDiagnostics | where OperationName =~ 'chatcompletions_create' "
                     "and CorrelationId !contains 'r1' | project CorrelationId")
    assert [r["CorrelationId"] for r in rows] == ["r0", "r2", "r3"]


def test_query_errors_are_log_analytics_errors():
    for text, inner in (("Nope | take 1", "SemanticError"), ("AzureDiagnostics | where Bogus == 1", "SemanticError"),
                        ("AzureDiagnostics | summarize count()", "SyntaxError"),
                        ("AzureDiagnostics | where DurationMs > 5ms", "SyntaxError")):
        with pytest.raises(ApiError) as caught:
            query.run(text, rows_of, None, 1010.0)
        body = caught.value.json()
        assert caught.value.status == 400 and body["error"]["code"] == "BadArgumentError", text
        assert body["error"]["innererror"]["code"] == inner, text


def test_activity_filter_takes_what_az_sends():
    found = parse_filter("eventTimestamp ge 2024-05-01T00:00:00.123456789 and eventTimestamp le "
                         "2024-05-02T00:00:00Z and resourceGroupName eq 'RG1' and status eq 'Failed'", now=0)
    assert (found.start, found.end) == ("2024-05-01T00:00:00.1234560Z", "2024-05-02T00:00:00.0000000Z")
    assert (found.resource_group, found.status, found.caller) == ("RG1", "Failed", None)
    assert parse_filter("eventTimestamp ge '2024-05-01T00:00:00+02:00'", now=parse_time("2024-06-01T00:00:00Z")) \
        .start == "2024-04-30T22:00:00.0000000Z"


def test_activity_filter_needs_a_start():
    for text in (None, "resourceGroupName eq 'x'", "eventTimestamp ge 'tomorrow'", "foo bar"):
        with pytest.raises(ApiError) as caught:
            parse_filter(text, now=0)
        assert caught.value.status == 400 and caught.value.json()["code"] == "BadRequest"


def test_otlp_body_groups_by_account_and_encodes_64_bit_numbers_as_strings():
    body = export_body([request_log(record()), request_log(record(status=429, request_id="x"))])
    [resource_logs] = body["resourceLogs"]
    attrs = {a["key"]: a["value"] for a in resource_logs["resource"]["attributes"]}
    assert attrs["cloud.region"] == {"stringValue": "eastus"} and attrs["service.name"] == {"stringValue": "lapis"}
    first, second = resource_logs["scopeLogs"][0]["logRecords"]
    assert first["timeUnixNano"] == "1716553382435000000" and first["severityText"] == "INFO"
    assert second["severityNumber"] == 13  # a 4xx is a warning
    body_values = {v["key"]: v["value"] for v in first["body"]["kvlistValue"]["values"]}
    assert body_values["durationMs"] == {"intValue": "1021"}
