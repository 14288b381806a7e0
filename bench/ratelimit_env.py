"""What bench/ratelimit_throughput.py needs around Lapis: clean-up of everything it creates
(child processes, a throwaway PostgreSQL database, the Redis keys of its accounts), Lapis
servers started without the demo, accounts and deployments made through ARM, one chat call,
the gate's counters, and a reader of the Redis limiter's own window.

PostgreSQL and Redis addresses come from LAPIS_BENCH_POSTGRES_ADMIN and LAPIS_BENCH_REDIS_URL
(defaults: 127.0.0.1:5432 as postgres with trust auth, 127.0.0.1:6379 database 0).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from common import API_VERSION, SUBSCRIPTION, Children, Lapis, start_lapis

MODEL = "gpt-4o-mini"
PG_ADMIN = os.environ.get("LAPIS_BENCH_POSTGRES_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("LAPIS_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
REDIS_PREFIX = "lapis:rl:"  # fixed in lapis.ratelimit.open_limiter

# -- clean-up ------------------------------------------------------------------


class Cleanup:
    """Everything to undo on the way out, whatever happens (finally, atexit, SIGTERM/SIGHUP/SIGINT)."""

    def __init__(self) -> None:
        self.children = Children()
        self.workdir = Path(tempfile.mkdtemp(prefix="lapis-rlbench-"))
        self.databases: list[str] = []
        self.redis_accounts: list[str] = []
        self.flushed_keys = 0
        self._done = False

    def run(self) -> None:
        if self._done:
            return
        self._done = True
        self.children.stop_all()  # servers first: they hold database connections and write Redis
        for name in self.databases:
            try:
                asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            except Exception as exc:  # noqa: BLE001 - report and go on cleaning
                print(f"  !! could not drop database {name}: {exc}", file=sys.stderr)
        if self.redis_accounts:
            try:
                self.flushed_keys = flush_redis(self.redis_accounts)
            except Exception as exc:  # noqa: BLE001
                print(f"  !! could not delete Redis keys: {exc}", file=sys.stderr)
        shutil.rmtree(self.workdir, ignore_errors=True)


async def _pg(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def create_database(cleanup: Cleanup) -> str:
    """A new empty PostgreSQL database; its SQLAlchemy-style URL for LAPIS_DATABASE_URL."""
    name = f"lapis_rlbench_{uuid.uuid4().hex[:12]}"
    cleanup.databases.append(name)  # before CREATE: a half-made database is dropped too
    asyncio.run(_pg(f'CREATE DATABASE "{name}"'))
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return f"{base}/{name}"


def flush_redis(account_ids: list[str]) -> int:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    deleted = 0
    try:
        for account_id in account_ids:
            keys = list(client.scan_iter(match=f"{REDIS_PREFIX}*{account_id}*", count=1000))
            if keys:
                deleted += client.delete(*keys)
    finally:
        client.close()
    return deleted


def redis_server_process() -> psutil.Process | None:
    """The redis-server process (to show its CPU); None when it cannot be found."""
    for p in psutil.process_iter(["name", "cmdline"]):
        try:
            if (p.info["name"] or "").startswith("redis-server") or \
                    any("redis-server" in part for part in (p.info["cmdline"] or [])[:1]):
                return p
        except psutil.Error:
            continue
    return None


# -- Lapis processes and ARM -----------------------------------------------------


def start_server(cleanup: Cleanup, label: str, timeout: float = 30.0, **extra_env: str) -> Lapis:
    """`lapis serve` (no demo) with its own LAPIS_HOME under the work dir; the limiter as `extra_env` says."""
    home = cleanup.workdir / label
    home.mkdir()
    return start_lapis(cleanup.children, home, demo=False, label=label, timeout=timeout, poll_s=0.02, **extra_env)


def limiter_stats(server: Lapis) -> dict[str, int]:
    """The gate's counters (GET /lapis/admin/stats): admitted, denied, storeFailures (decisions the
    Redis limiter made without Redis, per LAPIS_RATELIMIT_FAILURE; fail-open by default)."""
    status, doc = server.call("GET", "/lapis/admin/stats")
    if status != 200 or not isinstance(doc, dict):
        return {}
    return {k: int(v) for k, v in (doc.get("limits") or {}).items()}


def stats_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after.get(k, 0) - before.get(k, 0) for k in after}


@dataclass
class Account:
    path: str  # ARM path
    prefix: str  # data-plane path prefix, e.g. /accounts/<subdomain>
    key: str
    internal_id: str
    capacities: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def chat_path(self, deployment: str) -> str:
        return f"{self.prefix}/openai/deployments/{deployment}/chat/completions?api-version={API_VERSION}"


def setup_account(server: Lapis, location: str, deployments: list[tuple[str, str, int]]) -> Account:
    """Register the provider, create a group, an account with a custom subdomain and the deployments
    (name, sku, capacity) through ARM; a PUT refused for quota is retried with what is available."""
    sub = f"/subscriptions/{SUBSCRIPTION}"
    status, doc = server.call("POST", f"{sub}/providers/Microsoft.CognitiveServices/register", api_version="2021-04-01")
    if status != 200:
        raise RuntimeError(f"provider register: {status} {doc}")
    group = f"rg-rlbench-{uuid.uuid4().hex[:6]}"
    status, doc = server.call("PUT", f"{sub}/resourceGroups/{group}", {"location": location})
    if status not in (200, 201):
        raise RuntimeError(f"PUT resource group: {status} {doc}")
    name = f"rlbench{uuid.uuid4().hex[:10]}"
    path = f"{sub}/resourceGroups/{group}/providers/Microsoft.CognitiveServices/accounts/{name}"
    status, doc = server.call("PUT", path, {"kind": "OpenAI", "sku": {"name": "S0"}, "location": location,
                                            "properties": {"customSubDomainName": name}})
    if status not in (200, 201):
        raise RuntimeError(f"PUT account: {status} {doc}")
    endpoint = doc["properties"]["endpoint"].rstrip("/")
    internal_id = doc["properties"].get("internalId", "")
    base = f"http://127.0.0.1:{server.port}"
    if not endpoint.startswith(base):
        raise RuntimeError(f"account endpoint {endpoint} is not on {base}")
    status, keys = server.call("POST", f"{path}/listKeys")
    if status != 200:
        raise RuntimeError(f"listKeys: {status} {keys}")
    account = Account(path, endpoint[len(base):], keys["key1"], internal_id)
    for dep, sku, capacity in deployments:
        for _ in range(2):
            status, doc = server.call("PUT", f"{path}/deployments/{dep}", {
                "sku": {"name": sku, "capacity": capacity},
                "properties": {"model": {"format": "OpenAI", "name": MODEL}}})
            if status in (200, 201):
                account.capacities[dep] = int(doc["sku"]["capacity"])
                break
            code = (doc or {}).get("error", {}).get("code") if isinstance(doc, dict) else None
            m = re.search(r"available capacity (\d+)", json.dumps(doc))
            if code == "InsufficientQuota" and m and int(m.group(1)) > 0:
                account.notes.append(f"{dep}: {sku} capacity {capacity} refused (InsufficientQuota); "
                                     f"using the available {m.group(1)}")
                capacity = int(m.group(1))
                continue
            raise RuntimeError(f"PUT deployment {dep} ({sku}, capacity {capacity}): {status} {doc}")
        else:
            raise RuntimeError(f"PUT deployment {dep}: quota kept refusing")
    return account


def chat(server: Lapis, account: Account, deployment: str, body: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request("POST", account.chat_path(deployment), body=body.encode(),
                     headers={"Content-Type": "application/json", "api-key": account.key})
        resp = conn.getresponse()
        raw = resp.read()
        headers = {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()
    try:
        doc = json.loads(raw)
    except ValueError:
        doc = {"raw": raw[:300].decode(errors="replace")}
    return resp.status, doc, headers

class RedisWindowSampler:
    """Reads the limiter's own token window from Redis every 0.5 s (sum of the live buckets)."""

    def __init__(self, key: str, t0: float) -> None:
        self.key, self.t0 = key, t0
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        import redis

        client = redis.Redis.from_url(REDIS_URL, socket_timeout=2)
        try:
            while not self._stop.is_set():
                try:
                    sec, usec = client.time()
                    now_b = sec  # bucket of Redis's clock, as the Lua script computes it
                    buckets = client.hgetall(self.key)
                    live = sum(int(v) for b, v in buckets.items() if int(b) >= now_b - 60)
                    self.samples.append((time.monotonic() - self.t0, live))
                except Exception:  # noqa: BLE001 - informational only
                    pass
                self._stop.wait(0.5)
        finally:
            client.close()

