"""Many long streams held open at once, for bench/gateway_throughput.py, in its own process.

    python bench/stream_load.py CONFIG_JSON

CONFIG_JSON: {"url", "body" (str, with "stream": true), "headers" {..}, "streams" (how
many), "ramp" (s over which they are started, evenly), "timeout" (s for one stream)}.

Every stream is its own connection (aiohttp, no connection limit). A stream counts as
*relaying* from its first body byte until its end: while Lapis waits for the engine (or
for a free pooled connection to it) the client has sent its request and got nothing.
A sampler notes every 0.1 s how many streams are open (request sent, not finished) and
relaying; the peak of the second is the number of streams relayed at once. Events are
counted by the SSE blank line that ends each one; a stream is whole when it answered 200
and its last event is `data: [DONE]`.

Prints progress lines `T open relaying done` (one a sample) and then one JSON line:
streams, ok, errors {kind: n}, statuses, events min/median/max, duration and
first-byte percentiles (s), peak_open, peak_relaying, all_relaying_s (how long every
stream was relaying at once), events_per_s, timeline [[t, open, relaying, done], ..].
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
    n, ramp = int(cfg["streams"]), float(cfg.get("ramp", 1.0))
    timeout = aiohttp.ClientTimeout(total=float(cfg.get("timeout", 120)))
    clock = time.perf_counter
    state = {"open": 0, "relaying": 0, "done": 0, "events": 0}
    errors: dict[str, int] = {}
    statuses: dict[str, int] = {}
    events_per: list[int] = []
    durations: list[float] = []
    first_bytes: list[float] = []
    timeline: list[list[float]] = []
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = clock()

        async def one(i: int) -> None:
            await asyncio.sleep(ramp * i / n)
            t0 = clock()
            state["open"] += 1
            relaying = whole = False
            events, last = 0, b""
            tail = b""
            try:
                async with session.post(url, data=body, headers=headers) as resp:
                    statuses[str(resp.status)] = statuses.get(str(resp.status), 0) + 1
                    async for data in resp.content.iter_any():
                        if not relaying:
                            relaying = True
                            state["relaying"] += 1
                            first_bytes.append(clock() - t0)
                        found = (last + data).count(b"\n\n")
                        events += found
                        state["events"] += found
                        last = data[-1:]
                        tail = (tail + data)[-32:]
                    whole = resp.status == 200 and tail.rstrip().endswith(b"data: [DONE]")
                    if resp.status != 200:
                        errors[f"HTTP {resp.status}"] = errors.get(f"HTTP {resp.status}", 0) + 1
                    elif not whole:
                        errors["no [DONE]"] = errors.get("no [DONE]", 0) + 1
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            finally:
                state["open"] -= 1
                if relaying:
                    state["relaying"] -= 1
                state["done"] += 1
            if whole:
                events_per.append(events)
                durations.append(clock() - t0)

        async def sample() -> None:
            while state["done"] < n:
                row = [round(clock() - start, 2), state["open"], state["relaying"], state["done"]]
                timeline.append(row)
                print(*row, flush=True)
                await asyncio.sleep(0.1)

        sampler = asyncio.create_task(sample())
        await asyncio.gather(*(one(i) for i in range(n)))
        wall = clock() - start
        sampler.cancel()
    peak_relaying = max((r[2] for r in timeline), default=0)
    all_relaying = 0.1 * sum(1 for r in timeline if r[2] >= n)
    return {"streams": n, "ok": len(events_per), "errors": errors, "statuses": statuses,
            "events_min": min(events_per, default=0), "events_median": statistics.median(events_per) if events_per else 0,
            "events_max": max(events_per, default=0), "duration_p50_s": percentile(durations, 50),
            "duration_p99_s": percentile(durations, 99), "first_byte_p50_s": percentile(first_bytes, 50),
            "first_byte_p99_s": percentile(first_bytes, 99), "peak_open": max((r[1] for r in timeline), default=0),
            "peak_relaying": peak_relaying, "all_relaying_s": round(all_relaying, 1), "wall_s": wall,
            "events_per_s": state["events"] / wall if wall else 0.0, "timeline": timeline}


if __name__ == "__main__":
    child.main(run)
