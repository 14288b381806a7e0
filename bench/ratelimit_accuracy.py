"""Part 1 of bench/ratelimit_throughput.py: how much of a deployment's TPM the limiter grants
under twice the demand, for one process (in-process limiter) and two replicas sharing Redis.

The load is bench/ratelimit_load.py (open-loop, every 200's usage recorded); what is judged is
the net grant, min(admission estimate, usage.total_tokens) per 200, averaged over whole 61 s
periods (see PERIOD_S), and the worst 60 s window of the run. bench/README.md explains the body,
the capacity and the 61 s.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from common import BENCH, Lapis, cpu_seconds
from ratelimit_env import (
    REDIS_PREFIX, REDIS_URL, Account, Cleanup, RedisWindowSampler, chat, create_database, limiter_stats,
    setup_account, start_server, stats_delta,
)

TARGET_FRACTION = (0.97, 1.00)
# The limiter counts a charge for 61 one-second buckets (lapis.ratelimit.base: window + 1, so that
# no real 60 s interval ever holds more than the limit). Under constant over-demand what it grants
# therefore repeats every 61 s: the window fills, then each bucket that leaves is granted again.
# Averages are taken over whole 61 s periods; a fixed 60 s minute lands on a different phase of the
# cycle each time and reads up to ~3% high or low.
PERIOD_S = 61


# -- part 1: granted fraction ------------------------------------------------------

DOCUMENT = (
    "Store policy for the hardware shop. Returns are accepted within thirty days when the item is unused and "
    "comes back in its original packaging with the receipt. Power tools that were used may be returned only "
    "when they are faulty; a technician checks them first and the customer is told the outcome within five "
    "working days. Gift cards cannot be exchanged for cash. Orders placed before two in the afternoon leave "
    "the warehouse on the same day; larger items such as ladders, workbenches and garden sheds are delivered "
    "by a freight partner who calls the customer to agree on a time slot. Staff must never promise a delivery "
    "date that the order system does not show, and must never quote a price that is not on the shelf label "
    "or in the catalogue. Cordless drills come from three brands; each has a two year warranty which can be "
    "extended to five years when the tool is registered online within a month of purchase. Batteries are "
    "covered for one year. Paint can be mixed to any colour code while the customer waits, usually in under "
    "ten minutes, and mixed paint cannot be returned. Timber is cut to size for free for the first five cuts "
    "and for a small fee after that. Keys are cut at the service desk. Customers who need advice on a larger "
    "project, such as a kitchen or a bathroom, can book a free consultation with a project advisor, in the "
    "shop or by video call, on weekdays between nine and five. "
)


def accuracy_bodies(variants: int, doc_repeats: int, max_tokens: int) -> list[str]:
    """`variants` chat bodies with a long prompt (so that what a request really uses is well above the
    request window's share of the TPM) and different questions (so completions differ)."""
    bodies = []
    for i in range(variants):
        body = {
            "messages": [
                {"role": "system", "content": "You answer questions about the shop policy below, briefly.\n\n"
                                              + DOCUMENT * doc_repeats},
                {"role": "user", "content": f"Question {i + 1}: a customer asks about item number {1000 + 37 * i}."
                                            " What applies to it, in one paragraph?"},
            ],
            "max_tokens": max_tokens,
            "temperature": 0.7,
        }
        bodies.append(json.dumps(body, separators=(",", ":")))
    return bodies


def estimate(body: str) -> int:
    """Lapis's admission cost for a chat body (lapis.dataplane.admission.chat_cost, string contents)."""
    doc = json.loads(body)
    chars = sum(len(m.get("content") or "") for m in doc["messages"])
    budget = doc.get("max_completion_tokens") or doc.get("max_tokens")
    return math.ceil(chars / 4) + budget * (doc.get("n") or 1)


@dataclass
class Accuracy:
    label: str
    limit: int  # tokens per 60 s
    request_limit: int  # requests per 10 s
    rate: float  # requests/s offered
    warmup: float
    minutes: int
    estimates: list[int]
    probe_usage: list[int]
    events: list[list] = field(default_factory=list)
    late: int = 0
    late_max: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)
    planned: int = 0
    server_cpu: dict[str, float] = field(default_factory=dict)
    loadgen_cpu_pct: float = 0.0
    wall: float = 0.0
    redis_samples: list[tuple[float, int]] = field(default_factory=list)
    gate: dict[str, dict[str, int]] = field(default_factory=dict)

    # derived ---------------------------------------------------------------
    def grants(self) -> list[tuple[float, int, int]]:
        """(send time, estimate, net charge = min(estimate, usage)) per 200."""
        out = []
        for e in self.events:
            if e[2] == 200 and e[7] >= 0:
                est = self.estimates[e[4]]
                out.append((e[0], est, min(est, e[7])))
        return out

    def used(self) -> list[tuple[float, int]]:
        return [(e[0], e[7]) for e in self.events if e[2] == 200 and e[7] >= 0]

    @property
    def end(self) -> float:
        """End of the load: the warm-up, then `minutes` spans of PERIOD_S (see PERIOD_S)."""
        return self.warmup + PERIOD_S * self.minutes


