"""Nothing is lost across restarts or crashes, on SQLite and on PostgreSQL.

The crash test kills the server with SIGKILL in the middle of a burst of
management writes, restarts it on the same store, and checks that every
write the server acknowledged is there and that the store is consistent.
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import requests

from support.server import DEFAULT_SUBSCRIPTION, start_server

SUB = f"/subscriptions/{DEFAULT_SUBSCRIPTION}"
V = "2024-10-21"


def setup_account(server, group: str, name: str) -> str:
    server.arm("POST", f"{SUB}/providers/Microsoft.CognitiveServices/register")
    server.arm("PUT", f"{SUB}/resourceGroups/{group}", {"location": "eastus"})
    path = server.account_path(group, name)
    resp = server.arm("PUT", path, {"kind": "OpenAI", "sku": {"name": "S0"}, "location": "eastus",
                                    "properties": {"customSubDomainName": name}})
    assert resp.status_code == 201, resp.text
    return path


def deploy(server, path: str, name: str) -> requests.Response:
    return server.arm("PUT", f"{path}/deployments/{name}", {
        "sku": {"name": "Standard", "capacity": 10}, "properties": {"model": {"format": "OpenAI", "name": "gpt-4o-mini"}}})


def call(server, subdomain: str, key: str, deployment: str) -> int:
    return requests.post(f"{server.url}/accounts/{subdomain}/openai/deployments/{deployment}/chat/completions",
                         params={"api-version": V}, json={"messages": [{"role": "user", "content": "hi"}]},
                         headers={"api-key": key}, timeout=30).status_code


def test_restart_loses_nothing(tmp_path, database_url):
    home = tmp_path / "home"
    server = start_server(home, LAPIS_DATABASE_URL=database_url)
    try:
        path = setup_account(server, "rg", "persist1")
        assert deploy(server, path, "chat").status_code == 201
        keys = server.arm("POST", f"{path}/regenerateKey", {"keyName": "Key2"}).json()
        token = server.admin_token
        assert call(server, "persist1", keys["key2"], "chat") == 200
    finally:
        server.stop()
    again = start_server(home, port=server.port, LAPIS_DATABASE_URL=database_url)
    try:
        assert again.admin_token == token
        assert again.arm("POST", f"{path}/listKeys").json() == keys
        assert again.arm("GET", f"{path}/deployments/chat").json()["properties"]["model"]["name"] == "gpt-4o-mini"
        assert call(again, "persist1", keys["key2"], "chat") == 200
    finally:
        again.stop()


def test_kill_during_a_burst_of_writes_leaves_a_consistent_store(tmp_path, database_url):
    home = tmp_path / "home"
    server = start_server(home, LAPIS_DATABASE_URL=database_url)
    path = setup_account(server, "rg", "crash1")
    acknowledged: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def writer(i: int) -> None:
        if stop.is_set():
            return
        name = f"dep{i:04d}"
        try:
            resp = deploy(server, path, name)
        except requests.RequestException:
            return
        if resp.status_code in (200, 201):
            with lock:
                acknowledged.append(name)

    def killer() -> None:
        while len(acknowledged) < 12:
            threading.Event().wait(0.005)
        server.kill()
        stop.set()

    watcher = threading.Thread(target=killer)
    watcher.start()
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(writer, range(32)))  # 32 deployments at most per account
    watcher.join(timeout=30)
    assert server.proc.poll() is not None, "the server should have been killed mid-burst"
    assert len(acknowledged) >= 12

    if database_url.startswith("sqlite:///"):
        conn = sqlite3.connect(database_url[len("sqlite:///"):])
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        conn.close()

    again = start_server(home, port=server.port, LAPIS_DATABASE_URL=database_url)
    try:
        listed = again.arm("GET", f"{path}/deployments").json()["value"]
        names = {d["name"] for d in listed}
        assert set(acknowledged) <= names, "an acknowledged write was lost"
        assert all(d["properties"]["provisioningState"] == "Succeeded" for d in listed)
        key = again.arm("POST", f"{path}/listKeys").json()["key1"]
        for name in acknowledged[:3]:
            assert call(again, "crash1", key, name) == 200
        assert deploy(again, path, f"after{uuid.uuid4().hex[:6]}").status_code in (201, 400)
    finally:
        again.stop()
