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
Streams are capped near `maxlen` entries (XADD MAXLEN ~). A batch bound for
one hub (the usual case) is one XADD; several hubs go in one pipeline. The
queue hands data-plane requests over as Pendings whose JSON is made
(lapis.diagnostics.pending.for_event_hub), other records as dicts.
"""

from __future__ import annotations

from typing import Any

import msgspec

from lapis.diagnostics.pending import Pending

STREAM_PREFIX = "eventhubs/"
_encode = msgspec.json.Encoder().encode


def hub_for(record: dict[str, Any] | Pending, hub: str) -> str:
    if hub:
        return hub
    if type(record) is Pending:
        return f"insights-logs-{record.category.lower()}"
    if "metricName" in record:
        return "insights-metrics-pt1m"
    return f"insights-logs-{record['category'].lower()}"


def body(records: list[Any]) -> bytes:
    """{"records": [...]}, as msgspec writes it, each Pending's JSON as it was made."""
    return b'{"records":[' + b",".join([r.json() if type(r) is Pending else _encode(r) for r in records]) + b"]}"


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

    async def deliver(self, records: list[Any]) -> None:
        by_hub: dict[str, list[Any]] = {self.hub: records} if self.hub else {}
        if not self.hub:
            for record in records:
                by_hub.setdefault(hub_for(record, ""), []).append(record)
        if len(by_hub) == 1:
            [(hub, items)] = by_hub.items()
            await self.client.xadd(stream_key(self.namespace, hub), {"body": body(items)}, maxlen=self.maxlen,
                                   approximate=True)
            return
        pipe = self.client.pipeline(transaction=False)
        for hub, items in by_hub.items():
            pipe.xadd(stream_key(self.namespace, hub), {"body": body(items)}, maxlen=self.maxlen, approximate=True)
        await pipe.execute()

    async def close(self) -> None:
        return None
