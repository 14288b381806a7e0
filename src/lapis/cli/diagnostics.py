"""`lapis monitor diagnostic-settings | log-analytics | activity-log`, as `az monitor`.

    lapis monitor diagnostic-settings create --name N --resource R [-g G] [--logs JSON] [--metrics JSON]
        [--workspace W] [--storage-account S] [--event-hub-rule RULE [--event-hub H]]
        [--webhook-url URL] [--otlp-endpoint URL]                    (the last two are Lapis's own)
    lapis monitor diagnostic-settings list|show|delete --resource R [-g G] [--name N]
    lapis monitor log-analytics query --workspace W [-g G] (--analytics-query KQL | --table T [--where COND]...)
        [--timespan PT1H]
    lapis monitor activity-log list [--resource-group G | --resource-id ID | --correlation-id C | --namespace NS]
        [--start-time T] [--end-time T] [--offset 6h] [--caller C] [--status Failed] [--max-events 50]

--resource, --workspace and --storage-account take a name (in --resource-group,
as az resolves them; a resource name means a Cognitive Services account) or a
full id. --event-hub-rule takes the rule's id, or a namespace name (Lapis's
shorthand for its RootManageSharedAccessKey rule). Settings print flattened,
as az prints them (properties lifted to the top level). Query results print
as az's: one object per row with the column names, plus TableName.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Any, Optional
from urllib.parse import urlencode

import typer

from lapis.cli.client import CliError, Client, path
from lapis.cli.common import Output, Query, Subscription, client, new_typer, show, subscription_id
from lapis.cli.output import OutputFormat, field, with_resource_group

SETTINGS_API = "2021-05-01-preview"
QUERY_API = "2017-01-01-preview"
ACTIVITY_API = "2015-04-01"
ACCOUNT_TYPE = "Microsoft.CognitiveServices/accounts"

diagnostic_settings_app = new_typer("Manage service diagnostic settings.")
log_analytics_app = new_typer("Query Log Analytics workspaces (Lapis's file-backed stand-in).")
activity_log_app = new_typer("Manage activity logs.")

Resource = Annotated[str, typer.Option("--resource", help="Name or ID of the target resource.")]
Group = Annotated[Optional[str], typer.Option("--resource-group", "-g", help="Name of the resource group.")]
ResourceType = Annotated[str, typer.Option("--resource-type", help="Target resource type, when --resource is a name.")]
SettingName = Annotated[str, typer.Option("--name", "-n", help="The name of the diagnostic setting.")]
SETTING_COLUMNS = [("Name", field("name")), ("ResourceGroup", field("resourceGroup")),
                   ("WorkspaceId", field("workspaceId"))]
EVENT_COLUMNS = [("EventTimestamp", field("eventTimestamp")), ("Caller", field("caller")),
                 ("OperationName", field("operationName.value")), ("Status", field("status.value")),
                 ("ResourceId", field("resourceId"))]


def call(api: Client, method: str, url_path: str, body: Any = None, api_version: str | None = None) -> Any:
    """Client.request, reading Azure Monitor's flat error body ({"code", "message"}) too."""
    try:
        return api.request(method, url_path, body, api_version=api_version)
    except CliError as error:
        _, _, text = error.message.partition("': ")
        try:
            flat = json.loads(text) if text else None
        except ValueError:
            flat = None
        if isinstance(flat, dict) and flat.get("code") and flat.get("message"):
            raise CliError(str(flat["message"]), str(flat["code"])) from None
        raise


def resource_id(sub: str, value: str, group: str | None, kind: str, what: str) -> str:
    """An id as given, or the id of the named resource of `kind` in `group`."""
    if value.startswith("/"):
        return value.rstrip("/")
    if not group:
        raise CliError(f"usage error: {what} '{value}' is a name; give its --resource-group, or its full id.")
    namespace, _, types = kind.partition("/")
    return path("subscriptions", sub, "resourceGroups", group, "providers", namespace, *types.split("/"), value)


