"""Lapis as a gateway in front of a real engine, against the engine itself, a bare aiohttp proxy and
the LiteLLM proxy (issue 5).

    .venv/bin/python bench/gateway_throughput.py [--rounds 3] [--duration 10] [--json PATH]

All in one run, on 127.0.0.1 only, against one fast upstream engine
(tests/support/fake_upstream.py: aiohttp.web + msgspec, answers in microseconds):

- **direct**: the upstream's own Azure path, `api-key`;
- **bare proxy**: bench/bare_proxy.py, an aiohttp.web route that forwards the body unchanged to
  the upstream's OpenAI-compatible path through one pooled aiohttp.ClientSession (Lapis's
  connector limits) and returns its status and body: no validation, no logic. The ceiling of
  an aiohttp proxy hop on this machine, so the report splits the gap to direct into what the
  hop itself costs (bare proxy / direct) and what Lapis adds on top (Lapis / bare proxy);
  both are shown, not judged;
- **Lapis**: `lapis serve --demo` (LAPIS_RATELIMIT=off), its gpt-4o-mini deployment served by an
  openai-compatible backend registered on the upstream (PUT /lapis/admin/backends/{id});
- **LiteLLM**: the LiteLLM proxy as an Azure-style gateway over the upstream (azure/<name>),
  installed by this script into ~/.cache/lapis/litellm-venv on first use.

Per target, in rounds whose order alternates (so machine noise hits all alike):
1. non-streaming throughput: wrk, 64 connections, the ~500-byte chat body of
   bench/chat_throughput.py posted to the Azure path: req/s, p50, p99;
2. latency at a fixed 100 requests/s, open-loop (bench/paced_load.py; wrk2 is not packaged):
   the p50 Lapis adds over direct.
Then, through a fresh Lapis whose backend uses the upstream's slow mode (200 chunks per
stream, --chunk-delay apart): 1,000 concurrent streams (bench/stream_load.py), how many are
relayed at once, and Lapis's RSS growth per stream.

A table of the targets with PASS/FAIL (and the two bare-proxy ratios, marked info) ends the run
(see bench/README.md); exit status 1 when a target fails or the run could not be made. Every
child process is stopped on exit.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402 - bench/ is not a package
    BENCH, MB, Children, chat_body, cpu_seconds, exit_on_signals, fmt_ms, median, tree_rss,
)
from gateway_peers import (  # noqa: E402
    LITELLM_SPEC, LITELLM_VENV, Target, check_forwarded, ensure_litellm, start_bare_proxy, start_gateway,
    start_litellm, start_upstream,
)
from loadgen import LoadResult, Wrk, measured_load  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
from lapis.backends.http import POOL_SIZE  # noqa: E402 - what the stream part depends on

TARGET_VS_DIRECT = 0.45
TARGET_VS_LITELLM = 5.0
TARGET_ADDED_P50_MS = 1.0
TARGET_STREAM_KB = 40.0
KB = 1024


def child_json(children: Children, script: str, cfg: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run bench/<script> CONFIG_JSON in its own process; its last stdout line, as JSON."""
    proc = children.spawn([sys.executable, str(BENCH / script), json.dumps(cfg)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise RuntimeError(f"{script} did not finish:\n{err[-2000:]}") from None
    if proc.returncode != 0:
        raise RuntimeError(f"{script} exited with {proc.returncode}:\n{err[-2000:]}")
    return json.loads(out.strip().splitlines()[-1])


def paced(children: Children, target: Target, body: str, args: argparse.Namespace) -> dict[str, Any]:
    cfg = {"url": target.url, "body": body, "headers": target.headers, "rate": args.rate,
           "duration": args.paced_duration, "warmup": args.paced_warmup, "timeout": 10}
    return child_json(children, "paced_load.py", cfg, args.paced_duration + args.paced_warmup + 60)


def show_round(name: str, r: LoadResult, extra_cpu: str, p: dict[str, Any] | None) -> None:
    detail = ", ".join(f"{k} {v}" for k, v in r.error_detail.items()) or "none"
    print(f"    {name:<10} {r.ok_rps:7.0f} req/s  p50 {fmt_ms(r.p50_ms)} ms  p99 {fmt_ms(r.p99_ms)} ms  "
          f"errors {r.errors} ({detail});  CPU: server {r.server_cpu_pct:.0f}%{extra_cpu}, wrk {r.loadgen_cpu_pct:.0f}%, "
          f"rest {r.other_cpu_pct:.0f}%; peak RSS {r.peak_rss / MB:.0f} MB")
    if p is None:
        print(f"    {'':<10} no paced run: it serves fewer than 1.5x that rate, so requests would only queue")
        return
    bad = sum(v for k, v in p["statuses"].items() if k != "200") + sum(p["errors"].values())
    print(f"    {'':<10} at {p['requests']} paced requests: p50 {fmt_ms(p['p50_ms'])} ms  p90 {fmt_ms(p['p90_ms'])} ms  "
          f"p99 {fmt_ms(p['p99_ms'])} ms  non-200/errors {bad}; sends late p99 {fmt_ms(p['late_p99_ms'])} ms")


def run_rounds(children: Children, wrk: Wrk, targets: list[Target], upstream: Target, body: str,
               args: argparse.Namespace) -> tuple[dict[str, list[LoadResult]], dict[str, list[dict[str, Any] | None]]]:
    loads: dict[str, list[LoadResult]] = {t.name: [] for t in targets}
    pace: dict[str, list[dict[str, Any] | None]] = {t.name: [] for t in targets}
    peer = next((t for t in targets if t.name == "LiteLLM"), None)  # paced only when it can keep the rate
    upstream_ps = psutil.Process(upstream.proc.pid)
    for rnd in range(args.rounds):
        order = targets if rnd % 2 == 0 else targets[::-1]
        print(f"  round {rnd + 1}/{args.rounds}: {', '.join(t.name for t in order)}")
        for t in order:
            ps = psutil.Process(t.proc.pid)
            if args.warmup > 0:
                wrk.run(children, t.url, body, t.headers, args.connections, args.warmup)
            up0, t0 = cpu_seconds(upstream_ps), time.perf_counter()
            r = measured_load(wrk, children, ps, t.url, body, t.headers, args.connections, args.duration)
            up_pct = 100 * (cpu_seconds(upstream_ps) - up0) / (time.perf_counter() - t0)
            extra = "" if t is upstream else f" + upstream {up_pct:.0f}%"
            r.other_cpu_pct = max(0.0, r.other_cpu_pct - (0.0 if t is upstream else up_pct))
            loads[t.name].append(r)
            p = paced(children, t, body, args) if t is not peer or r.ok_rps >= 1.5 * args.rate else None
            pace[t.name].append(p)
            show_round(t.name, r, extra, p)
            if t.proc.poll() is not None:
                raise RuntimeError(f"{t.name} exited during its load run")
    return loads, pace


def stream_phase(children: Children, workdir: Path, upstream: Target, args: argparse.Namespace) -> dict[str, Any]:
    """A fresh Lapis relaying slow streams: warm it with a small batch, then hold args.streams open."""
    target, lapis = start_gateway(children, workdir / "stream-home", upstream.port, args.stream_backends, slow=True,
                                  env=args.lapis_env)
    body = json.loads(chat_body())
    body["stream"] = True
    body = json.dumps(body, separators=(",", ":"))
    ps = lapis.ps
    per_stream_s = 200 * args.chunk_delay
    base = {"url": target.url, "body": body, "headers": target.headers, "timeout": 60 + 20 * per_stream_s}
    warm = child_json(children, "stream_load.py", {**base, "streams": 64, "ramp": 0.5}, 120 + 4 * per_stream_s)
    if warm["ok"] != 64:
        raise RuntimeError(f"warm-up streams through Lapis failed: {warm['ok']}/64 whole, {warm['errors']}")
    time.sleep(1.0)
    rss0 = tree_rss(ps)
    watched = {"Lapis": ps, "upstream": psutil.Process(upstream.proc.pid)}
    cpu0 = {k: cpu_seconds(p) for k, p in watched.items()}
    cfg = {**base, "streams": args.streams, "ramp": args.ramp}
    err_path = workdir / "stream_load.err"
    with open(err_path, "wb") as err_file:  # a file, not a pipe: nobody reads stderr until the end
        proc = children.spawn([sys.executable, str(BENCH / "stream_load.py"), json.dumps(cfg)],
                              stdout=subprocess.PIPE, stderr=err_file, text=True)
    t0 = time.perf_counter()
    rss_max, last = rss0, ""
    assert proc.stdout is not None
    for line in proc.stdout:  # a progress line every 0.1 s: read Lapis's RSS at the same pace
        last = line
        if len(line.split()) == 4:
            rss_max = max(rss_max, tree_rss(ps))
    proc.wait(timeout=30)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"stream_load.py exited with {proc.returncode}:\n"
                           f"{err_path.read_text(errors='replace')[-2000:]}")
    result = json.loads(last)
    result.update(rss_before=rss0, rss_max=rss_max, nominal_s=per_stream_s, backends=args.stream_backends,
                  cpu_pct={k: 100 * (cpu_seconds(p) - cpu0[k]) / wall for k, p in watched.items()})
    children.stop(lapis.proc)
    return result


def show_streams(s: dict[str, Any], n: int) -> None:
    growth = s["rss_max"] - s["rss_before"]
    print(f"  streams   {s['ok']}/{n} whole (200, ending in [DONE]); errors {s['errors'] or 'none'}; events per stream "
          f"{s['events_min']}-{s['events_max']} (median {s['events_median']:g})")
    print(f"  at once   peak {s['peak_open']} open, {s['peak_relaying']} relaying (first byte received, not finished); "
          f"all {n} relaying for {s['all_relaying_s']:g} s")
    print(f"  timing    stream duration p50 {s['duration_p50_s'] or 0:.1f} s, p99 {s['duration_p99_s'] or 0:.1f} s "
          f"(the upstream alone: {s['nominal_s']:.1f} s); first byte p50 {s['first_byte_p50_s'] or 0:.2f} s, "
          f"p99 {s['first_byte_p99_s'] or 0:.2f} s; {s['events_per_s']:.0f} events/s relayed over {s['wall_s']:.1f} s")
    print(f"  memory    Lapis RSS {s['rss_before'] / MB:.1f} MB before (after 64 warm-up streams), peak "
          f"{s['rss_max'] / MB:.1f} MB: +{growth / MB:.1f} MB = {growth / KB / max(n, 1):.1f} KB per stream of {n}"
          + (f", {growth / KB / s['peak_relaying']:.1f} KB per stream relayed at once"
             if s["peak_relaying"] and s["peak_relaying"] != n else ""))
    print("  CPU       " + ", ".join(f"{k} {v:.0f}%" for k, v in s["cpu_pct"].items()) + " (the rest: the client)")


def summary(loads: dict[str, list[LoadResult]], pace: dict[str, list[dict[str, Any] | None]]) -> None:
    """Per target, medians over rounds: the wrk run at 64 connections and the paced run."""
    print("| target | req/s at 64 conns | p50 | p99 | errors | p50 at fixed rate | p99 at fixed rate | "
          "server CPU | peak RSS |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, rs in loads.items():
        ps = [p for p in pace[name] if p is not None]
        p50 = f"{median([p['p50_ms'] for p in ps]):.2f} ms" if ps else "not run"
        p99 = f"{median([p['p99_ms'] for p in ps]):.2f} ms" if ps else "not run"
        print(f"| {name} | {median([r.ok_rps for r in rs]):.0f} | {median([r.p50_ms or 0 for r in rs]):.2f} ms | "
              f"{median([r.p99_ms or 0 for r in rs]):.2f} ms | {sum(r.errors for r in rs)} | {p50} | {p99} | "
              f"{median([r.server_cpu_pct for r in rs]):.0f}% | {max(r.peak_rss for r in rs) / MB:.0f} MB |")
    print()


def ratios(loads: dict[str, list[LoadResult]]) -> dict[str, dict[str, Any]]:
    """Throughput ratios between targets, per round (successful req/s) and their median."""
    out: dict[str, dict[str, Any]] = {}
    for a, b in (("Lapis", "direct"), ("bare proxy", "direct"), ("Lapis", "bare proxy"), ("Lapis", "LiteLLM")):
        if a in loads and b in loads:
            per_round = [x.ok_rps / y.ok_rps for x, y in zip(loads[a], loads[b]) if y.ok_rps]
            out[f"{a} / {b}"] = {"per_round": per_round, "median": median(per_round),
                                 "rps": {a: median([r.ok_rps for r in loads[a]]),
                                         b: median([r.ok_rps for r in loads[b]])}}
    return out


def verdict(loads: dict[str, list[LoadResult]], pace: dict[str, list[dict[str, Any] | None]], streams: dict[str, Any] | None,
            args: argparse.Namespace) -> list[tuple[str, str, str, bool | None]]:
    """(check, target, measured, PASS/FAIL or None for a line that is shown, not judged)."""
    lapis, direct = loads["Lapis"], loads["direct"]
    vs_direct = [a.ok_rps / b.ok_rps for a, b in zip(lapis, direct) if b.ok_rps]
    added = [a["p50_ms"] - b["p50_ms"] for a, b in zip(pace["Lapis"], pace["direct"])
             if a["p50_ms"] is not None and b["p50_ms"] is not None]
    of = f", median of {args.rounds} rounds" if args.rounds > 1 else ""
    rows: list[tuple[str, str, str, bool | None]] = [
        ("Lapis throughput / direct", f">= {TARGET_VS_DIRECT:.2f}",
         f"{median(vs_direct):.2f} (Lapis {median([r.ok_rps for r in lapis]):.0f} / direct "
         f"{median([r.ok_rps for r in direct]):.0f} req/s{of})", median(vs_direct) >= TARGET_VS_DIRECT)]
    ratio = ratios(loads)
    for a, b in (("bare proxy", "direct"), ("Lapis", "bare proxy")):  # where the gap to direct is: shown only
        if (r := ratio.get(f"{a} / {b}")) is not None:
            rows.append((f"{a} / {b}", "not judged", f"{r['median']:.2f} ({a} {r['rps'][a]:.0f} / {b} "
                                                     f"{r['rps'][b]:.0f} req/s{of})", None))
    if "LiteLLM" in loads:
        peer = loads["LiteLLM"]
        vs_peer = [a.ok_rps / b.ok_rps if b.ok_rps else float("inf") for a, b in zip(lapis, peer)]
        rows.append(("Lapis throughput / LiteLLM", f">= {TARGET_VS_LITELLM:g}x",
                     f"{median(vs_peer):.1f}x (LiteLLM {median([r.ok_rps for r in peer]):.0f} req/s, "
                     f"p50 {fmt_ms(median([r.p50_ms or 0 for r in peer])).strip()} ms)",
                     median(vs_peer) >= TARGET_VS_LITELLM))
    rows.append((f"added p50 latency at {args.rate:g} req/s", f"<= {TARGET_ADDED_P50_MS:g} ms",
                 f"{median(added):.2f} ms (Lapis {median([p['p50_ms'] for p in pace['Lapis']]):.2f} - direct "
                 f"{median([p['p50_ms'] for p in pace['direct']]):.2f} ms)", bool(added) and median(added) <= TARGET_ADDED_P50_MS))
    if streams is not None:
        n = args.streams
        per = (streams["rss_max"] - streams["rss_before"]) / KB / n
        together = streams["peak_relaying"] >= n and streams["ok"] == n
        text = (f"{per:.1f} KB each; {streams['peak_relaying']} of {n} relayed at once, {streams['ok']} whole"
                + ("" if together else " (not all relayed at once: see above)"))
        rows.append((f"{n:,} concurrent relayed streams", f"<= {TARGET_STREAM_KB:g} KB each", text,
                     together and per <= TARGET_STREAM_KB))
    errors = sum(r.errors for r in lapis) + sum(sum(v for k, v in p["statuses"].items() if k != "200")
                                                 + sum(p["errors"].values()) for p in pace["Lapis"])
    rows.append(("errors through Lapis (wrk and paced)", "0", str(errors), errors == 0))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3, help="rounds over the targets, order alternating (3)")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of measured wrk load per target and round (10)")
    ap.add_argument("--warmup", type=float, default=2.0, help="seconds of unmeasured wrk load before each (2)")
    ap.add_argument("--connections", type=int, default=64, help="wrk connections (64)")
    ap.add_argument("--rate", type=float, default=100.0, help="requests/s of the latency runs (100)")
    ap.add_argument("--paced-duration", type=float, default=10.0, help="measured seconds of each latency run (10)")
    ap.add_argument("--paced-warmup", type=float, default=1.0, help="uncounted seconds before it (1)")
    ap.add_argument("--streams", type=int, default=1000, help="concurrent streams through Lapis (1000)")
    ap.add_argument("--chunk-delay", type=float, default=0.05,
                    help="seconds between the upstream's 200 chunks in slow mode (0.05: 10 s streams)")
    ap.add_argument("--ramp", type=float, default=2.0, help="seconds over which the streams are opened (2)")
    ap.add_argument("--stream-backends", type=int, default=1,
                    help="identical backends registered for the stream part (1); each has its own connection pool")
    ap.add_argument("--skip-litellm", action="store_true", help="no LiteLLM (its ratio is then not judged)")
    ap.add_argument("--skip-streams", action="store_true", help="no stream part")
    ap.add_argument("--litellm-spec", default=LITELLM_SPEC, help=f"what pip installs ({LITELLM_SPEC})")
    ap.add_argument("--litellm-venv", type=Path, default=LITELLM_VENV, help=f"where ({LITELLM_VENV})")
    ap.add_argument("--litellm-reinstall", action="store_true", help="make the LiteLLM venv anew")
    ap.add_argument("--lapis-env", action="append", default=[], metavar="NAME=VALUE",
                    help="extra environment for the Lapis processes, e.g. LAPIS_METRICS=off (repeatable)")
    ap.add_argument("--json", metavar="PATH", help="also write the numbers as JSON")
    args = ap.parse_args(argv)
    if any("=" not in e or not e.startswith("LAPIS_") for e in args.lapis_env):
        ap.error("--lapis-env takes LAPIS_NAME=VALUE")
    args.lapis_env = dict(e.split("=", 1) for e in args.lapis_env)
    if not 1 <= args.rounds <= 20 or not 0 < args.duration <= 600 or args.warmup < 0 or args.connections < 1 \
            or args.rate <= 0 or args.paced_duration <= 0 or args.streams < 1 or args.chunk_delay <= 0 \
            or args.stream_backends < 1:
        ap.error("need 1 <= --rounds <= 20, 0 < --duration <= 600, positive rates, counts and delays")
    exit_on_signals()
    children = Children()
    workdir = Path(tempfile.mkdtemp(prefix="lapis-gwbench-"))
    results: dict[str, Any] = {}
    try:
        wrk_path = shutil.which("wrk")
        if not wrk_path:
            raise RuntimeError("wrk is not installed (apt-get install -y wrk)")
        wrk = Wrk(wrk_path, 2, False, workdir)
        body = chat_body()
        cores = os.cpu_count() or 1
        print("Lapis gateway benchmark (issue 5)")
        print(f"  machine   {cores} CPUs, {platform.system()} {platform.release()}, Python {platform.python_version()}; "
              "upstream, gateways and load generators share these cores; all on 127.0.0.1")
        print(f"  load      {wrk.version}: -t2 -c{args.connections}, {args.warmup:g} s warm-up + {args.duration:g} s; "
              f"then {args.rate:g} req/s open-loop for {args.paced_duration:g} s (+{args.paced_warmup:g} s uncounted, "
              f"bench/paced_load.py; wrk2 is not packaged); {len(body)}-byte chat body, max_tokens 16")
        upstream = start_upstream(children, workdir, args.chunk_delay)
        bare = start_bare_proxy(children, workdir, upstream.port)
        gateway, _ = start_gateway(children, workdir / "home", upstream.port, env=args.lapis_env)
        targets = [upstream, bare, gateway]
        if not args.skip_litellm:
            exe, version = ensure_litellm(args.litellm_spec, args.litellm_venv, args.litellm_reinstall)
            litellm = start_litellm(children, workdir, exe, upstream.port)
            litellm.note += f", LiteLLM {version}, ready in {litellm.ready_s:.1f} s"
            targets.append(litellm)
        for t in targets:
            size = check_forwarded(t, body)
            print(f"  {t.name:<10} port {t.port}: {t.note}; preflight 200, {size} bytes; idle RSS "
                  f"{tree_rss(psutil.Process(t.proc.pid)) / MB:.0f} MB")
        print()
        print("1. Non-streaming: throughput at 64 connections, then latency at a fixed rate")
        loads, pace = run_rounds(children, wrk, targets, upstream, body, args)
        for t in targets[1:]:
            children.stop(t.proc)  # the stream part gets the machine to itself and a fresh Lapis
        print()
        streams = None
        if not args.skip_streams:
            print(f"2. Streams: {args.streams} at once through a fresh Lapis, the upstream in slow mode "
                  f"(~200 chunks, {args.chunk_delay:g} s apart), opened over {args.ramp:g} s, "
                  f"{args.stream_backends} backend(s) (Lapis pools {POOL_SIZE} connections per backend)")
            streams = stream_phase(children, workdir, upstream, args)
            show_streams(streams, args.streams)
            print()
        summary(loads, pace)
        rows = verdict(loads, pace, streams, args)
        print("| check | target | measured | result |")
        print("|---|---|---|---|")
        for name, target, text, ok in rows:
            print(f"| {name} | {target} | {text} | {'info' if ok is None else 'PASS' if ok else 'FAIL'} |")
        busiest = max(r.other_cpu_pct for rs in loads.values() for r in rs)
        if busiest >= 25:
            print(f"\nWARNING  other processes used up to {busiest:.0f}% CPU during a load run: the ratios are noisy; "
                  "rerun on a quiet machine or with more --rounds")
        results = {"rounds": args.rounds, "loads": {k: [vars(r) | {"raw": ""} for r in rs] for k, rs in loads.items()},
                   "paced": pace, "streams": streams, "ratios": ratios(loads),
                   "checks": [{"check": n, "target": t, "measured": m, "pass": ok, "judged": ok is not None}
                              for n, t, m, ok in rows]}
        return 0 if all(ok is not False for *_, ok in rows) else 1
    except RuntimeError as exc:
        print(f"\nFAIL  benchmark could not run: {exc}", file=sys.stderr)
        return 1
    finally:
        children.stop_all()
        if args.json and results:
            Path(args.json).write_text(json.dumps(results, indent=2, default=str) + "\n")
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
