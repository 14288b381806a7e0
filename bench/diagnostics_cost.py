"""What one data-plane request costs the diagnostics, in-process: µs per record.

    .venv/bin/python bench/diagnostics_cost.py [--records 50000] [--repeat 5] [--content]

One Diagnostics (lapis.diagnostics.dispatcher) with one setting on an account,
as bench/observe_overhead.py configures the demo account: a Log Analytics
workspace (the file sink, under a temporary LAPIS_HOME) and an Event Hubs
destination (the broker sink: a Redis stream on 127.0.0.1:6379 unique to the
run, deleted afterwards), RequestResponse logs and AllMetrics. It feeds
`observe(record)` a realistic RequestRecord per request (a fresh request id and
time each), yielding to the event loop every 64 records as a serving loop does,
then waits until both queues are empty, and prints:

    observe     µs per record spent in `observe()` itself (the request path)
    total CPU   µs per record of this process's CPU (every thread), user and system
                (os.times, 10 ms ticks), from the first observe to the last delivery: the
                request path plus the sinks' background shaping, serializing and writing
                (Redis's own CPU not included)
    wall        µs per record from the first observe to the last delivery

each the best of `--repeat` runs (others' work on the machine only adds), with
the median beside it. The queues are sized to hold every record, so nothing is
dropped and the same work is measured however fast the sinks are; the run fails
if a record is lost.
`--content` adds prompt and response text to every record (a setting with
lapisIncludeContent; no keyring here, so the file sink writes NOT_SEALED).
"""

from __future__ import annotations

import argparse
import os
import asyncio
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

import redis.asyncio as aioredis  # noqa: E402

from lapis.diagnostics.dispatcher import Diagnostics  # noqa: E402
from lapis.diagnostics.settings import DiagnosticSetting  # noqa: E402
from lapis.observe.record import RequestRecord  # noqa: E402

SUB = "00000000-0000-0000-0000-000000000000"
ACCOUNT = f"/subscriptions/{SUB}/resourceGroups/lapis-demo/providers/Microsoft.CognitiveServices/accounts/lapis-demo"
RG = f"/subscriptions/{SUB}/resourceGroups/lapis-demo/providers"


class OneSetting:
    """The settings store, holding one setting."""

    def __init__(self, setting: DiagnosticSetting):
        self.setting = setting

    async def all(self) -> list[DiagnosticSetting]:
        return [self.setting]


def records(count: int, content: bool) -> list[RequestRecord]:
    start = time.time()
    text = {"requestContent": '[{"role":"user","content":"Say hello in one short sentence."}]',
            "responseContent": '[{"role":"assistant","content":"Hello there, nice to meet you."}]'}
    return [RequestRecord(
        time=start + i * 0.000_17, request_id=str(uuid.uuid4()), operation="chat",
        operation_name="ChatCompletions_Create", api_version="2024-10-21", status=200, streaming=False,
        duration_ms=1.734 + (i % 7) * 0.01, ttfb_ms=1.52, caller="key1", caller_ip="127.0.0.1", account_id="acct-1",
        account_name="lapis-demo", account_arm_id=ACCOUNT, subscription_id=SUB, resource_group="lapis-demo",
        location="eastus", deployment="gpt-4o-mini", model="gpt-4o-mini", model_version="2024-07-18",
        sku="GlobalStandard", prompt_tokens=96, completion_tokens=16, served_by="gpt-4o-mini",
        served_region="eastus", content=dict(text) if content else None) for i in range(count)]


async def once(count: int, content: bool) -> tuple[float, float, float, float, float, dict, int]:
    """One run: (observe, CPU, user CPU, system CPU, wall) in µs per record, the sinks' counters, the stream's
    entries."""
    home = Path(tempfile.mkdtemp(prefix="lapis-diagnostics-cost-"))
    namespace = f"bench-{uuid.uuid4().hex[:12]}"
    logs: dict = {"category": "RequestResponse", "enabled": True}
    if content:
        logs["lapisIncludeContent"] = True
    setting = DiagnosticSetting("acct-1", "bench", ACCOUNT, "eastus", {
        "workspaceId": f"{RG}/Microsoft.OperationalInsights/workspaces/bench-ws",
        "eventHubAuthorizationRuleId": f"{RG}/Microsoft.EventHub/namespaces/{namespace}/authorizationRules/"
                                       "RootManageSharedAccessKey",
        "eventHubName": "lapis-bench", "logs": [logs], "metrics": [{"category": "AllMetrics", "enabled": True}]})
    services = SimpleNamespace(store=SimpleNamespace(db=None, keyring=None), settings=SimpleNamespace(home=home),
                               observers=set())
    diagnostics = Diagnostics(services, capacity=count + 1000)
    diagnostics.store = OneSetting(setting)  # type: ignore[assignment]
    await diagnostics.reload()
    items = records(count, content)
    broker = diagnostics._broker()
    stream = f"eventhubs/{namespace}/lapis-bench"
    try:
        observe = diagnostics.observe
        clock = time.perf_counter_ns
        spent = 0
        times0, wall0 = os.times(), time.perf_counter()
        for start in range(0, count, 64):
            t0 = clock()
            for record in items[start:start + 64]:
                observe(record)
            spent += clock() - t0
            await asyncio.sleep(0)
        while any(q.items for q in diagnostics.queues.values()):
            await asyncio.sleep(0.001)
        times, wall = os.times(), time.perf_counter() - wall0
        user, system = times.user - times0.user, times.system - times0.system
        counters = diagnostics.counters()
        entries = await broker.xlen(stream)
    finally:
        await diagnostics.stop()  # its last AllMetrics records go to the stream: delete it after
        cleaner = aioredis.from_url("redis://127.0.0.1:6379/0")
        await cleaner.delete(stream)
        await cleaner.aclose()
        shutil.rmtree(home, ignore_errors=True)
    scale = 1e6 / count
    return spent / 1000 / count, (user + system) * scale, user * scale, system * scale, wall * scale, counters, entries


async def run(count: int, repeat: int, content: bool) -> int:
    runs = [await once(count, content) for _ in range(repeat)]
    print(f"{count} records{' with text' if content else ''} a run, {repeat} runs; two sinks (workspace files, "
          "a Redis stream)")
    lost = False
    for n, (*_, counters, entries) in enumerate(runs, 1):
        for name, values in sorted(counters.items()):
            lost = lost or values["delivered"] != count or values["dropped"] > 0 or values["queued"] > 0
            print(f"  run {n} {name}: {values}")
        print(f"  run {n} stream entries {entries}")
    for index, label in ((0, "observe"), (1, "total CPU"), (2, "  user"), (3, "  system"), (4, "wall")):
        values = sorted(r[index] for r in runs)
        print(f"  {label:<10} {values[0]:7.2f} µs per record (median {values[len(values) // 2]:.2f})")
    if lost:
        print("FAIL  not every record was delivered", file=sys.stderr)
        return 1
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=50_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--content", action="store_true", help="records carry prompt and response text")
    args = ap.parse_args()
    try:
        import uvloop  # type: ignore[import-not-found]
    except ImportError:
        return asyncio.run(run(args.records, args.repeat, args.content))
    return uvloop.run(run(args.records, args.repeat, args.content))


if __name__ == "__main__":
    sys.exit(main())
