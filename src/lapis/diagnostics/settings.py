"""Diagnostic settings: what an ARM body may say, and where each one sends logs.

The resource (Microsoft.Insights, api-version 2021-05-01-preview):

    PUT|GET|DELETE {accountId}/providers/Microsoft.Insights/diagnosticSettings/{name}
    GET            {accountId}/providers/Microsoft.Insights/diagnosticSettings

    {"id", "name", "type": "Microsoft.Insights/diagnosticSettings",
     "properties": {"workspaceId", "storageAccountId", "eventHubAuthorizationRuleId", "eventHubName",
                    "logAnalyticsDestinationType",
                    "logs": [{"category": "RequestResponse" | "categoryGroup": "allLogs", "enabled": true,
                              "retentionPolicy": {"enabled", "days"}}],
                    "metrics": [{"category": "AllMetrics", "enabled": true, "timeGrain"?}]}}

An Azure OpenAI account has the log categories Audit, RequestResponse and
Trace (groups `allLogs` and `audit`) and the metric category AllMetrics.

Where the logs go: Azure's destinations are resource ids; Lapis maps each to
something that runs on this machine, and adds two of its own:

    workspaceId       Log Analytics  -> JSON lines, one file per table (AzureDiagnostics,
                      AzureMetrics), rotated, under LAPIS_HOME/workspaces/{sub}/{group}/{name}/;
                      queried with GET {workspaceId}/api/query (lapis monitor log-analytics query)
    storageAccountId  archive        -> Azure's blob layout under LAPIS_HOME/storage/{account}/:
                      insights-logs-{category}/resourceId=/SUBSCRIPTIONS/.../y=/m=/d=/h=/m=00/PT1H.json
    eventHubAuthorizationRuleId (+ eventHubName)
                      Event Hubs     -> a Redis stream `eventhubs/{namespace}/{hub}` on the broker
                      LAPIS_EVENTHUBS_URL; without eventHubName the hub is named per category,
                      insights-logs-{category} / insights-metrics-pt1m, as Azure names them;
                      each entry's `body` is Event Hubs' {"records": [...]}
    webhookUrl        (Lapis's own)  -> batched POST {"records": [...]} to the URL
    otlpEndpoint      (Lapis's own)  -> OTLP/HTTP JSON logs, POST {otlpEndpoint}/v1/logs

Prompt and response text (Lapis only, off by default): a log entry that
covers RequestResponse (`category: RequestResponse` or `categoryGroup:
allLogs`) may say `"lapisIncludeContent": true` (a boolean; on any other
entry it is a 400). While such an entry is enabled, the account's data plane
keeps each request's messages, prompt or input and the answer's text, and
this setting's RequestResponse records carry them as `requestContent` and
`responseContent`; sealed under the account's data key in workspace and
storage files, in the clear to webhooks, event hubs and OTLP collectors
(lapis.diagnostics.content says why). Through the CLI it rides in --logs:
`--logs '[{"category": "RequestResponse", "enabled": true, "lapisIncludeContent": true}]'`.

`marketplacePartnerId` and `serviceBusRuleId` get a 400: Lapis delivers to
neither, and a setting that silently went nowhere would be worse.

Residency: a sink's region is the location of the account its setting is on
(recorded on the setting). Records reach only the sinks of their own
account's settings, and only when the regions agree; and one destination may
not serve accounts of two regions (the second PUT gets a 400), so a workspace
file, stream, webhook or collector never mixes regions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from lapis.diagnostics import errors

LOG_CATEGORIES = ("Audit", "RequestResponse", "Trace")
CATEGORY_GROUPS = {"allLogs": frozenset(LOG_CATEGORIES), "audit": frozenset({"Audit"})}
METRIC_CATEGORY = "AllMetrics"
SETTING_TYPE = "Microsoft.Insights/diagnosticSettings"
INCLUDE_CONTENT = "lapisIncludeContent"  # Lapis only: log prompt and response text (see the docstring)

_SEG = r"([A-Za-z0-9_()-][A-Za-z0-9_.()-]*)"  # no leading dot: names become folder names
WORKSPACE_ID = re.compile(rf"^/subscriptions/{_SEG}/resourceGroups/{_SEG}/providers/Microsoft\.OperationalInsights"
                          rf"/workspaces/{_SEG}/?$", re.IGNORECASE)
STORAGE_ID = re.compile(rf"^/subscriptions/{_SEG}/resourceGroups/{_SEG}/providers/Microsoft\.Storage"
                        rf"/storageAccounts/{_SEG}/?$", re.IGNORECASE)
EVENTHUB_RULE_ID = re.compile(rf"^/subscriptions/{_SEG}/resourceGroups/{_SEG}/providers/Microsoft\.EventHub"
                              rf"/namespaces/{_SEG}(/eventhubs/{_SEG})?/authorizationRules/{_SEG}/?$", re.IGNORECASE)
_STRINGS = ("workspaceId", "storageAccountId", "eventHubAuthorizationRuleId", "eventHubName",
            "logAnalyticsDestinationType", "webhookUrl", "otlpEndpoint")


@dataclass(frozen=True, slots=True)
class Destination:
    """One place a setting sends records. `key` names the physical target
    (what residency compares); `kind` is workspace | storage | eventhub | webhook | otlp."""

    kind: str
    key: str
    path: tuple[str, ...] = ()  # workspace: (sub, group, name); storage: (account,); eventhub: (namespace, hub)
    url: str = ""  # webhook / otlp


@dataclass(slots=True)
class DiagnosticSetting:
    account_id: str
    name: str
    resource_id: str  # the account's ARM id
    location: str  # the account's region: the region of every sink of this setting
    properties: dict[str, Any]
    created_at: str = ""
    created_by: str | None = None
    updated_at: str = ""
    updated_by: str | None = None

    @property
    def id(self) -> str:
        return f"{self.resource_id}/providers/microsoft.insights/diagnosticSettings/{self.name}"

    def log_categories(self) -> frozenset[str]:
        """The log categories this setting turns on (groups expanded)."""
        found: set[str] = set()
        for entry in self.properties.get("logs") or []:
            if entry.get("enabled"):
                if entry.get("category"):
                    found.add(entry["category"])
                else:
                    found |= CATEGORY_GROUPS.get(entry.get("categoryGroup", ""), frozenset())
        return frozenset(found)

    def includes_content(self) -> bool:
        """True when an enabled log entry covering RequestResponse asks for prompt and response text."""
        return any(entry.get("enabled") and entry.get(INCLUDE_CONTENT) is True
                   for entry in self.properties.get("logs") or [])

    def metrics_enabled(self) -> bool:
        return any(m.get("enabled") for m in self.properties.get("metrics") or [])

    def destinations(self) -> list[Destination]:
        return destinations_of(self.properties)


def destinations_of(props: dict[str, Any]) -> list[Destination]:
    out = []
    found = WORKSPACE_ID.match(props.get("workspaceId") or "")
    if found:
        parts = tuple(p.lower() for p in found.groups())
        out.append(Destination("workspace", "workspace:" + "/".join(parts), parts))
    found = STORAGE_ID.match(props.get("storageAccountId") or "")
    if found:
        out.append(Destination("storage", "storage:" + found.group(3).lower(), (found.group(3).lower(),)))
    found = EVENTHUB_RULE_ID.match(props.get("eventHubAuthorizationRuleId") or "")
    if found:
        namespace = found.group(3).lower()
        hub = (props.get("eventHubName") or found.group(5) or "").lower()
        out.append(Destination("eventhub", f"eventhub:{namespace}/{hub or '*'}", (namespace, hub)))
    for kind, field in (("webhook", "webhookUrl"), ("otlp", "otlpEndpoint")):
        if props.get(field):
            url = str(props[field]).rstrip("/")
            out.append(Destination(kind, f"{kind}:{url.lower()}", url=url))
    return out


def _canonical(value: str, names: Any) -> str | None:
    return next((n for n in names if n.lower() == value.lower()), None)


def _enabled(entry: dict[str, Any], where: str) -> bool:
    value = entry.get("enabled")
    if not isinstance(value, bool):
        raise errors.bad_request(f"The 'enabled' property of each entry in '{where}' is required and must be a "
                                 "boolean.")  # Lapis's wording: no capture
    return value


def _logs(value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(e, dict) for e in value):
        raise errors.bad_request("The 'logs' property must be an array of log settings.")
    out = []
    for entry in value:
        item = dict(entry)
        _enabled(item, "logs")
        if item.get("category"):
            name = _canonical(str(item["category"]), LOG_CATEGORIES)
            if name is None:
                raise errors.category_not_supported(str(item["category"]))
            item["category"] = name
            item.setdefault("categoryGroup", None)
        elif item.get("categoryGroup"):
            group = _canonical(str(item["categoryGroup"]), CATEGORY_GROUPS)
            if group is None:
                raise errors.category_group_not_supported(str(item["categoryGroup"]), CATEGORY_GROUPS)
            item["categoryGroup"] = group
            item.setdefault("category", None)
        else:
            raise errors.bad_request("Each entry in 'logs' needs a 'category' or a 'categoryGroup'.")
        item.setdefault("retentionPolicy", {"enabled": False, "days": 0})
        _include_content(item)
        out.append(item)
    return out


def _include_content(item: dict[str, Any]) -> None:
    """Lapis's opt-in to prompt and response text: a boolean, on an entry that covers RequestResponse."""
    if INCLUDE_CONTENT not in item:
        return
    if not isinstance(item[INCLUDE_CONTENT], bool):
        raise errors.bad_request(f"The '{INCLUDE_CONTENT}' property of a log setting must be a boolean.")
    covered = {item["category"]} if item.get("category") else CATEGORY_GROUPS[item["categoryGroup"]]
    if item[INCLUDE_CONTENT] and "RequestResponse" not in covered:
        raise errors.bad_request(f"The '{INCLUDE_CONTENT}' property applies only to the RequestResponse category "
                                 "(or the allLogs group).")  # Lapis's own