def flatten(resource: dict[str, Any]) -> dict[str, Any]:
    flat = {k: v for k, v in resource.items() if k != "properties"}
    flat.update(resource.get("properties") or {})
    return with_resource_group(flat)


def _json_arg(value: str | None, flag: str) -> Any:
    if value is None:
        return None
    try:
        text = Path(value[1:]).read_text() if value.startswith("@") else value
    except OSError as exc:
        raise CliError(f"{flag}: cannot read {value[1:]} ({exc.strerror}).") from None
    try:
        parsed = json.loads(text)
    except ValueError as exc:
        raise CliError(f"{flag}: not valid JSON ({exc}).") from None
    if not isinstance(parsed, list):
        raise CliError(f"{flag}: expected a JSON list, e.g. '[{{\"category\": \"RequestResponse\", \"enabled\": true}}]'.")
    return parsed


def _settings_path(sub: str, resource: str, group: str | None, kind: str, *rest: str) -> str:
    target = resource_id(sub, resource, group, kind, "--resource")
    return target + path("providers", "Microsoft.Insights", "diagnosticSettings", *rest)


@diagnostic_settings_app.command("create")
def settings_create(
        name: SettingName, resource: Resource, resource_group: Group = None,
        resource_type: ResourceType = ACCOUNT_TYPE,
        logs: Annotated[Optional[str], typer.Option("--logs", help="JSON list of log settings, or @file.")] = None,
        metrics: Annotated[Optional[str], typer.Option("--metrics", help="JSON list of metric settings, or @file.")]
        = None,
        workspace: Annotated[Optional[str], typer.Option("--workspace", help="Name or ID of the Log Analytics "
                                                                             "workspace.")] = None,
        storage_account: Annotated[Optional[str], typer.Option("--storage-account", help="Name or ID of the "
                                                                                         "storage account.")] = None,
        event_hub_rule: Annotated[Optional[str], typer.Option("--event-hub-rule", help="ID of the event hub "
                                                              "authorization rule, or a namespace name.")] = None,
        event_hub: Annotated[Optional[str], typer.Option("--event-hub", help="Name of the event hub; default: one "
                                                         "per category.")] = None,
        destination_type: Annotated[Optional[str], typer.Option("--log-analytics-destination-type",
                                                                help="Dedicated or null.")] = None,
        webhook_url: Annotated[Optional[str], typer.Option("--webhook-url", help="(Lapis) POST batches of records "
                                                           "here.")] = None,
        otlp_endpoint: Annotated[Optional[str], typer.Option("--otlp-endpoint", help="(Lapis) an OpenTelemetry "
                                                             "collector's OTLP/HTTP base URL.")] = None,
        subscription: Subscription = None, output: Output = OutputFormat.json, query: Query = None) -> None:
    """Create (or replace) a diagnostic setting for a resource."""
    api = client()
    sub = subscription_id(api, subscription)
    props: dict[str, Any] = {"logs": _json_arg(logs, "--logs") or [], "metrics": _json_arg(metrics, "--metrics") or []}
    if workspace:
        props["workspaceId"] = resource_id(sub, workspace, resource_group, "Microsoft.OperationalInsights/workspaces",
                                           "--workspace")
    if storage_account:
        props["storageAccountId"] = resource_id(sub, storage_account, resource_group,
                                                "Microsoft.Storage/storageAccounts", "--storage-account")
    if event_hub_rule:
        props["eventHubAuthorizationRuleId"] = event_hub_rule if event_hub_rule.startswith("/") else resource_id(
            sub, event_hub_rule, resource_group, "Microsoft.EventHub/namespaces", "--event-hub-rule") + path(
            "authorizationRules", "RootManageSharedAccessKey")
    for key, value in (("eventHubName", event_hub), ("logAnalyticsDestinationType", destination_type),
                       ("webhookUrl", webhook_url), ("otlpEndpoint", otlp_endpoint)):
        if value:
            props[key] = value
    result = call(api, "PUT", _settings_path(sub, resource, resource_group, resource_type, name),
                  {"properties": props}, SETTINGS_API)
    show(flatten(result), output, query, SETTING_COLUMNS)


