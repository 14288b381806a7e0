"""Usage survives kill -9: a real server under load from several clients,
half of them streaming, is killed without warning, restarted on the same
LAPIS_HOME and store, and then the metered usage must hold every completed
request exactly once. Killed alone, the server leaves its observer process
(lapis.observe.observer), which reads the dead server's record spool to its
end, commits and exits; killed together with its observer, the spool is
replayed by the next start's observer.

What exactness can mean at a crash: every request whose answer a client got
in full (a stream: up to `data: [DONE]`) is stored with the tokens the client
was told (its journal line was written before that last byte), none twice
(each segment's mark says which lines are stored, so replay adds only the
others), and the only others are requests that were in flight at the kill,
whose lines were written but whose answers never arrived: at most one per
client thread. Their usage happened, so it is kept. Usage is stored as
per-minute sums, so this is checked on sums per deployment: the stored
requests and tokens are the clients' plus at most THREADS requests, each of
no more tokens than such a request can use.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import datetime, timezone

import requests
from prometheus_client.parser import text_string_to_metric_families

import pytest

from lapis.store.database import open_database
from lapis.usage import usage_totals
from support.server import DEFAULT_SUBSCRIPTION, start_server, wait_gone

THREADS = 8
COST_API = "2023-03-01"


def ask(session: requests.Session, url: str, key: str, body: dict, streaming: bool) -> tuple[str, tuple] | None:
    """(request id, (prompt, completion)) of an answer received in full, else None."""
    if not streaming:
        answer = session.post(url, json=body, headers={"api-key": key}, timeout=10)
        if answer.status_code != 200:
            return None
        usage = answer.json()["usage"]
        return answer.headers["apim-request-id"], (usage["prompt_tokens"], usage["completion_tokens"])
    body = {**body, "stream": True, "stream_options": {"include_usage": True}}
    with session.post(url, json=body, headers={"api-key": key}, timeout=10, stream=True) as answer:
        if answer.status_code != 200:
            return None
        usage = None
        for line in answer.iter_lines():
            if line == b"data: [DONE]":
                return answer.headers["apim-request-id"], (usage["prompt_tokens"], usage["completion_tokens"])
            if line.startswith(b"data: "):
                usage = json.loads(line[6:]).get("usage") or usage
    return None  # cut before [DONE]


def load(url: str, key: str, completed: dict, streams: set, lock: threading.Lock, stop: threading.Event,
         worker: int) -> None:
    session = requests.Session()
    streaming = worker % 2 == 1
    n = 0
    while not stop.is_set():
        body = {"messages": [{"role": "user", "content": f"worker {worker} asks question {n}"}], "max_tokens": 12}
        n += 1
        try:
            done = ask(session, url, key, body, streaming)
        except (requests.RequestException, ValueError):
            time.sleep(0.01)
            continue
        if done is not None:
            with lock:
                completed[done[0]] = done[1]
                if streaming:
                    streams.add(done[0])


async def stored(database_url: str) -> dict[str, tuple[int, int, int]]:
    """(requests, prompt tokens, completion tokens) per deployment."""
    db = await open_database(database_url)
    try:
        rows = await db.fetch("SELECT deployment, SUM(requests) AS requests, SUM(prompt_tokens) AS prompt, "
                              "SUM(completion_tokens) AS completion FROM usage_minutes GROUP BY deployment")
    finally:
        await db.close()
    return {r["deployment"]: (int(r["requests"]), int(r["prompt"]), int(r["completion"])) for r in rows}


def written(server) -> float:
    """Rows the running process's writer has committed (replayed ones are counted apart)."""
    families = {f.name: f for f in text_string_to_metric_families(
        requests.get(f"{server.url}/metrics", timeout=10).text)}
    return families["lapis_usage_records_written"].samples[0].value


