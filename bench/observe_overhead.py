"""What observing costs: Lapis with metrics, rollups and usage metering against Lapis with all off.

    .venv/bin/python bench/observe_overhead.py [--duration 10] [--connections 64] [--rounds 3] [--stream]

All in one run, on 127.0.0.1 only:

1. two `python -m lapis serve --demo` processes, each with its own LAPIS_HOME and SQLite
   store, LAPIS_RATELIMIT=off (the serving path is measured, not the limiter):
   "observed" with LAPIS_METRICS=on (the default: /metrics counters, per-minute rollups
   flushed every LAPIS_METRICS_FLUSH_SECONDS, and every answer's usage journalled before
   it is sent and committed in batches, lapis.usage.meter), and "bare" with LAPIS_METRICS=off;
2. the same chat load on each (POST .../chat/completions, ~500-byte body, max_tokens 16;
   `--stream` for SSE answers, journalled before their [DONE]), one at a
   time, alternating which goes first each round;
3. the observed server's own account of it, from its /metrics: requests counted, usage
   rows written, commits made (rows per commit shows the group commit at work), rows
   dropped or failed;
4. the req/s ratio observed / bare (median of rounds) against the target: observing
   costs under 10% of throughput (ratio >= 0.90).

Exit status 1 when the target fails or the run could not be made. Do not run it while
others use the machine: the ratio is noise then (the report warns when other processes
took CPU during a run).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402 - bench/ is not a package
    API_VERSION, DEPLOYMENT, Children, Lapis, chat_body, demo_endpoint, exit_on_signals, has_uvloop, http_request,
    median, preflight, start_lapis, verdict_lines,
)
from loadgen import LoadResult, PyLoad, combine, load_dict, measured_load, ok_rps, pick, show_load  # noqa: E402

TARGET_RATIO = 0.90
OWN_COUNTERS = ("AzureOpenAIRequests_total", "lapis_usage_records_written_total", "lapis_usage_batches_total",
                "lapis_usage_dropped_total", "lapis_usage_write_failures_total", "lapis_rollup_flushes_total",
                "lapis_usage_queue_depth")


def scrape(lapis: Lapis) -> dict[str, float]:
    """Sums of the observed server's own counters on /metrics (all label sets together)."""
    status, raw = http_request(lapis.port, "GET", "/metrics", timeout=30)
    if status != 200:
        raise RuntimeError(f"GET /metrics answered {status}")
    totals = {name: 0.0 for name in OWN_COUNTERS}
    for line in raw.decode().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in totals:
            totals[name] += float(line.rsplit(" ", 1)[1])
    return totals


