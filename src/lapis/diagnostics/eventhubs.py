"""EventHubSink: the Event Hubs stand-in, on Redis Streams.

An Event Hubs namespace is a Redis server (LAPIS_EVENTHUBS_URL, else
LAPIS_REDIS_URL, else redis://127.0.0.1:6379/0); an event hub is the stream
`eventhubs/{namespace}/{hub}`. Each batch becomes one entry per hub whose
field `body` holds what Azure sends an event hub: {"records": [...]}.
Without an eventHubName, Azure makes one hub per category and so does Lapis:
insights-logs-{category} (insights-logs-requestresponse, insights-logs-audit,
insights-logs-trace) and insights-metrics-pt1m.

Read it with any Redis client: `XRANGE eventhubs/myns/insights-logs-requestresponse - +`,
or consumer groups (XREADGROUP) for at-least-once processing downstream.
Streams are capped near `maxlen` entries (XADD MAXLEN ~).
"""

from __future__ import annotations

import json
from typing import Any

STREAM_PREFIX = "eventhubs/"


def hub_for(record: dict[str, Any], hub: str) -> str:
    if hub:
        return hub
    if "metricName" in record:
        return "insights-metrics-pt1m"
    return f"insights-logs-{record['category'].lower()}"


def stream_key(namespace: str, hub: str) -> str:
    return f"{STREAM_PREFIX}{namespace}/{hub}"


class EventHubSink:
    kind = "eventhub"

    def __init__(self, name: str, client: Any, namespace: str, hub: str, maxlen: int = 100_000):
        self.name = name
        self.client = client  # redis.asyncio.Redis, shared by every sink on the same broker
        self.namespace = namespace
        self.hub = hub
        self.maxlen = maxlen

    async def deliver(self, records: list[dict[str, Any]]) -> None:
        by_hub: dict[str, list[dict[str, Any]]] = {}
        for record in records:
            by_hub.setdefault(hub_for(record, self.hub), []).append(record)
        pipe = self.client.pipeline(transaction=False)
        for hub, items in by_hub.items():
            body = json.dumps({"records": items}, separators=(",", ":"))
            pipe.xadd(stream_key(self.namespace, hub), {"body": body}, maxlen=self.maxlen, approximate=True)
        await pipe.execute()

    async def close(self) -> None:
        return None
