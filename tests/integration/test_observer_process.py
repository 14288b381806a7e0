"""The observer process (lapis.observe.observer) of a real server: a scrape
counts every answer sent before it; a killed observer is replaced and the
usage of every request, before, during and after, is stored once; a clean
stop leaves no observer and no spool; LAPIS_OBSERVER=inline runs without
one; an unknown value is refused at start."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from lapis.store.database import open_database
from support.server import server_env, start_server, wait_gone


def scrape(server) -> dict[str, float]:  # noqa: ANN001
    """Each sample's value, summed over its labels."""
    out: dict[str, float] = {}
    text = requests.get(f"{server.url}/metrics", timeout=30).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name] = out.get(sample.name, 0.0) + sample.value
    return out


def chat(server, env: dict[str, str], n: int) -> int:  # noqa: ANN001
    """n chat calls; the prompt tokens the client was told of."""
    url = f"{env['AZURE_OPENAI_ENDPOINT']}/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21"
    session = requests.Session()
    tokens = 0
    for i in range(n):
        answer = session.post(url, json={"messages": [{"role": "user", "content": f"question {i}"}], "max_tokens": 4},
                              headers={"api-key": env["AZURE_OPENAI_KEY"]}, timeout=10)
        assert answer.status_code == 200, answer.text
        tokens += answer.json()["usage"]["prompt_tokens"]
    return tokens


async def stored(server) -> tuple[int, int]:  # noqa: ANN001
    """(requests, prompt tokens) in the store's usage."""
    db = await open_database(server.env.get("LAPIS_DATABASE_URL")
                             or f"sqlite:///{server.home / 'data' / 'lapis.sqlite3'}")
    try:
        row = await db.fetchrow("SELECT COALESCE(SUM(requests), 0) AS r, COALESCE(SUM(prompt_tokens), 0) AS p "
                                "FROM usage_minutes")
    finally:
        await db.close()
    return int(row["r"]), int(row["p"])


def test_a_scrape_counts_every_answer_sent_before_it(tmp_path):
    server = start_server(tmp_path / "home", demo=True)
    try:
        env = server.demo_env()
        for round_ in range(1, 4):
            chat(server, env, 7)
            seen = scrape(server)  # no waiting: the observer reads the spool before it answers
            assert seen["AzureOpenAIRequests_total"] == 7 * round_
        assert len(server.observers()) == 1
        assert seen["lapis_observer_up"] == 1 and seen["lapis_spool_dropped_total"] == 0
    finally:
        server.stop()


def test_a_killed_observer_is_replaced_and_no_usage_is_lost(tmp_path):
    server = start_server(tmp_path / "home", demo=True)
    try:
        env = server.demo_env()
        told = chat(server, env, 20)
        (observer,) = server.observers()
        os.kill(observer, signal.SIGKILL)
        told += chat(server, env, 20)  # served while no observer runs: the records wait in the spool
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            seen = scrape(server)
            if seen.get("lapis_observer_restarts_total") == 1 and seen.get("lapis_observer_up") == 1:
                break
            time.sleep(0.1)
        assert seen["lapis_observer_restarts_total"] == 1 and seen["lapis_observer_up"] == 1
        assert server.observers() and observer not in server.observers()
        told += chat(server, env, 5)
    finally:
        server.stop()
    assert asyncio.run(stored(server)) == (45, told)  # every request once: none lost, none twice
    assert list((server.home / "spool").glob("spool-*")) == []


def test_a_clean_stop_leaves_no_observer_and_no_spool(tmp_path):
    server = start_server(tmp_path / "home", demo=True)
    env = server.demo_env()
    chat(server, env, 3)
    observers = server.observers()
    assert observers
    server.stop()
    assert server.proc.returncode == 0
    assert wait_gone(observers, timeout=5)
    assert list((server.home / "spool").glob("*")) == []
    assert asyncio.run(stored(server))[0] == 3


def test_inline_mode_runs_without_an_observer(tmp_path):
    server = start_server(tmp_path / "home", demo=True, LAPIS_OBSERVER="inline")
    try:
        chat(server, server.demo_env(), 4)
        assert server.observers() == []
        seen = scrape(server)
        assert seen["AzureOpenAIRequests_total"] == 4
        assert "lapis_observer_up" not in seen
    finally:
        server.stop()


def test_an_unknown_observer_mode_is_refused_at_start(tmp_path):
    env = server_env(tmp_path / "home", LAPIS_OBSERVER="sidecar")
    done = subprocess.run([sys.executable, "-m", "lapis", "serve", "--port", "0"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode != 0
    assert "LAPIS_OBSERVER must be one of process, inline, not 'sidecar'" in done.stderr


def listening_ports(pid: int) -> list[int]:
    """The TCP ports process `pid` listens on (its sockets' inodes, found in /proc/net/tcp)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd)
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = []
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
            ports.append(int(fields[1].split(":")[1], 16))
    return ports


def test_the_observer_answers_only_its_server(tmp_path):
    server = start_server(tmp_path / "home", demo=True)
    try:
        assert scrape(server)["lapis_observer_up"] == 1  # it listens once it is up
        (observer,) = server.observers()
        (port,) = listening_ports(observer)
        assert requests.post(f"http://127.0.0.1:{port}/close", timeout=5).status_code == 403  # no token
        assert requests.get(f"http://127.0.0.1:{port}/state", timeout=5).status_code == 403
        assert server.observers() == [observer]  # it keeps running
        assert scrape(server)["lapis_observer_up"] == 1
    finally:
        server.stop()
