"""`lapis monitor diagnostic-settings | log-analytics | activity-log` against a real server, as a user runs them."""

from __future__ import annotations

import json
import time

import pytest
import requests

from support.cli import Cli
from support.server import start_server

LOGS = '[{"category": "RequestResponse", "enabled": true}, {"category": "Audit", "enabled": true}]'


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    home = tmp_path_factory.mktemp("diag-cli")
    server = start_server(home / "home", demo=True)
    yield server, Cli(home / "home", home / "elsewhere")
    server.stop()


def test_settings_round_trip_as_az_prints_them(served):
    _, cli = served
    made = cli.json("monitor", "diagnostic-settings", "create", "--name", "to-ws", "--resource", "lapis-demo",
                    "-g", "lapis-demo", "--workspace", "ws-cli", "--logs", LOGS,
                    "--metrics", '[{"category": "AllMetrics", "enabled": true}]')
    assert made["name"] == "to-ws" and made["type"] == "Microsoft.Insights/diagnosticSettings"
    assert made["workspaceId"].endswith("/resourceGroups/lapis-demo/providers/Microsoft.OperationalInsights/"
                                        "workspaces/ws-cli")
    assert [log["category"] for log in made["logs"]] == ["RequestResponse", "Audit"]
    assert made["resourceGroup"] == "lapis-demo" and "properties" not in made
    listed = cli.json("monitor", "diagnostic-settings", "list", "--resource", made["id"].split("/providers/micro")[0])
    assert [s["name"] for s in listed] == ["to-ws"]
    shown = cli.json("monitor", "diagnostic-settings", "show", "-n", "TO-WS", "--resource", "lapis-demo",
                     "-g", "lapis-demo")
    assert shown["metrics"][0]["category"] == "AllMetrics"
    message = cli.fails("ResourceNotFound", "monitor", "diagnostic-settings", "show", "-n", "nope", "--resource",
                        "lapis-demo", "-g", "lapis-demo")
    assert message == "The diagnostic setting 'nope' doesn't exist."
    message = cli.fails("BadRequest", "monitor", "diagnostic-settings", "create", "-n", "bad", "--resource",
                        "lapis-demo", "-g", "lapis-demo", "--workspace", "ws-cli", "--logs",
                        '[{"category": "WorkflowRuntime", "enabled": true}]')
    assert message == "Category 'WorkflowRuntime' is not supported."


def test_log_analytics_query_finds_the_calls(served):
    server, cli = served
    cli("monitor", "diagnostic-settings", "create", "--name", "to-ws", "--resource", "lapis-demo", "-g",
        "lapis-demo", "--workspace", "ws-cli", "--logs", LOGS)
    env = server.demo_env()
    answer = requests.post(f"{env['AZURE_OPENAI_ENDPOINT']}/openai/deployments/gpt-4o-mini/chat/completions",
                           params={"api-version": "2024-10-21"}, headers={"api-key": env["AZURE_OPENAI_KEY"]},
                           json={"messages": [{"role": "user", "content": "hello"}]}, timeout=30)
    request_id = answer.headers["apim-request-id"]
    args = ("monitor", "log-analytics", "query", "--workspace", "ws-cli", "-g", "lapis-demo", "--table",
            "AzureDiagnostics", "--where", "OperationName == 'ChatCompletions_Create'", "--where",
            f"CorrelationId == '{request_id}'", "--timespan", "PT1H")
    deadline = time.monotonic() + 20
    rows = cli.json(*args)
    while not rows and time.monotonic() < deadline:
        time.sleep(0.1)
        rows = cli.json(*args)
    [row] = rows
    assert row["TableName"] == "PrimaryResult" and row["ResultSignature"] == "200"
    assert row["modelDeploymentName_s"] == "gpt-4o-mini" and row["Category"] == "RequestResponse"
    counted = cli.json("monitor", "log-analytics", "query", "-w", "ws-cli", "-g", "lapis-demo",
                       "--analytics-query", "AzureDiagnostics | where Category == 'Audit' | count")
    assert counted[0]["Count"] >= 1  # at least this setting's own PUT
    done = cli("monitor", "log-analytics", "query", "-w", "ws-cli", "-g", "lapis-demo", "-q",
               "AzureDiagnostics | summarize count()", expect=1)
    assert "BadArgumentError" in done.stderr and "Traceback" not in done.stderr


def test_activity_log_list_filters_like_az(served):
    _, cli = served
    cli("group", "create", "--name", "audited-rg", "--location", "westus")
    cli("monitor", "diagnostic-settings", "delete", "--name", "gone", "--resource", "lapis-demo", "-g", "lapis-demo")
    in_group = cli.json("monitor", "activity-log", "list", "--resource-group", "audited-rg", "--offset", "1h")
    assert [e["operationName"]["value"] for e in in_group] == ["Microsoft.Resources/subscriptions/resourceGroups/write"]
    assert in_group[0]["caller"] == "admin@lapis.local" and in_group[0]["status"]["value"] == "Succeeded"
    cli("cognitiveservices", "account", "show", "--name", "missing", "--resource-group", "audited-rg", expect=1)
    cli("group", "delete", "--name", "no-such-rg", "--yes", expect=1)
    failed = cli.json("monitor", "activity-log", "list", "--status", "Failed", "--offset", "1h")
    assert failed and {e["status"]["value"] for e in failed} == {"Failed"}
    assert "Microsoft.Resources/subscriptions/resourceGroups/delete" in [e["operationName"]["value"] for e in failed]
    assert not [e for e in failed if e["httpRequest"]["method"] == "GET"]  # a failed read is not audited
    mine = cli.json("monitor", "activity-log", "list", "--caller", "admin@lapis.local", "--max-events", "2")
    assert len(mine) == 2 and mine[0]["eventTimestamp"] >= mine[1]["eventTimestamp"]
    table = cli("monitor", "activity-log", "list", "--resource-group", "audited-rg", "-o", "table").stdout
    assert "resourceGroups/write" in table and "Succeeded" in table
    assert json.loads(cli("monitor", "activity-log", "list", "--start-time", "2001-01-01T00:00:00Z").stdout) == []
