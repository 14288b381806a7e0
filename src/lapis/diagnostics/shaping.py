"""Records as Azure writes them: resource logs, metric records, and Log Analytics rows.

A resource log of an Azure OpenAI account, as Event Hubs and storage receive
it (captured, elastic/integrations azure_openai test logs):

    {"time": "2024-05-24T12:23:02.4350000Z", "resourceId": "/SUBSCRIPTIONS/…/ACCOUNTS/NAME",
     "category": "RequestResponse", "operationName": "ChatCompletions_Create", "durationMs": 1021,
     "callerIpAddress": "81.2.69.***", "correlationId": "…", "resultSignature": "200",
     "location": "eastus", "Tenant": "eastus", "event": "ShoeboxCallResult",
     "properties": {"apiName": "Azure OpenAI API version 2023-07-01-preview", "requestTime": <.NET ticks>,
                    "responseTime": <ticks>, "objectId": "", "streamType": "Non-Streaming",
                    "modelDeploymentName": "…", "modelName": "…", "modelVersion": "…"}}

Azure masks the last part of the caller's address; so does Lapis. Lapis adds
to `properties` what Azure keeps in metrics or not at all: keyName (key1 or
key2 for key callers; objectId holds a principal), apiVersion,
timeToFirstByteMs, promptTokens, completionTokens, cachedTokens, sku and,
on failures, errorCode. Prompt and completion text are never logged unless
a setting asks for them (lapisIncludeContent): then its RequestResponse
records also carry requestContent and responseContent (lapis.diagnostics.content).

Categories: RequestResponse for every data-plane request; Audit for denied
data-plane requests (401, 403) and for management writes on the account;
Trace for data-plane requests the service failed (5xx), level Error.

A metric record (AllMetrics, one per metric and minute):
    {"count", "total", "minimum", "maximum", "average", "resourceId", "time", "metricName", "timeGrain": "PT1M"}

In a Log Analytics workspace these land as rows of AzureDiagnostics and
AzureMetrics with the tables' column names (TimeGenerated, OperationName,
DurationMs, CallerIPAddress, ResultSignature, properties_s, ...); Lapis also
flattens each property into a typed column as Log Analytics names extra
fields (`modelDeploymentName_s`, `promptTokens_d`), so they can be filtered.
"""

from __future__ import annotations

import math
import time as clock
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any

import msgspec

from lapis.observe.record import RequestRecord

_TICKS_AT_EPOCH = 621_355_968_000_000_000  # .NET ticks (100 ns since 0001-01-01) at 1970-01-01
KEY_NAMES = ("key1", "key2")
_encode = msgspec.json.Encoder().encode