def _metrics(value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(e, dict) for e in value):
        raise errors.bad_request("The 'metrics' property must be an array of metric settings.")
    out = []
    for entry in value:
        item = dict(entry)
        _enabled(item, "metrics")
        category = str(item.get("category") or METRIC_CATEGORY)
        if category.lower() != METRIC_CATEGORY.lower():
            raise errors.metric_category_not_supported(category)
        item["category"] = METRIC_CATEGORY
        item.setdefault("retentionPolicy", {"enabled": False, "days": 0})
        out.append(item)
    return out


def _http_url(value: str, field: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise errors.bad_request(f"The '{field}' '{value}' is not an absolute http or https URL.")


def read_properties(body: Any) -> dict[str, Any]:
    """The `properties` Lapis stores and echoes for a PUT body; a 400 for anything it cannot honour."""
    props = body.get("properties") if isinstance(body, dict) else None
    if not isinstance(props, dict):
        raise errors.bad_request("The request body must be a diagnostic setting with a 'properties' object.")
    for field in _STRINGS:
        if props.get(field) is not None and not isinstance(props[field], str):
            raise errors.bad_request(f"The '{field}' property must be a string.")
    for field in ("marketplacePartnerId", "serviceBusRuleId"):
        if props.get(field):
            raise errors.bad_request(f"Lapis does not deliver diagnostic logs to a '{field}' destination; use "
                                     "workspaceId, storageAccountId, eventHubAuthorizationRuleId, webhookUrl or "
                                     "otlpEndpoint.")
    checks = (("workspaceId", WORKSPACE_ID, "Log Analytics workspace"), ("storageAccountId", STORAGE_ID,
              "storage account"), ("eventHubAuthorizationRuleId", EVENTHUB_RULE_ID, "event hub authorization rule"))
    for field, pattern, what in checks:
        if props.get(field) and not pattern.match(props[field]):
            raise errors.bad_request(f"The {field} '{props[field]}' is not a valid {what} resource id.")
    for field in ("webhookUrl", "otlpEndpoint"):
        if props.get(field):
            _http_url(props[field], field)
    kind = props.get("logAnalyticsDestinationType")
    if kind not in (None, "", "Dedicated", "AzureDiagnostics"):
        raise errors.bad_request(f"The logAnalyticsDestinationType '{kind}' is not valid; use 'Dedicated' or null.")
    out: dict[str, Any] = {k: props[k] for k in _STRINGS if props.get(k)}
    out["logs"] = _logs(props.get("logs"))
    out["metrics"] = _metrics(props.get("metrics"))
    if not destinations_of(out):
        raise errors.bad_request("A diagnostic setting needs at least one destination: workspaceId, "
                                 "storageAccountId, eventHubAuthorizationRuleId, webhookUrl or otlpEndpoint.")
    return out


def check_residency(setting: DiagnosticSetting, others: list[DiagnosticSetting]) -> None:
    """A 400 when a destination of `setting` already serves an account of another region."""
    for destination in setting.destinations():
        for other in others:
            if other.location == setting.location:
                continue
            if any(d.key == destination.key for d in other.destinations()):
                raise errors.bad_request(
                    f"The destination '{destination.key}' already receives the logs of region '{other.location}'. "
                    f"Each region's logs stay in that region's destinations: choose another destination for this "
                    f"account in '{setting.location}'.")