def window_sums(points: list[tuple[float, int]], starts: list[float], width: float = 60.0) -> list[int]:
    """Sum of values with start <= t < start + width, for each start (points sorted by t)."""
    import bisect

    times = [t for t, _ in points]
    prefix = [0]
    for _, v in points:
        prefix.append(prefix[-1] + v)
    out = []
    for s in starts:
        i, j = bisect.bisect_left(times, s), bisect.bisect_left(times, s + width)
        out.append(prefix[j] - prefix[i])
    return out


def run_accuracy(cleanup: Cleanup, label: str, servers: list[Lapis], account: Account, deployment: str,
                 bodies: list[str], probe_usage: list[int], args: argparse.Namespace,
                 redis_key: str | None) -> Accuracy:
    capacity = account.capacities[deployment]
    limit, request_limit = capacity * 1000, capacity  # Standard, 6 RPM per 1000 TPM: capacity per 10 s
    mean_used = sum(probe_usage) / len(probe_usage)
    rate = args.demand * limit / 60 / mean_used  # requests/s whose real usage is `demand` x the TPM
    acc = Accuracy(label, limit, request_limit, rate, args.warmup, args.minutes, [estimate(b) for b in bodies],
                   probe_usage)
    duration = args.warmup + PERIOD_S * args.minutes
    cfg = {"urls": [f"http://127.0.0.1:{s.port}{account.chat_path(deployment)}" for s in servers],
           "bodies": bodies, "headers": {"api-key": account.key}, "clients": args.clients, "rate": rate,
           "duration": duration, "timeout": 30}
    out_path = cleanup.workdir / f"{label}-events.json"
    cpu0 = {s.label: cpu_seconds(s.ps) for s in servers}
    gate0 = {s.label: limiter_stats(s) for s in servers}
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    proc = cleanup.children.spawn([sys.executable, str(BENCH / "ratelimit_load.py"), json.dumps(cfg), str(out_path)],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sampler = None
    if redis_key is not None:
        sampler = RedisWindowSampler(redis_key, t0 + 0.5)
        sampler.start()
    try:
        out, _ = proc.communicate(timeout=duration + 90)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise RuntimeError(f"load generator did not finish:\n{out}") from None
    finally:
        if sampler is not None:
            sampler.stop()
    acc.wall = time.monotonic() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"load generator exited with {proc.returncode}:\n{out}")
    acc.loadgen_cpu_pct = 100 * ((ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)) / acc.wall
    acc.server_cpu = {s.label: 100 * (cpu_seconds(s.ps) - cpu0[s.label]) / acc.wall for s in servers}
    acc.gate = {s.label: stats_delta(gate0[s.label], limiter_stats(s)) for s in servers}
    data = json.loads(out_path.read_text())
    acc.events, acc.late, acc.late_max = data["events"], data["late"], data["late_max_s"]
    acc.errors, acc.planned = data["errors"], data["planned"]
    if sampler is not None:
        acc.redis_samples = sampler.samples
    for s in servers:
        if s.proc.poll() is not None:
            raise RuntimeError(f"{s.label} exited during the load:\n{s.log_tail()}")
    return acc


