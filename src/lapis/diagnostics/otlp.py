"""OtlpSink: records as OpenTelemetry logs, OTLP/HTTP with JSON encoding.

    POST {otlpEndpoint}/v1/logs
    Content-Type: application/json

    {"resourceLogs": [{"resource": {"attributes": [service.name=lapis, cloud.provider=azure,
                                                   cloud.region=<location>, cloud.resource_id=<account id>]},
                       "scopeLogs": [{"scope": {"name": "lapis.diagnostics"},
                                      "logRecords": [{"timeUnixNano": "…", "observedTimeUnixNano": "…",
                                                      "severityNumber": 9, "severityText": "INFO",
                                                      "body": {"kvlistValue": <the record>},
                                                      "attributes": [azure.category, azure.operation_name,
                                                                     azure.correlation_id, http.response.status_code]}]}]}]}

One resourceLogs entry per account in the batch. 64-bit integers are JSON
strings, as the protobuf JSON mapping requires. Severity: INFO for a success,
WARN for a 4xx, ERROR for a 5xx or a record of level Error.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any, Callable

import aiohttp

from lapis.diagnostics.webhook import post_json

SEVERITY = {"INFO": 9, "WARN": 13, "ERROR": 17}


def any_value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, dict):
        return {"kvlistValue": {"values": attributes(value)}}
    if isinstance(value, list):
        return {"arrayValue": {"values": [any_value(v) for v in value]}}
    return {"stringValue": "" if value is None else str(value)}


def attributes(values: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": key, "value": any_value(value)} for key, value in values.items()]


def _nanos(stamp: str) -> int:
    moment = datetime.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    fraction = stamp[20:-1] if len(stamp) > 20 else ""
    return int(moment.timestamp()) * 1_000_000_000 + int((fraction + "000000000")[:9] or 0)


def _severity(record: dict[str, Any]) -> str:
    status = str(record.get("resultSignature", "200"))
    if record.get("level") == "Error" or status.startswith("5"):
        return "ERROR"
    return "WARN" if status.startswith("4") else "INFO"


def log_record(record: dict[str, Any], observed: int) -> dict[str, Any]:
    severity = _severity(record)
    attrs: dict[str, Any] = {"azure.category": record.get("category") or "AllMetrics",
                             "azure.operation_name": record.get("operationName") or record.get("metricName", ""),
                             "azure.correlation_id": record.get("correlationId", "")}
    if str(record.get("resultSignature", "")).isdigit():
        attrs["http.response.status_code"] = int(record["resultSignature"])
    return {"timeUnixNano": str(_nanos(record["time"])), "observedTimeUnixNano": str(observed),
            "severityNumber": SEVERITY[severity], "severityText": severity, "body": any_value(record),
            "attributes": attributes(attrs)}


def export_body(records: list[dict[str, Any]]) -> dict[str, Any]:
    observed = time.time_ns()
    by_resource: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for record in records:
        by_resource.setdefault((record["resourceId"], record.get("location", "")), []).append(record)
    return {"resourceLogs": [
        {"resource": {"attributes": attributes({"service.name": "lapis", "cloud.provider": "azure",
                                                "cloud.region": location, "cloud.resource_id": resource})},
         "scopeLogs": [{"scope": {"name": "lapis.diagnostics"},
                        "logRecords": [log_record(r, observed) for r in items]}]}
        for (resource, location), items in by_resource.items()]}


class OtlpSink:
    kind = "otlp"

    def __init__(self, name: str, endpoint: str, session: Callable[[], aiohttp.ClientSession]):
        self.name = name
        self.url = endpoint.rstrip("/") + "/v1/logs"
        self._session = session

    async def deliver(self, records: list[dict[str, Any]]) -> None:
        await post_json(self._session(), self.url, export_body(records))

    async def close(self) -> None:
        return None
