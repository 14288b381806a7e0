"""Diagnostic settings bodies: what is accepted, echoed, and refused with Azure Monitor's flat errors."""

from __future__ import annotations

import pytest

from lapis.diagnostics.settings import DiagnosticSetting, check_residency, read_properties
from lapis.errors import ApiError

SUB = "2c6d6e8a-6c61-7069-7300-000000000001"
WORKSPACE = f"/subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.OperationalInsights/workspaces/ws1"
RULE = f"/subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.EventHub/namespaces/ns1/authorizationRules/r1"


def refused(body: dict) -> dict:
    with pytest.raises(ApiError) as caught:
        read_properties(body)
    assert caught.value.status == 400
    return caught.value.json()


def test_categories_are_canonical_and_defaults_filled():
    props = read_properties({"properties": {"workspaceId": WORKSPACE,
                                            "logs": [{"category": "requestresponse", "enabled": True},
                                                     {"categoryGroup": "AUDIT", "enabled": False}],
                                            "metrics": [{"category": "allmetrics", "enabled": True}]}})
    assert props["logs"][0] == {"category": "RequestResponse", "categoryGroup": None, "enabled": True,
                                "retentionPolicy": {"enabled": False, "days": 0}}
    assert props["logs"][1]["categoryGroup"] == "audit" and props["logs"][1]["category"] is None
    assert props["metrics"][0]["category"] == "AllMetrics"
    setting = DiagnosticSetting("a1", "d", "/x", "eastus", props)
    assert setting.log_categories() == frozenset({"RequestResponse"}) and setting.metrics_enabled()


def test_all_logs_group_expands_to_the_three_categories():
    props = read_properties({"properties": {"webhookUrl": "http://127.0.0.1:9/logs",
                                            "logs": [{"categoryGroup": "allLogs", "enabled": True}]}})
    assert DiagnosticSetting("a", "d", "/x", "eastus", props).log_categories() == {"Audit", "RequestResponse", "Trace"}


def test_unknown_log_category_is_azures_error():
    body = refused({"properties": {"workspaceId": WORKSPACE, "logs": [{"category": "WorkflowRuntime",
                                                                       "enabled": True}]}})
    assert body == {"code": "BadRequest", "message": "Category 'WorkflowRuntime' is not supported."}


def test_unknown_metric_category_and_group():
    body = refused({"properties": {"workspaceId": WORKSPACE, "metrics": [{"category": "Gateway Requests",
                                                                          "enabled": True}]}})
    assert body["message"] == "Metric category 'Gateway Requests' is not supported, supported categories are: " \
                              "'AllMetrics'"
    body = refused({"properties": {"workspaceId": WORKSPACE, "logs": [{"categoryGroup": "x", "enabled": True}]}})
    assert body["message"].startswith("CategoryGroup: 'x' is not supported, supported ones are: 'allLogs','audit'")


def test_enabled_is_required_and_a_destination_too():
    assert "'enabled'" in refused({"properties": {"workspaceId": WORKSPACE, "logs": [{"category": "Audit"}]}})[
        "message"]
    assert "at least one destination" in refused({"properties": {"logs": []}})["message"]
    assert refused({"nope": 1})["code"] == "BadRequest"


def test_destinations_lapis_cannot_serve_are_refused():
    assert "marketplacePartnerId" in refused({"properties": {"marketplacePartnerId": "/subscriptions/x"}})["message"]
    assert "not a valid Log Analytics workspace" in refused({"properties": {"workspaceId": "/subscriptions/x"}})[
        "message"]
    assert "http" in refused({"properties": {"webhookUrl": "ftp://host/x"}})["message"]
    # a name that would climb out of the workspaces folder is not a workspace id
    dotted = f"/subscriptions/{SUB}/resourceGroups/../providers/Microsoft.OperationalInsights/workspaces/ws"
    assert refused({"properties": {"workspaceId": dotted}})["code"] == "BadRequest"


def test_destinations_and_their_keys():
    props = read_properties({"properties": {"workspaceId": WORKSPACE, "eventHubAuthorizationRuleId": RULE,
                                            "otlpEndpoint": "http://127.0.0.1:4318/"}})
    found = {d.kind: d for d in DiagnosticSetting("a", "d", "/x", "eastus", props).destinations()}
    assert found["workspace"].path == (SUB, "rg1", "ws1")
    assert found["eventhub"].path == ("ns1", "")  # no eventHubName: one hub per category
    assert found["otlp"].url == "http://127.0.0.1:4318"


def test_one_destination_never_serves_two_regions():
    props = read_properties({"properties": {"webhookUrl": "http://127.0.0.1:9/east"}})
    east = DiagnosticSetting("a1", "d", "/a1", "eastus", props)
    west = DiagnosticSetting("a2", "d", "/a2", "westus", dict(props))
    with pytest.raises(ApiError) as caught:
        check_residency(west, [east])
    assert caught.value.status == 400 and "region 'eastus'" in caught.value.json()["message"]
    check_residency(DiagnosticSetting("a3", "d", "/a3", "eastus", dict(props)), [east])  # same region: fine