def show_accuracy(acc: Accuracy, servers: list[Lapis]) -> dict[str, Any]:
    limit = acc.limit
    grants = acc.grants()
    ok = len(grants)
    denied = sum(1 for e in acc.events if e[2] == 429)
    other = sum(1 for e in acc.events if e[2] not in (200, 429))
    est_mean = sum(acc.estimates) / len(acc.estimates)
    use_mean = sum(acc.probe_usage) / len(acc.probe_usage)
    print(f"  demand    {acc.rate:.2f} req/s open-loop from {len(set(e[3] for e in acc.events))} clients = "
          f"{acc.rate * 60 * use_mean / limit:.2f} x TPM in real tokens, {acc.rate * 60 * est_mean / limit:.2f} x TPM "
          f"in admission estimates; {acc.planned} planned over {acc.end:g} s, {len(acc.events)} answered")
    print(f"  answers   200: {ok}, 429: {denied}, other: {other}, client errors: "
          f"{sum(acc.errors.values())} {acc.errors or ''}; sent late (>50 ms behind schedule): {acc.late}"
          f"{f', at most {acc.late_max:.2f} s' if acc.late else ''}")
    cpu = ", ".join(f"{k} {v:.0f}%" for k, v in acc.server_cpu.items())
    print(f"  CPU       {cpu}, load generator {acc.loadgen_cpu_pct:.0f}%")
    print("  gate      " + "; ".join(f"{k}: {v.get('admitted', 0)} admitted, {v.get('denied', 0)} denied, "
                                      f"{v.get('storeFailures', 0)} store failures" for k, v in acc.gate.items()))

    net = [(t, n) for t, _, n in grants]
    est = [(t, e) for t, e, _ in grants]
    used = acc.used()
    # a timeline: what the limiter kept charged per 10 s, as % of the limit
    bins = int(math.ceil(acc.end / 10))
    per_bin = [0] * bins
    for t, n in net:
        if 0 <= t < bins * 10:
            per_bin[int(t // 10)] += n
    print("  timeline  net tokens granted per 10 s, % of the TPM: "
          + " ".join(f"{100 * v / limit:.0f}" for v in per_bin))

    # fixed minutes after the warm-up
    minutes = []
    for k in range(acc.minutes):
        s = acc.warmup + 60 * k
        (n,), (e,), (u,) = window_sums(net, [s]), window_sums(est, [s]), window_sums(used, [s])
        minutes.append((s, n / limit, e / limit, u / limit))
    for s, n, e, u in minutes:
        print(f"  minute    [{s:5.1f}, {s + 60:5.1f}) s: net granted {n:.3f}, real usage {u:.3f}, "
              f"admission estimates {e:.3f} of the TPM")
    # THE figure: tokens per minute averaged over whole 61 s periods after the warm-up
    span = acc.end - acc.warmup
    in_span = [(t, e, n) for t, e, n in grants if acc.warmup <= t < acc.end]
    per_min = sum(n for _, _, n in in_span) / limit / (span / 60)
    per_min_est = sum(e for _, e, _ in in_span) / limit / (span / 60)
    per_min_used = sum(u for t, u in used if acc.warmup <= t < acc.end) / limit / (span / 60)
    per_period = sum(n for _, _, n in in_span) / limit / acc.minutes
    print(f"  judged    [{acc.warmup:g}, {acc.end:g}) s = {acc.minutes} x 61 s: net granted {per_min:.3f} of the TPM "
          "per "
          f"minute (real usage {per_min_used:.3f}, admission estimates {per_min_est:.3f}); per 61 s period "
          f"{per_period:.3f} of the TPM, x 60/61 = per minute")
    # sliding 60 s windows over the measured part, every 0.5 s
    starts = [acc.warmup + 0.5 * i for i in range(int((acc.end - 60 - acc.warmup) / 0.5) + 1)]
    sliding = [v / limit for v in window_sums(net, starts)]
    mean_sliding = sum(sliding) / len(sliding)
    # the exact maximum over ALL 60 s windows of the run (a window's maximum starts at a grant)
    all_starts = [t for t, _ in net]
    worst = max(window_sums(net, all_starts)) if all_starts else 0
    worst_est = max(window_sums(est, all_starts)) if all_starts else 0
    max_est = max(acc.estimates)
    print(f"  sliding   60 s windows starting every 0.5 s in [{acc.warmup:g}, {acc.end - 60:g}] s "
          f"({len(sliding)}): net granted mean {mean_sliding:.3f}, min {min(sliding):.3f}, max {max(sliding):.3f} "
          "of the TPM")
    print(f"  worst     any 60 s window of the whole run: {worst} net tokens = {worst / limit:.4f} x TPM "
          f"(limit {limit} + one estimate {max_est} = {limit + max_est}); admission estimates in that sense: "
          f"{worst_est / limit:.2f} x TPM (refunded room is granted again)")
    if acc.redis_samples:
        peak = max(v for _, v in acc.redis_samples)
        print(f"  Redis     the limiter's own 61-bucket token window, read every 0.5 s: peak {peak} "
              f"= {peak / limit:.3f} x TPM ({len(acc.redis_samples)} reads)")
    return {"label": acc.label, "limit_tpm": limit, "request_limit_per_10s": acc.request_limit,
            "rate_rps": acc.rate, "ok": ok, "denied": denied, "other": other, "client_errors": acc.errors,
            "late": acc.late, "minutes": [{"start": s, "net": n, "estimate": e, "usage": u} for s, n, e, u in minutes],
            "per_minute": per_min, "per_minute_usage": per_min_used, "per_minute_estimates": per_min_est,
            "per_61s_period": per_period,
            "sliding_mean": mean_sliding, "sliding_min": min(sliding), "sliding_max": max(sliding),
            "worst_window_tokens": worst, "max_estimate": max_est,
            "timeline_pct": [100 * v / limit for v in per_bin], "server_cpu_pct": acc.server_cpu,
            "loadgen_cpu_pct": acc.loadgen_cpu_pct, "gate": acc.gate,
            "store_failures": sum(v.get("storeFailures", 0) for v in acc.gate.values())}


def part_accuracy(cleanup: Cleanup, args: argparse.Namespace, results: dict[str, Any]) -> list[tuple[str, str, bool]]:
    # Why this body: Lapis charges ceil(prompt chars / 4) + max_tokens at admission and refunds
    # estimate - usage.total_tokens after the response. Standard gpt-4o-mini allows `capacity`
    # requests per 10 s (6 RPM per 1,000 TPM), i.e. 1,000 / 6 = 167 tokens per request on average.
    # If requests really used less than that (a short prompt, max_tokens 1000, the simulator writing
    # 12-60 tokens) the request window would bind long before the tokens, whatever the limiter did
    # with tokens. So the prompt is long (~600 real tokens, charged ~735) and max_tokens 200: a request
    # really uses ~640 of its ~935 estimate, about 30% is refunded, and the tokens bind.
    # Why capacity 400: the window can only fill to within one estimate of the TPM (the next request
    # no longer fits), so the granted fraction loses up to estimate / TPM: 0.2% at 400,000 TPM, but
    # ~5% at 20,000 TPM, which alone would miss 0.97 whatever the limiter did.
    bodies = accuracy_bodies(variants=8, doc_repeats=2, max_tokens=200)
    estimates = [estimate(b) for b in bodies]
    print("1. Granted tokens per minute as a fraction of the limit")
    print(f"  deployment gpt-4o-mini Standard, eastus, capacity {args.capacity} "
          f"(TPM {args.capacity * 1000}, {args.capacity} requests per 10 s), plus a small 'probe' deployment "
          "that measures each body's usage beforehand (the simulator is deterministic)")
    print("  why        Standard allows 6 requests per minute per 1,000 TPM, so tokens bind only if a request "
          "really uses > 167 tokens after its refund; a short prompt with max_tokens 1000 (the simulator writes 12-60 "
          "tokens) would be stopped by the request window at ~0.36 of the TPM. Hence a long prompt: ~30% of each "
          "estimate is refunded, and the window fills to within one estimate of the TPM (up to estimate/TPM is "
          "lost to granularity: 0.2% at capacity 400)")
    sizes = sorted(len(b) for b in bodies)
    print(f"  requests   {len(bodies)} chat bodies of {sizes[0]}-{sizes[-1]} bytes "
          f"(long system prompt, max_tokens 200), sent in turn; admission estimate {min(estimates)}-{max(estimates)} "
          "tokens each")
    print(f"  load       bench/ratelimit_load.py: {args.clients} clients (aiohttp, one keep-alive connection each, "
          f"own process), open-loop arrivals evenly spaced at a rate whose real usage is {args.demand:g} x the TPM; "
          f"no retries; {args.warmup:g} s warm-up + {args.minutes} min measured")
    print("  judged     NET GRANTED = per 200, min(admission estimate, usage.total_tokens): what the limiter keeps "
          "charged once the unused part of the estimate is refunded, i.e. what the deployment really let through. "
          "The admission estimates add up to more than the TPM because refunded room is granted again; they are "
          "shown, not judged. The limiter's span is 61 one-second buckets (no real 60 s interval may hold more "
          "than the TPM), so under constant over-demand its grants repeat every 61 s: the load runs the warm-up "
          "plus --minutes x 61 s and the fraction judged is the tokens per minute averaged over those whole "
          "periods; fixed 60 s minutes are shown too, and can read ~3% high or low depending on the phase "
          "they catch.")
    print()
    out: list[tuple[str, str, bool]] = []
    probe_capacity = 20

    # a. one process, in-process limiter, SQLite
    server = start_server(cleanup, "a-memory")
    wanted = [("bench", "Standard", args.capacity), ("probe", "Standard", probe_capacity)]
    account = setup_account(server, "eastus", wanted)
    probe = probe_usage(server, account, bodies)
    print(f"a. one Lapis process (pid {server.proc.pid}), in-process limiter, SQLite store")
    for note in account.notes:
        print(f"  note      {note}")
    print(f"  probe     usage.total_tokens of the {len(bodies)} bodies: {probe} (refund per request "
          f"{min(e - u for e, u in zip(estimates, probe))}-{max(e - u for e, u in zip(estimates, probe))})")
    acc = run_accuracy(cleanup, "a", [server], account, "bench", bodies, probe, args, None)
    results["a_memory"] = show_accuracy(acc, [server])
    out += accuracy_checks("a. in-process", results["a_memory"])
    cleanup.children.stop(server.proc)
    print()

    # b. two processes, one PostgreSQL database, one Redis
    db_url = create_database(cleanup)
    # Replicas sharing a database share its key-encryption key too (lapis.crypto.kek): the first
    # creates the file, the second reads it.
    env = {"LAPIS_DATABASE_URL": db_url, "LAPIS_REDIS_URL": REDIS_URL,
           "LAPIS_KEK_FILE": str(cleanup.workdir / "shared-keys" / "kek")}
    first = start_server(cleanup, "b-replica1", **env)
    account = setup_account(first, "eastus", wanted)
    cleanup.redis_accounts.append(account.internal_id)
    second = start_server(cleanup, "b-replica2", **env)  # after the deployments exist: it loads them at start-up
    probe = probe_usage(first, account, bodies)
    status, doc, _ = chat(second, account, "probe", bodies[0])
    if status != 200:
        raise RuntimeError(f"replica 2 does not serve the account: {status} {doc}")
    print(f"b. two Lapis processes (pids {first.proc.pid}, {second.proc.pid}), one PostgreSQL database "
          f"({db_url.rsplit('/', 1)[1]}), Redis limiter ({REDIS_URL}); client i talks to replica i % 2")
    for note in account.notes:
        print(f"  note      {note}")
    redis_key = f"{REDIS_PREFIX}{account.internal_id}/bench:t"
    acc = run_accuracy(cleanup, "b", [first, second], account, "bench", bodies, probe, args, redis_key)
    per_replica = {}
    for e in acc.events:
        if e[2] in (200, 429):
            per_replica.setdefault(e[3] % 2, [0, 0])[0 if e[2] == 200 else 1] += 1
    results["b_redis"] = show_accuracy(acc, [first, second])
    print("  replicas  " + ", ".join(f"replica {k + 1}: {v[0]} x 200, {v[1]} x 429"
                                      for k, v in sorted(per_replica.items())))
    out += accuracy_checks("b. Redis, 2 replicas", results["b_redis"])
    cleanup.children.stop(second.proc)
    cleanup.children.stop(first.proc)
    print()
    return out


def probe_usage(server: Lapis, account: Account, bodies: list[str]) -> list[int]:
    """usage.total_tokens of each body (the simulator is deterministic), on the probe deployment."""
    used = []
    for body in bodies:
        status, doc, _ = chat(server, account, "probe", body)
        if status != 200:
            raise RuntimeError(f"probe request: {status} {doc}")
        used.append(int(doc["usage"]["total_tokens"]))
    return used


def accuracy_checks(label: str, r: dict[str, Any]) -> list[tuple[str, str, bool]]:
    lo, hi = TARGET_FRACTION
    frac = r["per_minute"]
    fixed = ", ".join(f"{m['net']:.3f}" for m in r["minutes"])
    bound = r["limit_tpm"] + r["max_estimate"]
    return [
        (f"{label}: net granted {frac:.3f} of the TPM per minute (over whole 61 s periods; fixed 60 s minutes "
         f"{fixed}; per 61 s period {r['per_61s_period']:.3f})",
         f"{lo:.2f}-{hi:.2f}", lo <= frac <= hi),
        (f"{label}: any 60 s window at most {r['worst_window_tokens']} net tokens"
         + (f" ({r['store_failures']} admissions decided without Redis!)" if r["store_failures"] else ""),
         f"<= limit + one estimate = {bound}", r["worst_window_tokens"] <= bound and not r["store_failures"]),
    ]