@lru_cache(maxsize=256)
def _second(whole: int) -> str:
    return datetime.fromtimestamp(whole, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.")


def iso(epoch: float) -> str:
    """Azure's timestamp form, 7 fraction digits: 2024-05-24T12:23:02.4350000Z.

    The microseconds are rounded as datetime.fromtimestamp rounds them (half to
    even); the date and time of each second are formatted once (a small cache)."""
    fraction, whole = math.modf(epoch)
    micros = round(fraction * 1e6)
    if micros >= 1_000_000:
        whole, micros = whole + 1, micros - 1_000_000
    elif micros < 0:
        whole, micros = whole - 1, micros + 1_000_000
    return f"{_second(int(whole))}{micros:06d}0Z"


def ticks(epoch: float) -> int:
    return _TICKS_AT_EPOCH + int(epoch * 10_000_000)


def mask_ip(address: str) -> str:
    """81.2.69.142 -> 81.2.69.***; the last group of an IPv6 address likewise."""
    if not address:
        return ""
    if "." in address and ":" not in address:
        return address.rsplit(".", 1)[0] + ".***"
    if ":" in address:
        return address.rsplit(":", 1)[0] + ":****"
    return address


def caller_fields(caller: str) -> dict[str, str]:
    """Keys are named, principals go in objectId (Azure's field for them)."""
    if caller in KEY_NAMES:
        return {"objectId": "", "keyName": caller}
    return {"objectId": caller, "keyName": ""}


def _base(record: RequestRecord, category: str) -> dict[str, Any]:
    return {
        "time": iso(record.time), "resourceId": record.account_arm_id.upper(), "category": category,
        "operationName": record.operation_name, "durationMs": int(round(record.duration_ms)),
        "callerIpAddress": mask_ip(record.caller_ip), "correlationId": record.request_id,
        "resultSignature": str(record.status), "location": record.location, "Tenant": record.location,
        "event": "ShoeboxCallResult",
    }


def request_log(record: RequestRecord, category: str = "RequestResponse") -> dict[str, Any]:
    """The RequestResponse (or Trace) record of one data-plane request."""
    log = _base(record, category)
    caller, started = record.caller, record.time
    keyed = caller in KEY_NAMES
    props: dict[str, Any] = {
        "apiName": f"Azure OpenAI API version {record.api_version}" if record.api_version else "Azure OpenAI API",
        "requestTime": _TICKS_AT_EPOCH + int(started * 10_000_000),
        "responseTime": _TICKS_AT_EPOCH + int((started + record.duration_ms / 1000.0) * 10_000_000),
        "objectId": "" if keyed else caller, "keyName": caller if keyed else "",  # as caller_fields
        "streamType": "Streaming" if record.streaming else "Non-Streaming",
        "modelDeploymentName": record.deployment, "modelName": record.model, "modelVersion": record.model_version,
        "apiVersion": record.api_version, "timeToFirstByteMs": round(record.ttfb_ms, 3),
        "promptTokens": record.prompt_tokens, "completionTokens": record.completion_tokens,
        "cachedTokens": record.cached_tokens, "sku": record.sku,
    }
    if record.error_code:
        props["errorCode"] = record.error_code
    if category == "Trace":
        log["level"] = "Error"
    log["properties"] = props
    return log


def denial_audit_log(record: RequestRecord, action: str) -> dict[str, Any]:
    """The Audit record of a denied data-plane request."""
    log = _base(record, "Audit")
    log["properties"] = {**caller_fields(record.caller), "action": action, "errorCode": record.error_code,
                         "apiVersion": record.api_version}
    return log


def management_audit_log(event: dict[str, Any], status: int, account_arm_id: str, location: str) -> dict[str, Any]:
    """The Audit record of a management write on the account, from its activity-log event."""
    action = event["authorization"]["action"]
    parts = action.split("/")
    operation = {"listkeys": "ListKey", "regeneratekey": "RegenerateKey"}.get(parts[-2].lower() if len(parts) > 1
                                                                             else "", action)
    claims = event.get("claims") or {}
    return {
        "time": event["eventTimestamp"], "resourceId": account_arm_id.upper(), "category": "Audit",
        "operationName": operation, "resultSignature": str(status),
        "callerIpAddress": mask_ip(event["httpRequest"]["clientIpAddress"]),
        "correlationId": event["correlationId"], "location": location, "Tenant": location,
        "properties": {"objectId": claims.get("http://schemas.microsoft.com/identity/claims/objectidentifier", ""),
                       "caller": event["caller"], "action": action, "method": event["httpRequest"]["method"],
                       "status": event["status"]["value"]},
    }


def metric_record(resource_id: str, minute: float, name: str, count: int, total: float, minimum: float,
                  maximum: float) -> dict[str, Any]:
    return {"count": count, "total": float(total), "minimum": float(minimum), "maximum": float(maximum),
            "average": float(total) / count if count else 0.0, "resourceId": resource_id.upper(),
            "time": iso(minute), "metricName": name, "timeGrain": "PT1M"}


# -- Log Analytics rows --------------------------------------------------------

@lru_cache(maxsize=1024)
def _resource_columns(resource_id: str) -> dict[str, str]:
    """The resource's columns (the same dict each time: callers copy it into their row)."""
    parts = resource_id.split("/")
    padded = parts + [""] * (9 - len(parts))
    return {"ResourceId": resource_id, "SubscriptionId": padded[2], "ResourceGroup": padded[4],
            "ResourceProvider": padded[6], "ResourceType": padded[7], "Resource": padded[8],
            "_ResourceId": resource_id.lower()}


def _suffix(value: Any) -> str | None:
    if isinstance(value, bool):
        return "b"
    if isinstance(value, (int, float)):
        return "d"
    if isinstance(value, str):
        return "s"
    return None


def workspace_row(record: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(table, row) for one resource log or metric record."""
    if "metricName" in record:
        row = {"TimeGenerated": record["time"], **_resource_columns(record["resourceId"]),
               "MetricName": record["metricName"], "Total": record["total"], "Count": record["count"],
               "Minimum": record["minimum"], "Maximum": record["maximum"], "Average": record["average"],
               "TimeGrain": record["timeGrain"], "UnitName": "Milliseconds" if "TimeTo" in record["metricName"]
               or "TTLT" in record["metricName"] else "Count", "Type": "AzureMetrics"}
        return "AzureMetrics", row
    props = record.get("properties") or {}
    get = record.get
    row = {"TimeGenerated": record["time"], **_resource_columns(record["resourceId"]),
           "Category": record["category"], "OperationName": record["operationName"],
           "ResultSignature": get("resultSignature", ""), "DurationMs": get("durationMs", 0),
           "CallerIPAddress": get("callerIpAddress", ""), "CorrelationId": get("correlationId", ""),
           "Level": get("level", "Informational"), "Tenant_s": get("Tenant", ""),
           "event_s": get("event", ""), "location_s": get("location", ""),
           "properties_s": _encode(props).decode(), "Type": "AzureDiagnostics",
           "SourceSystem": "Azure"}
    for key, value in props.items():  # as _suffix names them; the exact types without a call
        kind = type(value)
        if kind is str:
            row[key + "_s"] = value
        elif kind is int or kind is float:
            row[key + "_d"] = float(value)
        elif kind is bool:
            row[key + "_b"] = value
        else:
            suffix = _suffix(value)
            if suffix:
                row[f"{key}_{suffix}"] = float(value) if suffix == "d" else value
    return "AzureDiagnostics", row


def now() -> float:
    return clock.time()
