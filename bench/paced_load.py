"""Open-loop load at a fixed rate, for latency at a given throughput (bench/gateway_throughput.py).

    python bench/paced_load.py CONFIG_JSON

CONFIG_JSON: {"url", "body" (str), "headers" {..}, "rate" (requests/s), "duration" (s,
measured), "warmup" (s, sent but not counted), "timeout" (s)}.

wrk2 is not packaged for Debian, so this stands in for `wrk2 -R`: request k is due at
k / rate and is sent then as its own task, whatever happened to the earlier ones (a slow
answer does not delay the next send, so the rate holds). Keep-alive connections are
pooled by one aiohttp.ClientSession. Latency is timed from the moment the request is
handed to the client until its whole answer is read; how late each send was against its
due time (the event loop's own jitter on a busy machine) is printed apart, so it cannot
blur the latency. At 100 requests/s against a server that answers in milliseconds
nothing queues, so wrk2's coordinated-omission correction would change nothing here.

Prints one JSON line: requests, statuses {code: n}, errors {kind: n}, latency
percentiles p50 p90 p99 and mean in ms, late_p50_ms, late_p99_ms, late_max_ms.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time

import aiohttp

import child  # bench/ is on sys.path: these run as scripts from it


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def run(cfg: dict) -> dict:
    url, body, headers = cfg["url"], cfg["body"].encode(), cfg["headers"]
    rate, duration, warmup = float(cfg["rate"]), float(cfg["duration"]), float(cfg.get("warmup", 1.0))
    timeout = aiohttp.ClientTimeout(total=float(cfg.get("timeout", 10)))
    skip = int(warmup * rate)
    total = skip + int(duration * rate)
    latencies: list[float] = []
    late: list[float] = []
    statuses: dict[str, int] = {}
    errors: dict[str, int] = {}
    clock = time.perf_counter
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(k: int) -> None:
            t0 = clock()
            try:
                async with session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    status = str(resp.status)
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                if k >= skip:
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                return
            if k >= skip:
                latencies.append(clock() - t0)
                statuses[status] = statuses.get(status, 0) + 1

        tasks = []
        start = clock() + 0.1
        for k in range(total):
            due = start + k / rate
            delay = due - clock()
            if delay > 0:
                await asyncio.sleep(delay)
            if k >= skip:
                late.append(max(0.0, clock() - due))
            tasks.append(asyncio.create_task(one(k)))
        await asyncio.gather(*tasks)

    def ms(v: float | None) -> float | None:
        return None if v is None else v * 1000

    return {"requests": len(latencies) + sum(errors.values()), "statuses": statuses, "errors": errors,
            "p50_ms": ms(percentile(latencies, 50)), "p90_ms": ms(percentile(latencies, 90)),
            "p99_ms": ms(percentile(latencies, 99)), "mean_ms": ms(statistics.fmean(latencies)) if latencies else None,
            "late_p50_ms": ms(percentile(late, 50)), "late_p99_ms": ms(percentile(late, 99)),
            "late_max_ms": ms(max(late)) if late else None}


if __name__ == "__main__":
    child.main(run)
