"""Two Lapis processes sharing one PostgreSQL and one Redis: a deployment's
limit holds across both, and a change made on one is served by the other at
once. (A gateway whose limiter reads local memory lets N replicas grant N
times the limit; this test would catch that.)"""

from __future__ import annotations

import math
import os
import threading
import time
import uuid

import pytest
import requests

from support.databases import create_database, drop_database
from support.server import DEFAULT_SUBSCRIPTION, start_server

V = "2024-10-21"
REDIS_URL = os.environ.get("LAPIS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture()
def replicas(tmp_path):
    name, url = create_database()
    env = {"LAPIS_DATABASE_URL": url, "LAPIS_REDIS_URL": REDIS_URL, "LAPIS_RATELIMIT_FAILURE": "closed",
           "LAPIS_KEK_FILE": str(tmp_path / "kek")}  # replicas of one database share its key-encryption key
    first = start_server(tmp_path / "a", **env)
    second = start_server(tmp_path / "b", **env)
    try:
        yield first, second
    finally:
        first.stop()
        second.stop()
        drop_database(name)


def setup(server, capacity: int) -> tuple[str, str, str]:
    server.arm("POST", f"/subscriptions/{DEFAULT_SUBSCRIPTION}/providers/Microsoft.CognitiveServices/register")
    server.arm("PUT", f"/subscriptions/{DEFAULT_SUBSCRIPTION}/resourceGroups/rg", {"location": "eastus"})
    sub = f"rep{uuid.uuid4().hex[:8]}"
    path = server.account_path("rg", sub)
    assert server.arm("PUT", path, {"kind": "OpenAI", "sku": {"name": "S0"}, "location": "eastus",
                                    "properties": {"customSubDomainName": sub}}).status_code == 201
    server.arm("PUT", f"{path}/deployments/chat", {
        "sku": {"name": "Standard", "capacity": capacity},
        "properties": {"model": {"format": "OpenAI", "name": "gpt-4o-mini"}}})
    return sub, server.arm("POST", f"{path}/listKeys").json()["key1"], path


def post(server, sub: str, key: str, body: dict) -> requests.Response:
    return requests.post(f"{server.url}/accounts/{sub}/openai/deployments/chat/chat/completions",
                         params={"api-version": V}, json=body, headers={"api-key": key}, timeout=30)


def test_a_change_on_one_replica_is_served_by_the_other(replicas):
    first, second = replicas
    sub, key, path = setup(first, 5)
    assert post(second, sub, key, {"messages": [{"role": "user", "content": "hi"}]}).status_code == 200
    new = first.arm("POST", f"{path}/regenerateKey", {"keyName": "Key1"}).json()["key1"]
    time.sleep(0.2)  # the NOTIFY crosses over
    assert post(second, sub, key, {"messages": [{"role": "user", "content": "hi"}]}).status_code == 401
    assert post(second, sub, new, {"messages": [{"role": "user", "content": "hi"}]}).status_code == 200
    first.arm("PUT", f"{path}/deployments/chat", {"sku": {"name": "Standard", "capacity": 7},
                                                  "properties": {"model": {"format": "OpenAI", "name": "gpt-4o-mini"}}})
    time.sleep(0.2)
    resp = post(second, sub, new, {"messages": [{"role": "user", "content": "hi"}]})
    assert resp.headers["x-ratelimit-limit-tokens"] == "7000"


def test_two_replicas_share_one_limit(replicas):
    first, second = replicas
    limit = 3000
    sub, key, _ = setup(first, limit // 1000)
    prompt = "hello " * 400  # 2,400 characters: estimated at 600 tokens, ~400 real
    body = {"messages": [{"role": "user", "content": prompt}], "max_tokens": 1}
    estimate = math.ceil(len(prompt) / 4) + 1
    charged: list[int] = []
    statuses: dict[str, list[int]] = {first.url: [], second.url: []}
    lock = threading.Lock()
    deadline = time.monotonic() + 30  # well inside one 60-second window

    def hammer(server) -> None:
        while time.monotonic() < deadline:
            resp = post(server, sub, key, body)
            with lock:
                statuses[server.url].append(resp.status_code)
                if resp.status_code == 200:
                    charged.append(min(estimate, resp.json()["usage"]["total_tokens"]))
            if resp.status_code == 429:
                time.sleep(0.05)

    threads = [threading.Thread(target=hammer, args=(s,)) for s in (first, second) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # both replicas were held back, and between them they never granted more than the one limit
    assert all(429 in codes for codes in statuses.values()), statuses
    assert any(200 in codes for codes in statuses.values()), statuses
    assert limit - 2 * estimate < sum(charged) <= limit + estimate, (charged, statuses)
