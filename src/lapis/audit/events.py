"""Activity Log events (Azure's EventData, Microsoft.Insights 2015-04-01), built without I/O.

    {"authorization": {"action", "scope"}, "caller", "category": {"value", "localizedValue"},
     "claims": {...}, "correlationId", "description": "", "eventDataId",
     "eventName": {"value": "EndRequest", "localizedValue": "End request"},
     "eventTimestamp": "2024-05-24T12:23:02.4350000Z", "httpRequest": {"clientRequestId", "clientIpAddress", "method"},
     "id": "{resourceId}/events/{eventDataId}/ticks/{ticks}", "level": "Informational" | "Error",
     "operationId", "operationName": {"value": <action>, "localizedValue"},
     "properties": {"statusCode": "Created", "serviceRequestId", "statusMessage"?},
     "resourceGroupName", "resourceId", "resourceProviderName": {...}, "resourceType": {...},
     "status": {"value": "Succeeded" | "Failed"}, "subStatus": {"value": "Created",
     "localizedValue": "Created (HTTP Status Code: 201)"}, "submissionTimestamp", "subscriptionId", "tenantId"}

Azure writes a Started and a Succeeded/Failed event per operation; Lapis
writes one, at the end, with the outcome (operations finish inside the
request here). Management writes are category Administrative; denied
data-plane requests (Lapis's addition: Azure keeps those out of the Activity
Log) are category Security, operationName the data action that was refused.
A failed event's properties.statusMessage is the error body that was sent.
"""

from __future__ import annotations

import uuid
from http import HTTPStatus
from typing import Any

from lapis.diagnostics.shaping import KEY_NAMES, iso, ticks

OID_CLAIM = "http://schemas.microsoft.com/identity/claims/objectidentifier"
LOCALIZED = {
    "microsoft.cognitiveservices/accounts/write": "Create or update account",
    "microsoft.cognitiveservices/accounts/delete": "Delete account",
    "microsoft.cognitiveservices/accounts/listkeys/action": "List keys",
    "microsoft.cognitiveservices/accounts/regeneratekey/action": "Regenerate key",
    "microsoft.cognitiveservices/accounts/deployments/write": "Create or update deployment",
    "microsoft.cognitiveservices/accounts/deployments/delete": "Delete deployment",
    "microsoft.resources/subscriptions/resourcegroups/write": "Update resource group",
    "microsoft.resources/subscriptions/resourcegroups/delete": "Delete resource group",
    "microsoft.insights/diagnosticsettings/write": "Create or update resource diagnostic setting",
    "microsoft.insights/diagnosticsettings/delete": "Delete resource diagnostic setting",
    "microsoft.authorization/roleassignments/write": "Create role assignment",
    "microsoft.authorization/roleassignments/delete": "Delete role assignment",
}


def localizable(value: str, localized: str | None = None) -> dict[str, str]:
    return {"value": value, "localizedValue": localized or value}


def sub_status(status: int) -> dict[str, str]:
    """Created / "Created (HTTP Status Code: 201)"; BadRequest / "Bad Request (HTTP Status Code: 400)"."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unknown"
    return {"value": phrase.replace(" ", "").replace("-", ""), "localizedValue": f"{phrase} (HTTP Status Code: {status})"}


def resource_parts(resource_id: str) -> tuple[str, str, str, str]:
    """(subscription, resource group, provider namespace, resource type) of an ARM id; "" where absent."""
    parts = [p for p in resource_id.split("/") if p]
    lowered = [p.lower() for p in parts]
    sub = parts[1] if len(parts) > 1 and lowered[0] == "subscriptions" else ""
    group = parts[3] if len(parts) > 3 and lowered[2] == "resourcegroups" else ""
    if "providers" in lowered:
        at = len(lowered) - 1 - lowered[::-1].index("providers")
        rest = parts[at + 1:]
        namespace = rest[0] if rest else ""
        kind = "/".join([namespace, *rest[1::2]]) if rest else ""
        return sub, group, namespace, kind
    if group:
        return sub, group, "Microsoft.Resources", "Microsoft.Resources/resourceGroups"
    return sub, group, "Microsoft.Resources", "Microsoft.Resources/subscriptions" if sub else ""


def event(*, action: str, localized_action: str | None, scope: str, resource_id: str, category: str, caller: str,
          oid: str, status: int, method: str, client_ip: str, client_request_id: str, correlation_id: str,
          request_id: str, when: float, error_body: bytes | None = None,
          extra: dict[str, str] | None = None) -> dict[str, Any]:
    sub, group, namespace, kind = resource_parts(resource_id)
    succeeded = 200 <= status < 400
    event_id = str(uuid.uuid4())
    stamp = iso(when)
    properties: dict[str, str] = {"statusCode": sub_status(status)["value"], "serviceRequestId": request_id}
    if error_body and not succeeded:
        properties["statusMessage"] = error_body.decode("utf-8", "replace")
    properties.update(extra or {})
    return {
        "authorization": {"action": action, "scope": scope},
        "caller": caller,
        "category": localizable(category),
        "channels": "Operation",
        "claims": {OID_CLAIM: oid} if oid else {},
        "correlationId": correlation_id,
        "description": "",
        "eventDataId": event_id,
        "eventName": localizable("EndRequest", "End request"),
        "eventTimestamp": stamp,
        "httpRequest": {"clientRequestId": client_request_id, "clientIpAddress": client_ip, "method": method},
        "id": f"{resource_id}/events/{event_id}/ticks/{ticks(when)}",
        "level": "Informational" if succeeded else "Error",
        "operationId": request_id,
        "operationName": localizable(action, localized_action or LOCALIZED.get(action.lower())),
        "properties": properties,
        "resourceGroupName": group,
        "resourceId": resource_id,
        "resourceProviderName": localizable(namespace),
        "resourceType": localizable(kind),
        "status": localizable("Succeeded" if succeeded else "Failed"),
        "subStatus": sub_status(status),
        "submissionTimestamp": stamp,
        "subscriptionId": sub,
        "tenantId": "",
    }


def denial_event(record: Any, action: str, method: str, when: float) -> dict[str, Any]:
    """The Security event of a denied data-plane request (a lapis.observe RequestRecord)."""
    caller = record.caller
    return event(action=action, localized_action=record.operation_name, scope=record.account_arm_id,
                 resource_id=record.account_arm_id, category="Security", caller=caller,
                 oid="" if caller in KEY_NAMES else caller, status=record.status, method=method,
                 client_ip=record.caller_ip, client_request_id="", correlation_id=record.request_id,
                 request_id=record.request_id, when=when,
                 extra={"errorCode": record.error_code, "apiVersion": record.api_version,
                        "operationId": record.operation_name})
