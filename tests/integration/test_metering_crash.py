"""Usage survives kill -9: a real server under load from several clients is
killed without warning, restarted on the same store, and then the metered
usage must hold every completed request exactly once.

What exactness can mean at a crash: every request whose answer a client got
is stored (a non-streamed answer waits for its row's commit), none twice (the
request id is the key), and the only others are requests that were in flight
at the kill, whose rows were committed but whose answers never left: at most
one per client thread. Their usage happened, so it is kept, and the totals
are the clients' totals plus exactly those.
"""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import datetime, timezone

import requests

from lapis.store.database import open_database
from lapis.usage import usage_totals
from support.server import DEFAULT_SUBSCRIPTION, start_server

THREADS = 8
COST_API = "2023-03-01"


def load(url: str, key: str, completed: dict, lock: threading.Lock, stop: threading.Event, worker: int) -> None:
    session = requests.Session()
    n = 0
    while not stop.is_set():
        body = {"messages": [{"role": "user", "content": f"worker {worker} asks question {n}"}], "max_tokens": 12}
        n += 1
        try:
            answer = session.post(url, json=body, headers={"api-key": key}, timeout=10)
        except requests.RequestException:
            time.sleep(0.01)
            continue
        if answer.status_code == 200:
            usage = answer.json()["usage"]
            with lock:
                completed[answer.headers["apim-request-id"]] = (usage["prompt_tokens"], usage["completion_tokens"])


async def stored(database_url: str) -> dict[str, tuple[int, int]]:
    db = await open_database(database_url)
    try:
        rows = await db.fetch("SELECT request_id, prompt_tokens, completion_tokens FROM usage_records")
    finally:
        await db.close()
    return {r["request_id"]: (int(r["prompt_tokens"]), int(r["completion_tokens"])) for r in rows}


def test_usage_is_exact_after_kill_9(tmp_path):
    server = start_server(tmp_path / "home", demo=True, LAPIS_RATELIMIT="off")
    database_url = server.env.get("LAPIS_DATABASE_URL") or f"sqlite:///{server.home / 'data' / 'lapis.sqlite3'}"
    try:
        env = server.demo_env()
        url = f"{env['AZURE_OPENAI_ENDPOINT']}/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21"
        completed: dict[str, tuple[int, int]] = {}
        lock, stop = threading.Lock(), threading.Event()
        threads = [threading.Thread(target=load, args=(url, env["AZURE_OPENAI_KEY"], completed, lock, stop, i))
                   for i in range(THREADS)]
        started = time.time()
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        while len(completed) < 300 and time.monotonic() < deadline:
            time.sleep(0.02)
        server.kill()  # SIGKILL in the middle of the load: no flush, no clean-up
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        assert len(completed) >= 300, "the load did not get going"
        before_kill = dict(completed)

        server.start()  # the same LAPIS_HOME, port and store
        after = requests.post(url, json={"messages": [{"role": "user", "content": "after the crash"}]},
                              headers={"api-key": env["AZURE_OPENAI_KEY"]}, timeout=10)
        assert after.status_code == 200
        usage = after.json()["usage"]
        completed[after.headers["apim-request-id"]] = (usage["prompt_tokens"], usage["completion_tokens"])
        body = {"type": "Usage", "timeframe": "Custom", "dataset": {"aggregation": {
            "in": {"name": "InputTokens", "function": "Sum"}, "out": {"name": "OutputTokens", "function": "Sum"}}},
            "timePeriod": {"from": datetime.fromtimestamp(started - 60, timezone.utc).isoformat(),
                           "to": datetime.fromtimestamp(time.time() + 60, timezone.utc).isoformat()}}
        answer = server.arm("POST", f"/subscriptions/{DEFAULT_SUBSCRIPTION}/providers/Microsoft.CostManagement/query",
                            body, api_version=COST_API)
        assert answer.status_code == 200, answer.text
        (api_in, api_out, _currency), = answer.json()["properties"]["rows"]
    finally:
        server.stop()

    rows = asyncio.run(stored(database_url))
    missing = set(completed) - set(rows)
    assert not missing, f"{len(missing)} completed requests lost their usage"
    assert all(rows[rid] == tokens for rid, tokens in completed.items())  # what the client was told, once each
    in_flight = set(rows) - set(completed)
    assert len(in_flight) <= THREADS  # committed, answer cut off by the kill: at most one per client
    client_in = sum(p for p, _ in completed.values())
    client_out = sum(c for _, c in completed.values())
    assert api_in == client_in + sum(rows[rid][0] for rid in in_flight)
    assert api_out == client_out + sum(rows[rid][1] for rid in in_flight)
    assert len(before_kill) + 1 == len(completed)
    totals = asyncio.run(_totals(database_url, started))
    assert (totals.prompt_tokens, totals.completion_tokens, totals.requests) == (api_in, api_out, len(rows))


async def _totals(database_url: str, started: float):
    db = await open_database(database_url)
    try:
        return await usage_totals(db, f"/subscriptions/{DEFAULT_SUBSCRIPTION}",
                                  datetime.fromtimestamp(started - 60, timezone.utc), datetime.now(timezone.utc))
    finally:
        await db.close()