@pytest.mark.parametrize("observer_too", [False, True], ids=["server", "server-and-observer"])
def test_usage_is_exact_after_kill_9(tmp_path, observer_too):
    server = start_server(tmp_path / "home", demo=True, LAPIS_RATELIMIT="off")
    database_url = server.env.get("LAPIS_DATABASE_URL") or f"sqlite:///{server.home / 'data' / 'lapis.sqlite3'}"
    try:
        env = server.demo_env()
        url = f"{env['AZURE_OPENAI_ENDPOINT']}/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21"
        completed: dict[str, tuple[int, int]] = {}
        streams: set[str] = set()
        lock, stop = threading.Lock(), threading.Event()
        threads = [threading.Thread(target=load, args=(url, env["AZURE_OPENAI_KEY"], completed, streams, lock, stop,
                                                       i)) for i in range(THREADS)]
        started = time.time()
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        while len(completed) < 300 and time.monotonic() < deadline:
            time.sleep(0.02)
        orphans = server.kill(observer=observer_too)  # SIGKILL in the middle of the load: no flush, no clean-up
        stop.set()
        if not observer_too:
            assert orphans, "the server had no observer process"
            assert wait_gone(orphans), "the dead server's observer did not finish and exit"
        for thread in threads:
            thread.join(timeout=30)
        assert len(completed) >= 300, "the load did not get going"
        assert streams, "no stream completed before the kill"
        before_kill = dict(completed)

        server.start()  # the same LAPIS_HOME, port and store: a spool left behind is replayed
        session = requests.Session()
        for streaming in (False, True):
            done = ask(session, url, env["AZURE_OPENAI_KEY"], {"messages": [{"role": "user", "content": "after"}]},
                       streaming)
            assert done is not None
            completed[done[0]] = done[1]
        deadline = time.monotonic() + 30  # nobody waits for the commit now: wait for the two rows
        while written(server) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        body = {"type": "Usage", "timeframe": "Custom", "dataset": {"aggregation": {
            "in": {"name": "InputTokens", "function": "Sum"}, "out": {"name": "OutputTokens", "function": "Sum"}}},
            "timePeriod": {"from": datetime.fromtimestamp(started - 60, timezone.utc).isoformat(),
                           "to": datetime.fromtimestamp(time.time() + 60, timezone.utc).isoformat()}}
        answer = server.arm("POST", f"/subscriptions/{DEFAULT_SUBSCRIPTION}/providers/Microsoft.CostManagement/query",
                            body, api_version=COST_API)
        assert answer.status_code == 200, answer.text
        (api_in, api_out, _currency), = answer.json()["properties"]["rows"]
        families = {f.name: f for f in text_string_to_metric_families(
            requests.get(f"{server.url}/metrics", timeout=10).text)}
    finally:
        server.stop()

    replayed = families["lapis_usage_replayed"].samples[0].value
    assert replayed > 0 if observer_too else replayed == 0  # the dead server's spool: replayed, or its observer did
    assert families["lapis_usage_replay_torn"].samples[0].value == 0
    assert list((server.home / "spool").glob("spool-*")) == []  # a clean stop commits and deletes its segments
    sums = asyncio.run(stored(database_url))
    assert set(sums) == {"gpt-4o-mini"}
    requests_stored, prompt_stored, completion_stored = sums["gpt-4o-mini"]
    client_in = sum(p for p, _ in completed.values())
    client_out = sum(c for _, c in completed.values())
    in_flight = requests_stored - len(completed)
    assert 0 <= in_flight <= THREADS, in_flight  # journalled, answer cut off by the kill: at most one per client
    extra_in, extra_out = prompt_stored - client_in, completion_stored - client_out
    prompts = [p for p, _ in completed.values()]
    assert in_flight * min(prompts) <= extra_in <= in_flight * max(prompts)  # nothing lost, nothing twice
    assert 0 <= extra_out <= in_flight * 12  # max_tokens
    assert (api_in, api_out) == (prompt_stored, completion_stored)
    assert len(before_kill) + 2 == len(completed)
    totals = asyncio.run(_totals(database_url, started))
    assert (totals.prompt_tokens, totals.completion_tokens, totals.requests) == (api_in, api_out, requests_stored)


async def _totals(database_url: str, started: float):
    db = await open_database(database_url)
    try:
        return await usage_totals(db, f"/subscriptions/{DEFAULT_SUBSCRIPTION}",
                                  datetime.fromtimestamp(started - 60, timezone.utc), datetime.now(timezone.utc))
    finally:
        await db.close()