@diagnostic_settings_app.command("list")
def settings_list(resource: Resource, resource_group: Group = None, resource_type: ResourceType = ACCOUNT_TYPE,
                  subscription: Subscription = None, output: Output = OutputFormat.json, query: Query = None) -> None:
    """List the diagnostic settings of a resource."""
    api = client()
    sub = subscription_id(api, subscription)
    body = call(api, "GET", _settings_path(sub, resource, resource_group, resource_type), api_version=SETTINGS_API)
    show([flatten(s) for s in (body or {}).get("value", [])], output, query, SETTING_COLUMNS)


@diagnostic_settings_app.command("show")
def settings_show(name: SettingName, resource: Resource, resource_group: Group = None,
                  resource_type: ResourceType = ACCOUNT_TYPE, subscription: Subscription = None,
                  output: Output = OutputFormat.json, query: Query = None) -> None:
    """Show one diagnostic setting."""
    api = client()
    sub = subscription_id(api, subscription)
    result = call(api, "GET", _settings_path(sub, resource, resource_group, resource_type, name),
                  api_version=SETTINGS_API)
    show(flatten(result), output, query, SETTING_COLUMNS)


@diagnostic_settings_app.command("delete")
def settings_delete(name: SettingName, resource: Resource, resource_group: Group = None,
                    resource_type: ResourceType = ACCOUNT_TYPE, subscription: Subscription = None) -> None:
    """Delete a diagnostic setting (nothing to do when there is none)."""
    api = client()
    sub = subscription_id(api, subscription)
    call(api, "DELETE", _settings_path(sub, resource, resource_group, resource_type, name), api_version=SETTINGS_API)


@log_analytics_app.command("query")
def log_query(
        workspace: Annotated[str, typer.Option("--workspace", "-w", help="Name (with -g) or ID of the workspace.")],
        resource_group: Group = None,
        analytics_query: Annotated[Optional[str], typer.Option("--analytics-query", "-q", help="The query, e.g. "
                                                               "\"AzureDiagnostics | where DurationMs > 100\".")]
        = None,
        table: Annotated[Optional[str], typer.Option("--table", help="(Lapis) the table, instead of a whole "
                                                     "query: AzureDiagnostics or AzureMetrics.")] = None,
        where: Annotated[Optional[list[str]], typer.Option("--where", help="(Lapis) a condition for --table, e.g. "
                                                           "\"OperationName == 'ChatCompletions_Create'\"; "
                                                           "repeat to AND them.")] = None,
        timespan: Annotated[Optional[str], typer.Option("--timespan", "-t", help="ISO 8601 duration (PT1H, P1D) "
                                                        "or start/end.")] = None,
        subscription: Subscription = None, output: Output = OutputFormat.json, query: Query = None) -> None:
    """Query a Log Analytics workspace (see lapis.diagnostics.query for the language)."""
    if bool(analytics_query) == bool(table):
        raise CliError("usage error: give --analytics-query, or --table with optional --where conditions.")
    text = analytics_query or " | ".join([str(table), *(f"where {w}" for w in where or [])])
    api = client()
    sub = subscription_id(api, subscription)
    target = resource_id(sub, workspace, resource_group, "Microsoft.OperationalInsights/workspaces", "--workspace")
    params = {"api-version": QUERY_API, "query": text, **({"timespan": timespan} if timespan else {})}
    body = call(api, "GET", f"{target}/api/query?{urlencode(params)}")
    rows: list[dict[str, Any]] = []
    for found in (body or {}).get("tables", []):
        names = [c["name"] for c in found.get("columns", [])]
        rows.extend({"TableName": found.get("name"), **dict(zip(names, row))} for row in found.get("rows", []))
    show(rows, output, query)


