"""Fallback load generator for bench/*.py when `wrk` is not installed.

Runs in its own process (started by the benchmark) so that it does not share the
server's event loop; on a 2-core machine it still competes with the server for CPU,
and it is much slower per request than wrk, so absolute req/s are lower than with
wrk. It is run identically against every target, so the ratio stays meaningful.

    python bench/pyload.py CONFIG_JSON

CONFIG_JSON: {"url", "body" (str), "headers" {..}, "connections", "duration", "timeout"}.
Prints one JSON line: requests, seconds, statuses {code: count}, socket_errors,
latency percentiles in seconds.
"""

from __future__ import annotations

import asyncio
import sys
import time

import aiohttp

import child  # bench/ is on sys.path: these run as scripts from it


async def run(cfg: dict) -> dict:
    url = cfg["url"]
    body = cfg["body"].encode()
    headers = cfg["headers"]
    connections = int(cfg["connections"])
    duration = float(cfg["duration"])
    timeout = aiohttp.ClientTimeout(total=float(cfg.get("timeout", 5)))
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    socket_errors = 0
    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = time.perf_counter()
        deadline = start + duration

        async def worker() -> None:
            nonlocal socket_errors
            clock = time.perf_counter
            while clock() < deadline:
                t0 = clock()
                try:
                    async with session.post(url, data=body, headers=headers) as resp:
                        await resp.read()
                        key = str(resp.status)
                except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                    socket_errors += 1
                    continue
                latencies.append(clock() - t0)
                statuses[key] = statuses.get(key, 0) + 1

        await asyncio.gather(*(worker() for _ in range(connections)))
        seconds = time.perf_counter() - start
    latencies.sort()

    def pct(p: float) -> float | None:
        if not latencies:
            return None
        return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))]

    return {"requests": len(latencies) + socket_errors, "seconds": seconds, "statuses": statuses,
            "socket_errors": socket_errors, "p50": pct(50), "p75": pct(75), "p90": pct(90), "p99": pct(99)}


if __name__ == "__main__":
    child.main(run)
