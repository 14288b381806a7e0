"""Paced, open-loop chat load for bench/ratelimit_throughput.py, in its own process.

    python bench/ratelimit_load.py CONFIG_JSON OUTPUT_JSON

CONFIG_JSON: {"urls": [..] (client i uses urls[i % len]), "bodies": [str, ..] (request k
sends bodies[k % len]), "headers": {..}, "clients": 64, "rate": total requests/s,
"duration": s, "timeout": s}.

Arrivals are evenly spaced at `rate` over all clients (request k is due at k / rate and
belongs to client k % clients), so the demand does not depend on how fast answers come
back: a 429 does not make its client send sooner, a slow 200 does not make it send later
(unless the client is still busy with its previous request, which is then counted as
late). Every client has its own aiohttp.ClientSession with one keep-alive connection.
Nothing is retried.

OUTPUT_JSON gets {"t0_unix": .., "events": [[t_send, t_recv, status, client, body,
prompt_tokens, completion_tokens, total_tokens, retry_after_ms, remaining_tokens], ..],
"late": n, "late_max_s": s, "errors": {..}}; times are seconds after the first due time
(time.monotonic based); token fields are -1 where the answer had none.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import aiohttp


async def run(cfg: dict) -> dict:
    urls: list[str] = cfg["urls"]
    bodies = [b.encode() for b in cfg["bodies"]]
    headers = {**cfg["headers"], "Content-Type": "application/json"}
    clients = int(cfg["clients"])
    rate = float(cfg["rate"])
    duration = float(cfg["duration"])
    timeout = aiohttp.ClientTimeout(total=float(cfg.get("timeout", 30)))
    events: list[list] = []
    errors: dict[str, int] = {}
    late = 0
    late_max = 0.0
    total = int(duration * rate)
    clock = time.monotonic
    start = clock() + 0.5  # every client is waiting on its first due time by then
    t0_unix = time.time() + (start - clock())

    async def client(i: int) -> None:
        nonlocal late, late_max
        connector = aiohttp.TCPConnector(limit=1)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            url = urls[i % len(urls)]
            for k in range(i, total, clients):
                due = start + k / rate
                delay = due - clock()
                if delay > 0:
                    await asyncio.sleep(delay)
                elif delay < -0.05:
                    late += 1
                    late_max = max(late_max, -delay)
                body_index = k % len(bodies)
                t_send = clock()
                try:
                    async with session.post(url, data=bodies[body_index], headers=headers) as resp:
                        raw = await resp.read()
                        status = resp.status
                        retry_ms = int(resp.headers.get("retry-after-ms", "-1") or -1)
                        remaining = int(resp.headers.get("x-ratelimit-remaining-tokens", "-1") or -1)
                except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as exc:
                    name = type(exc).__name__
                    errors[name] = errors.get(name, 0) + 1
                    continue
                t_recv = clock()
                prompt = completion = used = -1
                if status == 200:
                    try:
                        usage = json.loads(raw)["usage"]
                        prompt, completion, used = (usage["prompt_tokens"], usage["completion_tokens"],
                                                    usage["total_tokens"])
                    except (ValueError, KeyError, TypeError):
                        errors["bad 200 body"] = errors.get("bad 200 body", 0) + 1
                events.append([round(t_send - start, 6), round(t_recv - start, 6), status, i, body_index,
                               prompt, completion, used, retry_ms, remaining])

    await asyncio.gather(*(client(i) for i in range(clients)))
    events.sort(key=lambda e: e[0])
    return {"t0_unix": t0_unix, "events": events, "late": late, "late_max_s": late_max, "errors": errors,
            "planned": total}


def main() -> int:
    cfg = json.loads(sys.argv[1])
    result = asyncio.run(run(cfg))
    with open(sys.argv[2], "w") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
