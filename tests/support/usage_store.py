"""A stand-in for MeteringStore's usage side, and the usage rows and records the usage tests use."""

from __future__ import annotations

import time

from lapis.observe.record import RequestRecord

SUB = "11111111-2222-3333-4444-555555555555"
ARM = f"/subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.CognitiveServices/accounts/acct"


class FakeStore:
    """MeteringStore's usage side: rows added (not deduplicated: `counts` shows
    a request added twice), marks set and forgotten in the same "transaction"."""

    def __init__(self) -> None:
        self.rows: dict[str, tuple] = {}
        self.counts: dict[str, int] = {}
        self.marks: dict[str, int] = {}
        self.fail = False
        self.lose_answer = False  # commit, then fail: an ambiguous failure
        self.calls = 0

    async def add_usage(self, rows, marks=None, forget=()) -> int:
        self.calls += 1
        if self.fail:
            raise ConnectionError("store down")
        for r in rows:
            self.rows[r[0]] = tuple(r)
            self.counts[r[0]] = self.counts.get(r[0], 0) + 1
        self.marks.update(marks or {})
        for name in forget:
            self.marks.pop(name, None)
        if self.lose_answer:
            self.lose_answer = False
            raise ConnectionError("connection lost after the commit")
        return len(rows)

    async def usage_mark(self, segment: str) -> int:
        if self.fail:
            raise ConnectionError("store down")
        return self.marks.get(segment, 0)

    async def forget_marks(self, segments) -> None:
        await self.add_usage((), forget=segments)

    def once(self) -> bool:
        return set(self.counts.values()) <= {1}


def row(request_id: str, prompt: int = 10) -> tuple:
    return (request_id, 1_700_000_000_000, 20231114, SUB, "rg1", "a" * 32, ARM, "eastus", "dep", "gpt-4o", "v",
            "Standard", "key1", "ChatCompletions_Create", '{"team":"search"}', prompt, 0, 5, 30, 0, 40)


def record(request_id: str, prompt: int = 10, streaming: bool = False) -> RequestRecord:
    return RequestRecord(
        time=time.time(), request_id=request_id, operation="chat", operation_name="ChatCompletions_Create",
        api_version="2024-10-21", status=200, streaming=streaming, duration_ms=1.0, ttfb_ms=1.0, caller="key1",
        account_id="a" * 32, account_name="acct", account_arm_id=ARM, subscription_id=SUB, resource_group="rg1",
        location="eastus", deployment="dep", model="gpt-4o", model_version="2024-11-20", sku="Standard",
        prompt_tokens=prompt, completion_tokens=5)
