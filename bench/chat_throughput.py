"""Non-streaming chat throughput of Lapis against a bare aiohttp.web baseline.

    .venv/bin/python bench/chat_throughput.py [--duration 10] [--connections 64]

All in one run, on 127.0.0.1 only:

1. start-to-ready time of `python -m lapis serve --demo` (fresh temp LAPIS_HOME, free
   port): from spawning the process until GET /healthz answers 200 and server.json exists;
2. Lapis's idle RSS after ready, and its peak RSS sampled during the load;
3. POST {endpoint}/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21
   with api-key, a ~500-byte body, max_tokens 16: N connections for D seconds;
4. the same load, same body and headers, against bench/bare_server.py (aiohttp.web +
   msgspec, one POST route answering ~600 bytes) in its own process;
5. the req/s ratio and PASS/FAIL lines against the targets (see bench/README.md).

Load generator: wrk (Debian package `wrk`) when installed, else bench/pyload.py in its
own process. Exit status 1 when a target fails or the run could not be made.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

# LAPIS_* variables given to Lapis besides LAPIS_RATELIMIT=off, from the
# environment of this script (e.g. LAPIS_METRICS=off to leave observing out).
EXTRA_ENV = {k: v for k, v in os.environ.items() if k.startswith("LAPIS_") and k != "LAPIS_RATELIMIT"}
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402 - bench/ is not a package
    API_VERSION, DEPLOYMENT, MB, Children, Lapis, chat_body, demo_endpoint, exit_on_signals, fmt_ms, has_uvloop,
    median, preflight, start_bare, start_lapis, tree_rss,
)
from loadgen import LoadResult, PyLoad, combine, load_dict, measured_load, ok_rps, pick, show_load  # noqa: E402

TARGET_RATIO = 0.40
TARGET_READY_S = 2.0
TARGET_IDLE_RSS_MB = 150.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of measured load per target and round (10)")
    ap.add_argument("--connections", type=int, default=64, help="concurrent connections (64)")
    ap.add_argument("--warmup", type=float, default=2.0, help="seconds of unmeasured load before each run (2)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="alternate Lapis and baseline this many times; medians are reported (1)")
    ap.add_argument("--ready-runs", type=int, default=3,
                    help="spawns of Lapis to time start-to-ready; the median is judged (3)")
    ap.add_argument("--threads", type=int, default=2, help="wrk threads (2)")
    ap.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    ap.add_argument("--strict-status", action="store_true",
                    help="count every non-200 through a wrk Lua response() hook (costs wrk CPU on both targets)")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = ap.parse_args(argv)
    if not 0 < args.duration <= 600 or args.connections < 1 or not 1 <= args.rounds <= 20 \
            or not 1 <= args.ready_runs <= 20 or args.warmup < 0:
        ap.error("need 0 < --duration <= 600, --connections >= 1, 1 <= --rounds/--ready-runs <= 20, --warmup >= 0")

    exit_on_signals()  # SIGTERM/SIGHUP -> SystemExit, so the finally below stops every child.

    children = Children()
    workdir = Path(tempfile.mkdtemp(prefix="lapis-bench-"))
    results: dict[str, Any] = {}
    try:
        loadgen = pick(args.loadgen, args.threads, args.strict_status, workdir)
        if loadgen is None:
            print("wrk is not installed (apt-get install -y wrk)", file=sys.stderr)
            return 1
        body = chat_body()
        n_messages = len(json.loads(body)["messages"])
        cores = os.cpu_count() or 1

        print("Lapis chat throughput benchmark")
        print(f"  machine   {cores} CPUs, {platform.system()} {platform.release()}, "
              f"Python {platform.python_version()} ({sys.executable}), event loop: "
              f"{'uvloop' if has_uvloop() else 'asyncio (uvloop not installed)'} for both servers")
        print(f"  loadgen   {loadgen.describe()}")
        print(f"  load      {args.connections} connections, {args.duration:g} s measured after "
              f"{args.warmup:g} s warm-up, per target and round; {args.rounds} round(s), one target at a time")
        print(f"  body      {len(body.encode())} bytes JSON, {n_messages} messages, max_tokens 16; "
              f"same body and headers for both targets")
        print(f"  note      server and load generator share the same {cores} cores (and whatever else runs on "
              "this machine); all on 127.0.0.1")
        print()

        # 1-2: Lapis start-up and idle memory -------------------------------------
        ready_times: list[float] = []
        lapis: Lapis | None = None
        for i in range(args.ready_runs):
            home = workdir / f"home{i + 1}"
            home.mkdir()
            # The serving path is measured: the demo deployment's 50K TPM would answer most of this
            # load with 429s. What limiting costs is measured by bench/ratelimit_throughput.py.
            lapis = start_lapis(children, home, LAPIS_RATELIMIT="off", **EXTRA_ENV)
            ready_times.append(lapis.ready_s)
            if i < args.ready_runs - 1:
                children.stop(lapis.proc)
        assert lapis is not None
        ready = median(ready_times)
        lapis_ps = psutil.Process(lapis.proc.pid)
        time.sleep(0.5)  # let the freshly started process settle before reading its idle RSS
        idle_rss = tree_rss(lapis_ps)
        path_prefix, key = demo_endpoint(lapis)
        chat_path = f"{path_prefix}/openai/deployments/{DEPLOYMENT}/chat/completions?api-version={API_VERSION}"
        headers = {"Content-Type": "application/json", "api-key": key}
        t_first = time.perf_counter()
        lapis_answer = preflight(lapis.port, chat_path, body, headers, expect_chat=True)
        first_s = time.perf_counter() - t_first
        first_rss = tree_rss(lapis_ps)
        print(f"Lapis: python -m lapis serve --demo (pid {lapis.proc.pid}, port {lapis.port})")
        print(f"  ready     median {ready:.3f} s over {len(ready_times)} spawn(s) "
              f"[{', '.join(f'{t:.3f}' for t in ready_times)}], each with a fresh LAPIS_HOME: "
              "spawn -> GET /healthz 200 and server.json present")
        print(f"  idle RSS  {idle_rss / MB:.1f} MB (0.5 s after ready, before any load)")
        print(f"  POST      {chat_path} -> 200, {lapis_answer} bytes")
        print(f"  first     chat request took {first_s * 1000:.0f} ms; RSS after it {first_rss / MB:.1f} MB "
              "(anything loaded lazily on first use shows here, not in ready/idle)")

        # baseline --------------------------------------------------------------
        bare_proc, bare_port = start_bare(children, workdir)
        bare_ps = psutil.Process(bare_proc.pid)
        time.sleep(0.5)
        bare_idle = tree_rss(bare_ps)
        bare_answer = preflight(bare_port, chat_path, body, headers, expect_chat=False)
        print(f"Baseline: bench/bare_server.py, aiohttp.web + msgspec, one POST route "
              f"(pid {bare_proc.pid}, port {bare_port})")
        print(f"  idle RSS  {bare_idle / MB:.1f} MB;  POST same path -> 200, {bare_answer} bytes")
        print()

        # 3-4: load, alternating --------------------------------------------------
        targets = {
            "Lapis": (f"http://127.0.0.1:{lapis.port}{chat_path}", lapis_ps),
            "baseline": (f"http://127.0.0.1:{bare_port}{chat_path}", bare_ps),
        }
        runs: dict[str, list[LoadResult]] = {"Lapis": [], "baseline": []}
        alive = True
        for rnd in range(args.rounds):
            order = ["Lapis", "baseline"] if rnd % 2 == 0 else ["baseline", "Lapis"]
            print(f"Load round {rnd + 1}/{args.rounds}" if args.rounds > 1 else "Load")
            for name in order:
                url, ps = targets[name]
                if args.warmup > 0:
                    loadgen.run(children, url, body, headers, args.connections, args.warmup)
                r = measured_load(loadgen, children, ps, url, body, headers, args.connections, args.duration)
                runs[name].append(r)
                show_load(name, r)
                if name == "Lapis" and lapis.proc.poll() is not None:
                    alive = False
                    print(f"  !! Lapis exited during the load run:\n{lapis.log_tail()}")
                    break
            if not alive:
                break
        time.sleep(1.0)
        after_rss = tree_rss(lapis_ps)
        print()

        # 5: verdict ------------------------------------------------------------
        lapis_load, bare_load = combine(runs["Lapis"]), combine(runs["baseline"])
        ratios = [ok_rps(a) / ok_rps(b) for a, b in zip(runs["Lapis"], runs["baseline"]) if ok_rps(b)]
        ratio = median(ratios)
        many = args.rounds > 1
        checks = [
            (f"throughput ratio {ratio:.2f} (Lapis {ok_rps(lapis_load):.0f} / baseline {ok_rps(bare_load):.0f} "
             f"successful req/s{', median of rounds ' + str([round(x, 2) for x in ratios]) if many else ''})",
             f">= {TARGET_RATIO:.2f}", ratio >= TARGET_RATIO),
            (f"start to ready {ready:.3f} s (median of {len(ready_times)})", f"< {TARGET_READY_S:g} s",
             ready < TARGET_READY_S),
            (f"idle RSS {idle_rss / MB:.1f} MB", f"< {TARGET_IDLE_RSS_MB:g} MB", idle_rss / MB < TARGET_IDLE_RSS_MB),
            (f"Lapis errors under load: {lapis_load.errors}{'' if alive else ' (and the process died)'}",
             "== 0", lapis_load.errors == 0 and alive),
        ]
        print("Summary" + (" (medians over rounds)" if many else ""))
        print(f"  Lapis     {ok_rps(lapis_load):7.0f} req/s  p50 {fmt_ms(lapis_load.p50_ms)} ms  "
              f"p99 {fmt_ms(lapis_load.p99_ms)} ms  errors {lapis_load.errors}  RSS idle {idle_rss / MB:.1f} MB, "
              f"loaded peak {lapis_load.peak_rss / MB:.1f} MB, 1 s after load {after_rss / MB:.1f} MB")
        print(f"  baseline  {ok_rps(bare_load):7.0f} req/s  p50 {fmt_ms(bare_load.p50_ms)} ms  "
              f"p99 {fmt_ms(bare_load.p99_ms)} ms  errors {bare_load.errors}  RSS idle {bare_idle / MB:.1f} MB, "
              f"loaded peak {bare_load.peak_rss / MB:.1f} MB")
        for text, target, ok in checks:
            print(f"  {'PASS' if ok else 'FAIL'}  {text}  (target {target})")
        busiest = max(r.other_cpu_pct for rs in runs.values() for r in rs)
        if busiest >= 25:
            print(f"  WARNING  other processes on this machine used up to {busiest:.0f}% CPU during a load run: "
                  "absolute numbers and the ratio are noisy; rerun on a quiet machine or with --rounds 3")
        if bare_load.loadgen_cpu_pct >= 80 or bare_load.server_cpu_pct < 80:
            print(f"  WARNING  during the baseline run the load generator used {bare_load.loadgen_cpu_pct:.0f}% CPU "
                  f"and the server {bare_load.server_cpu_pct:.0f}%: the baseline was not server-bound, so the "
                  "ratio overstates Lapis" + (" (install wrk)" if isinstance(loadgen, PyLoad) else ""))
        failed = [text for text, _, ok in checks if not ok]

        results = {
            "loadgen": loadgen.describe(), "connections": args.connections, "duration": args.duration,
            "rounds": args.rounds, "body_bytes": len(body.encode()),
            "lapis": {"ready_s": ready, "ready_runs_s": ready_times, "idle_rss_mb": idle_rss / MB,
                      "first_request_s": first_s, "rss_after_first_request_mb": first_rss / MB,
                      "loaded_peak_rss_mb": lapis_load.peak_rss / MB, "after_load_rss_mb": after_rss / MB,
                      "answer_bytes": lapis_answer, "runs": [load_dict(r) for r in runs["Lapis"]]},
            "baseline": {"idle_rss_mb": bare_idle / MB, "loaded_peak_rss_mb": bare_load.peak_rss / MB,
                         "answer_bytes": bare_answer, "runs": [load_dict(r) for r in runs["baseline"]]},
            "ratio": ratio, "ratios": ratios,
            "checks": [{"check": t, "target": g, "pass": ok} for t, g, ok in checks],
        }
        return 1 if failed else 0
    except RuntimeError as exc:
        print(f"\nFAIL  benchmark could not run: {exc}", file=sys.stderr)
        return 1
    finally:
        children.stop_all()
        if args.json and results:
            Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
        shutil.rmtree(workdir, ignore_errors=True)

if __name__ == "__main__":
    sys.exit(main())