_PERIOD = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$", re.IGNORECASE)


def period(text: str) -> timedelta:
    """az's period: ##d##h##m##s (e.g. 1h, 30m, 1d12h)."""
    match = _PERIOD.match(text.strip())
    if not match or not any(match.groups()):
        raise CliError(f"usage error: --offset '{text}' is not a period such as 1h, 30m or 2d.")
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)


def _time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise CliError(f"usage error: '{text}' is not an ISO 8601 date and time.") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def activity_filter(start: str | None, end: str | None, offset: str, group: str | None, resource: str | None,
                    correlation: str | None, namespace: str | None, caller: str | None, status: str | None) -> str:
    """az's $filter: a window (offset back from the end, or forward from the start), one scope, caller, status."""
    if len([x for x in (group, resource, correlation, namespace) if x]) > 1:
        raise CliError("usage error: [--correlation-id ID | --resource-group NAME | --resource-id ID | "
                       "--namespace PROVIDER]")
    span = period(offset)
    end_at = _time(end) if end else (_time(start) + span if start else datetime.now(timezone.utc))
    start_at = _time(start) if start else end_at - span
    text = f"eventTimestamp ge '{start_at.isoformat()}' and eventTimestamp le '{end_at.isoformat()}'"
    for label, value in (("correlationId", correlation), ("resourceGroupName", group), ("resourceId", resource),
                         ("resourceProvider", namespace), ("caller", caller), ("status", status)):
        if value:
            text += f" and {label} eq '{value}'"
    return text


@activity_log_app.command("list")
def activity_list(
        resource_group: Group = None,
        resource_id_: Annotated[Optional[str], typer.Option("--resource-id", help="ID of a resource.")] = None,
        correlation_id: Annotated[Optional[str], typer.Option("--correlation-id", help="Correlation id.")] = None,
        namespace: Annotated[Optional[str], typer.Option("--namespace", help="Resource provider namespace.")] = None,
        start_time: Annotated[Optional[str], typer.Option("--start-time", help="ISO 8601 start.")] = None,
        end_time: Annotated[Optional[str], typer.Option("--end-time", help="ISO 8601 end.")] = None,
        offset: Annotated[str, typer.Option("--offset", help="Time window, ##d##h (default 6h).")] = "6h",
        caller: Annotated[Optional[str], typer.Option("--caller", help="Caller to look for.")] = None,
        status: Annotated[Optional[str], typer.Option("--status", help="Status, e.g. Failed or Succeeded.")] = None,
        max_events: Annotated[int, typer.Option("--max-events", help="Most events to return.")] = 50,
        subscription: Subscription = None, output: Output = OutputFormat.json, query: Query = None) -> None:
    """List activity log events, newest first."""
    api = client()
    sub = subscription_id(api, subscription)
    text = activity_filter(start_time, end_time, offset, resource_group, resource_id_, correlation_id, namespace,
                           caller, status)
    url: str | None = path("subscriptions", sub, "providers", "Microsoft.Insights", "eventtypes", "management",
                           "values") + "?" + urlencode({"api-version": ACTIVITY_API, "$filter": text})
    events: list[dict[str, Any]] = []
    while url and len(events) < max_events:
        body = call(api, "GET", url) or {}
        events.extend(body.get("value", []))
        following = body.get("nextLink")
        url = following[len(api.server.url):] if following and following.startswith(api.server.url) else None
    show(events[:max_events], output, query, EVENT_COLUMNS)


def add_monitor_commands(monitor_app: typer.Typer) -> None:
    """Register these groups under `lapis monitor`."""
    monitor_app.add_typer(diagnostic_settings_app, name="diagnostic-settings")
    monitor_app.add_typer(log_analytics_app, name="log-analytics")
    monitor_app.add_typer(activity_log_app, name="activity-log")
