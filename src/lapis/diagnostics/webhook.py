"""WebhookSink: batches of records POSTed as JSON, the body Event Hubs receives.

    POST {webhookUrl}
    Content-Type: application/json

    {"records": [<resource log or metric record>, ...]}

A 2xx takes the batch. 408, 429 and 5xx, timeouts and refused connections are
retried by the queue (lapis.diagnostics.queue); any other 4xx means the
receiver will never take this batch, so it is dropped (`Rejected`).
"""

from __future__ import annotations

from typing import Any, Callable

import aiohttp
import msgspec

from lapis.diagnostics.queue import Rejected

TIMEOUT = aiohttp.ClientTimeout(total=10, connect=3)


def check_status(status: int, where: str) -> None:
    """Return for a 2xx; Rejected for a final refusal; an error to retry otherwise."""
    if 200 <= status < 300:
        return
    if status in (408, 429) or status >= 500:
        raise ConnectionError(f"{where} answered HTTP {status}")
    raise Rejected(f"{where} answered HTTP {status}")


async def post_json(session: aiohttp.ClientSession, url: str, payload: Any) -> None:
    """One delivery attempt of a JSON body (the webhook and OTLP sinks)."""
    body = msgspec.json.encode(payload)
    async with session.post(url, data=body, timeout=TIMEOUT, headers={"Content-Type": "application/json"}) as response:
        await response.read()
        check_status(response.status, url)


class WebhookSink:
    kind = "webhook"

    def __init__(self, name: str, url: str, session: Callable[[], aiohttp.ClientSession]):
        self.name = name
        self.url = url
        self._session = session

    async def deliver(self, records: list[dict[str, Any]]) -> None:
        await post_json(self._session(), self.url, {"records": records})

    async def close(self) -> None:
        return None
