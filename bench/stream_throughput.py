"""Streaming chat throughput of Lapis against the bare aiohttp.web baseline (informational).

    .venv/bin/python bench/stream_throughput.py [--duration 10] [--connections 64]

Same harness as bench/chat_throughput.py (same start-up, load generator, cleanup), with
"stream": true in the ~500-byte body: every request is one whole SSE stream of
max_tokens (16) content chunks with zero simulator latency, so this measures the cost of
producing and writing chunks, not long-lived streams. Latency is to the end of the stream.
The baseline is bench/bare_server.py's SSE branch (the same event sequence, encoded with
msgspec, one write per chunk). No targets: it prints the ratio and exits 0 unless the run
failed or Lapis answered errors.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as ct  # noqa: E402 - bench/ is not a package
import loadgen  # noqa: E402


def stream_body() -> str:
    body = json.loads(ct.chat_body())
    body["stream"] = True
    return json.dumps(body, separators=(",", ":"))


def check_stream(port: int, path: str, body: str, headers: dict[str, str]) -> tuple[int, int]:
    """One stream that must answer 200 with SSE ending in [DONE]; (events, bytes)."""
    status, raw = ct.http_request(port, "POST", path, body=body.encode(), headers=headers)
    text = raw.decode(errors="replace")
    if status != 200 or not text.rstrip().endswith("data: [DONE]"):
        raise RuntimeError(f"stream preflight POST {path} answered {status}: {text[:800]!r}")
    return text.count("data: "), len(raw)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--threads", type=int, default=2, help="wrk threads (2)")
    ap.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    args = ap.parse_args(argv)
    if not 0 < args.duration <= 600 or args.connections < 1 or args.warmup < 0:
        ap.error("need 0 < --duration <= 600, --connections >= 1, --warmup >= 0")
    ct.exit_on_signals()

    children = ct.Children()
    workdir = Path(tempfile.mkdtemp(prefix="lapis-bench-"))
    try:
        load = loadgen.pick(args.loadgen, args.threads, False, workdir)
        if load is None:
            print("wrk is not installed (apt-get install -y wrk)", file=sys.stderr)
            return 1
        body = stream_body()
        print("Lapis streaming chat throughput benchmark (whole streams, zero simulator latency)")
        print(f"  loadgen   {load.describe()}")
        print(f"  load      {args.connections} connections, {args.duration:g} s after {args.warmup:g} s warm-up; "
              f"body {len(body.encode())} bytes with stream=true, max_tokens 16; {os.cpu_count()} cores shared "
              "by server and load generator")
        print()

        home = workdir / "home"
        home.mkdir()
        lapis = ct.start_lapis(children, home, LAPIS_RATELIMIT="off")
        prefix, key = ct.demo_endpoint(lapis)
        path = f"{prefix}/openai/deployments/{ct.DEPLOYMENT}/chat/completions?api-version={ct.API_VERSION}"
        headers = {"Content-Type": "application/json", "api-key": key}
        bare_proc, bare_port = ct.start_bare(children, workdir)
        targets = {
            "Lapis": (lapis.port, psutil.Process(lapis.proc.pid)),
            "baseline": (bare_port, psutil.Process(bare_proc.pid)),
        }
        results: dict[str, loadgen.LoadResult] = {}
        for name, (port, ps) in targets.items():
            events, size = check_stream(port, path, body, headers)
            print(f"{name}: one stream = {events} SSE events, {size} bytes")
            url = f"http://127.0.0.1:{port}{path}"
            if args.warmup > 0:
                load.run(children, url, body, headers, args.connections, args.warmup)
            results[name] = loadgen.measured_load(load, children, ps, url, body, headers, args.connections,
                                             args.duration)
            loadgen.show_load("load", results[name])
        alive = lapis.proc.poll() is None
        lapis_r, bare_r = results["Lapis"], results["baseline"]
        ratio = lapis_r.ok_rps / bare_r.ok_rps if bare_r.ok_rps else 0.0
        print()
        print("Summary (streams/s = whole streams completed per second)")
        print(f"  Lapis     {lapis_r.ok_rps:7.0f} streams/s  p50 {ct.fmt_ms(lapis_r.p50_ms)} ms  "
              f"p99 {ct.fmt_ms(lapis_r.p99_ms)} ms  errors {lapis_r.errors}  peak RSS {lapis_r.peak_rss / ct.MB:.1f} MB")
        print(f"  baseline  {bare_r.ok_rps:7.0f} streams/s  p50 {ct.fmt_ms(bare_r.p50_ms)} ms  "
              f"p99 {ct.fmt_ms(bare_r.p99_ms)} ms  errors {bare_r.errors}  peak RSS {bare_r.peak_rss / ct.MB:.1f} MB")
        print(f"  ratio     {ratio:.2f} (informational, no target)")
        if lapis_r.errors or not alive:
            print(f"  FAIL  Lapis errors under load: {lapis_r.errors}{'' if alive else ' (and the process died)'}")
            return 1
        return 0
    except RuntimeError as exc:
        print(f"\nFAIL  benchmark could not run: {exc}", file=sys.stderr)
        return 1
    finally:
        children.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