def stream_body(body: str) -> str:
    doc = json.loads(body)
    doc.update(stream=True, stream_options={"include_usage": True})
    return json.dumps(doc, separators=(",", ":"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of measured load per server and round (10)")
    ap.add_argument("--connections", type=int, default=64, help="concurrent connections (64)")
    ap.add_argument("--warmup", type=float, default=2.0, help="seconds of unmeasured load before each run (2)")
    ap.add_argument("--rounds", type=int, default=3, help="alternate the two servers this many times (3)")
    ap.add_argument("--threads", type=int, default=2, help="wrk threads (2)")
    ap.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    ap.add_argument("--stream", action="store_true", help="streamed answers (SSE) instead of JSON ones")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = ap.parse_args(argv)
    if not 0 < args.duration <= 600 or args.connections < 1 or not 1 <= args.rounds <= 20 or args.warmup < 0:
        ap.error("need 0 < --duration <= 600, --connections >= 1, 1 <= --rounds <= 20, --warmup >= 0")

    exit_on_signals()  # SIGTERM/SIGHUP -> SystemExit, so the finally below stops every child.
    children = Children()
    workdir = Path(tempfile.mkdtemp(prefix="lapis-bench-observe-"))
    results: dict[str, Any] = {}
    try:
        loadgen = pick(args.loadgen, args.threads, False, workdir)
        if loadgen is None:
            print("wrk is not installed (apt-get install -y wrk)", file=sys.stderr)
            return 1
        body = stream_body(chat_body()) if args.stream else chat_body()
        cores = os.cpu_count() or 1
        print("Lapis observing overhead benchmark")
        print(f"  machine   {cores} CPUs, {platform.system()} {platform.release()}, Python "
              f"{platform.python_version()}, event loop: {'uvloop' if has_uvloop() else 'asyncio'}")
        print(f"  loadgen   {loadgen.describe()}")
        print(f"  load      {args.connections} connections, {args.duration:g} s measured after {args.warmup:g} s "
              f"warm-up, per server and round; {args.rounds} round(s), one server at a time")
        print(f"  body      {len(body.encode())} bytes JSON, max_tokens 16, {'streamed' if args.stream else 'JSON'} "
              "answers; same body and headers for both servers")
        print()

        servers: dict[str, Lapis] = {}
        for name, metrics in (("observed", "on"), ("bare", "off")):
            home = workdir / name
            home.mkdir()
            servers[name] = start_lapis(children, home, label=name, LAPIS_RATELIMIT="off", LAPIS_METRICS=metrics)
        targets: dict[str, tuple[str, dict[str, str]]] = {}
        for name, lapis in servers.items():
            prefix, key = demo_endpoint(lapis)
            path = f"{prefix}/openai/deployments/{DEPLOYMENT}/chat/completions?api-version={API_VERSION}"
            own = {"Content-Type": "application/json", "api-key": key}
            preflight(lapis.port, path, body, own, expect_chat=not args.stream)
            targets[name] = (f"http://127.0.0.1:{lapis.port}{path}", own)
            print(f"{name:<9} pid {lapis.proc.pid}, port {lapis.port}, LAPIS_METRICS="
                  f"{'on' if name == 'observed' else 'off'}; ready in {lapis.ready_s:.2f} s")
        print()

        runs: dict[str, list[LoadResult]] = {"observed": [], "bare": []}
        for rnd in range(args.rounds):
            order = ["observed", "bare"] if rnd % 2 == 0 else ["bare", "observed"]
            print(f"Load round {rnd + 1}/{args.rounds}")
            for name in order:
                url, own = targets[name]
                ps = servers[name].ps
                if args.warmup > 0:
                    loadgen.run(children, url, body, own, args.connections, args.warmup)
                r = measured_load(loadgen, children, ps, url, body, own, args.connections, args.duration)
                runs[name].append(r)
                show_load(name, r)
                if servers[name].proc.poll() is not None:
                    raise RuntimeError(f"{name} exited during the load:\n{servers[name].log_tail()}")
        time.sleep(1.0)  # one group commit and more: everything answered is written by now
        own = scrape(servers["observed"])
        print()

        observed, bare = combine(runs["observed"]), combine(runs["bare"])
        ratios = [ok_rps(a) / ok_rps(b) for a, b in zip(runs["observed"], runs["bare"]) if ok_rps(b)]
        ratio = median(ratios)
        answered = sum(r.requests - r.errors for r in runs["observed"])
        rows, commits = own["lapis_usage_records_written_total"], own["lapis_usage_batches_total"]
        print("The observed server's own account (/metrics, warm-up and preflight included)")
        print(f"  requests counted {own['AzureOpenAIRequests_total']:.0f} (load generator saw >= {answered} answered); "
              f"usage rows written {rows:.0f} in {commits:.0f} commits ({rows / commits if commits else 0:.1f} "
              f"rows per commit); rollup flushes {own['lapis_rollup_flushes_total']:.0f}")
        print(f"  dropped {own['lapis_usage_dropped_total']:.0f}, failed commits "
              f"{own['lapis_usage_write_failures_total']:.0f}, queue now {own['lapis_usage_queue_depth']:.0f}")
        print()
        unwritten = own["lapis_usage_dropped_total"] + own["lapis_usage_queue_depth"]
        checks = [
            (f"throughput ratio {ratio:.3f} (observed {ok_rps(observed):.0f} / bare {ok_rps(bare):.0f} successful "
             f"req/s, rounds {[round(x, 3) for x in ratios]}): observing costs {100 * (1 - ratio):.1f}%",
             f">= {TARGET_RATIO:.2f}", ratio >= TARGET_RATIO),
            (f"errors under load: observed {observed.errors}, bare {bare.errors}", "== 0",
             observed.errors == 0 and bare.errors == 0),
            (f"usage rows dropped or left unwritten: {unwritten:.0f}", "== 0", unwritten == 0),
        ]
        print("Summary (medians over rounds)")
        verdict_lines(checks)
        busiest = max(r.other_cpu_pct for rs in runs.values() for r in rs)
        if busiest >= 25:
            print(f"  WARNING  other processes used up to {busiest:.0f}% CPU during a load run: the ratio is noise; "
                  "rerun on a quiet machine")
        if isinstance(loadgen, PyLoad):
            print("  WARNING  without wrk the load generator, not the servers, may be the bottleneck")
        results = {"loadgen": loadgen.describe(), "connections": args.connections, "duration": args.duration,
                   "rounds": args.rounds, "stream": args.stream, "ratio": ratio, "ratios": ratios,
                   "observed": [load_dict(r) for r in runs["observed"]], "bare": [load_dict(r) for r in runs["bare"]],
                   "own_counters": own, "checks": [{"check": t, "target": g, "pass": ok} for t, g, ok in checks]}
        return 0 if all(ok for _, _, ok in checks) else 1
    except RuntimeError as exc:
        print(f"\nFAIL  benchmark could not run: {exc}", file=sys.stderr)
        return 1
    finally:
        children.stop_all()
        if args.json and results:
            Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
