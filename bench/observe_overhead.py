"""What observing costs: Lapis with metrics, rollups, usage and two diagnostic sinks against Lapis with all off.

    .venv/bin/python bench/observe_overhead.py [--duration 10] [--connections 64] [--rounds 3] [--stream]

Needs Redis on 127.0.0.1:6379 (`--broker URL` for another) and wrk. All in one run, on 127.0.0.1 only:

1. two `python -m lapis serve --demo` processes, each with its own LAPIS_HOME and SQLite
   store, LAPIS_RATELIMIT=off (the serving path is measured, not the limiter):
   "observed" with LAPIS_METRICS=on (the default: /metrics counters, per-minute rollups
   flushed every LAPIS_METRICS_FLUSH_SECONDS, and every answer's usage in the record spool
   before it is sent and committed in batches, lapis.usage.meter; all of it, and the sinks,
   run in the observer process `lapis serve` starts, LAPIS_OBSERVER=process, the default:
   lapis.observe.relay; "server" CPU below is the server's and its children's) and, on the demo account, one
   diagnostic setting (PUT .../providers/Microsoft.Insights/diagnosticSettings/bench,
   api-version 2021-05-01-preview) with RequestResponse logs and AllMetrics sent to two
   destinations: a Log Analytics workspace (the file sink: JSON lines under LAPIS_HOME,
   fsynced per batch; LAPIS_WORKSPACE_FILE_BYTES is raised so nothing rotates away before
   it is counted) and an event hub (the broker sink: the Redis stream
   `eventhubs/lapis-bench-<random>/lapis-bench`, unique to the run, deleted at the end);
   "bare" with LAPIS_METRICS=off and no diagnostic setting;
2. the same chat load on each (POST .../chat/completions, ~500-byte body, max_tokens 16;
   `--stream` for SSE answers, journalled before their [DONE]), one at a
   time, alternating which goes first each round;
3. after each load of the observed server, its sinks from its /metrics: records delivered
   (this load and in all) and dropped, failed deliveries, and how long their queues took
   to empty after the load (at most `--drain` seconds, 5); then what really arrived:
   the records in the stream's entries (read back and deleted, so Redis holds one load at
   most) and the lines added to the workspace files, each checked against the sink's own
   count;
4. the observed server's own account of it, from its /metrics: requests counted, usage
   rows written, commits made (rows per commit shows the group commit at work), rows
   dropped or failed;
5. the req/s ratio observed / bare (median of rounds) against the target: observing
   costs under 10% of throughput (ratio >= 0.90); and no record dropped or left
   undelivered by a sink (a healthy sink keeps up: its bounded queue, LAPIS_DIAGNOSTICS_QUEUE
   records, is for outages).

Exit status 1 when a target fails or the run could not be made. Do not run it while
others use the machine: the ratio is noise then (the report warns when other processes
took CPU during a run). The workspace files are deleted at the end; the servers' logs stay
in the temporary folder printed at the start.
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
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402 - bench/ is not a package
    ACCOUNT_PATH, API_VERSION, DEPLOYMENT, SUBSCRIPTION, Children, Lapis, chat_body, demo_endpoint, exit_on_signals,
    has_uvloop, http_request, median, preflight, start_lapis, verdict_lines,
)
from loadgen import LoadResult, PyLoad, combine, load_dict, measured_load, ok_rps, pick, show_load  # noqa: E402

TARGET_RATIO = 0.90
OWN_COUNTERS = ("AzureOpenAIRequests_total", "lapis_usage_records_written_total", "lapis_usage_batches_total",
                "lapis_usage_dropped_total", "lapis_usage_write_failures_total", "lapis_rollup_flushes_total",
                "lapis_usage_queue_depth")


SETTING = "bench"  # the diagnostic setting on the demo account
SETTINGS_API = "2021-05-01-preview"
HUB = "lapis-bench"
SINKS = ("workspace", "eventhub")  # the file sink, the broker sink
SINK_COUNTERS = {"lapis_sink_queue_depth": "queued", "lapis_sink_delivered_total": "delivered",
                 "lapis_sink_dropped_total": "dropped", "lapis_sink_failed_total": "failed"}
NO_ROTATION = str(1 << 40)  # LAPIS_WORKSPACE_FILE_BYTES: every line stays to be counted


def scrape(lapis: Lapis) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """The observed server's /metrics: sums of its own counters (all label sets together), and
    the bench setting's sinks' queued, delivered, dropped and failed (sink kind -> counters)."""
    status, raw = http_request(lapis.port, "GET", "/metrics", timeout=30)
    if status != 200:
        raise RuntimeError(f"GET /metrics answered {status}")
    totals = {name: 0.0 for name in OWN_COUNTERS}
    sinks = {kind: {"queued": 0.0, "delivered": 0.0, "dropped": 0.0, "failed": 0.0} for kind in SINKS}
    for line in raw.decode().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        value = float(line.rsplit(" ", 1)[1])
        if name in totals:
            totals[name] += value
        elif name in SINK_COUNTERS and 'sink="' in line:
            sink = line.split('sink="', 1)[1].split('"', 1)[0]  # account group/account/setting/kind
            parts = sink.split("/")
            if len(parts) == 4 and parts[2] == SETTING and parts[3] in sinks:
                sinks[parts[3]][SINK_COUNTERS[name]] = value
    return totals, sinks


def put_setting(lapis: Lapis, namespace: str) -> dict[str, Any]:
    """The demo account's diagnostic setting: RequestResponse and AllMetrics to a workspace and an event hub."""
    group = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/lapis-demo/providers"
    properties = {
        "workspaceId": f"{group}/Microsoft.OperationalInsights/workspaces/lapis-bench",
        "eventHubAuthorizationRuleId": f"{group}/Microsoft.EventHub/namespaces/{namespace}/authorizationRules/"
                                       "RootManageSharedAccessKey",
        "eventHubName": HUB,
        "logs": [{"category": "RequestResponse", "enabled": True}],
        "metrics": [{"category": "AllMetrics", "enabled": True}]}
    path = f"{ACCOUNT_PATH}/providers/Microsoft.Insights/diagnosticSettings/{SETTING}"
    status, doc = lapis.call("PUT", path, {"properties": properties}, api_version=SETTINGS_API)
    if status not in (200, 201):
        raise RuntimeError(f"PUT diagnostic setting answered {status}: {str(doc)[:800]}")
    return properties


class Stream:
    """The broker sink's Redis stream, read back as it fills: entries counted, their records
    counted, then deleted (so Redis holds one load's records at most); dropped at the end."""

    def __init__(self, url: str, key: str):
        import redis

        self.key = key
        self.client = redis.Redis.from_url(url, socket_timeout=30)
        self.client.ping()
        if self.client.exists(key):
            raise RuntimeError(f"the stream {key} already exists")
        self.entries = 0
        self.records = 0

    def take(self) -> None:
        while True:
            page = self.client.xrange(self.key, count=100)
            if not page:
                return
            for _, fields in page:
                self.records += len(json.loads(fields[b"body"])["records"])
            self.entries += len(page)
            self.client.xdel(self.key, *(entry_id for entry_id, _ in page))

    def drop(self) -> None:
        self.client.delete(self.key)
        self.client.close()


class Workspace:
    """The file sink's folder: the lines its JSON-lines files gained, read as they grow."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.read_to: dict[Path, int] = {}
        self.lines = 0

    def take(self) -> None:
        for path in sorted(self.folder.glob("*.jsonl")) if self.folder.exists() else []:
            start = self.read_to.get(path, 0)
            with open(path, "rb") as handle:
                handle.seek(start)
                data = handle.read()
            whole = data.rfind(b"\n") + 1  # a line still being written is counted next time
            self.lines += data.count(b"\n", 0, whole)
            self.read_to[path] = start + whole


def drain(lapis: Lapis, limit: float) -> tuple[float, dict[str, float], dict[str, dict[str, float]]]:
    """Until the sinks' queues are empty (at most `limit` seconds): (seconds waited, /metrics)."""
    t0 = time.perf_counter()
    while True:
        own, sinks = scrape(lapis)
        waited = time.perf_counter() - t0
        if all(s["queued"] == 0 for s in sinks.values()) or waited >= limit:
            return waited, own, sinks
        time.sleep(0.1)


def arrived(lapis: Lapis, stream: Stream, workspace: Workspace) -> tuple[bool, str]:
    """What the destinations hold against what the sinks say they delivered (read between two
    scrapes: a record delivered meanwhile, AllMetrics say, may or may not be in the count)."""
    _, before = scrape(lapis)
    stream.take()
    workspace.take()
    _, after = scrape(lapis)
    held = {"eventhub": stream.records, "workspace": workspace.lines}
    ok = all(before[k]["delivered"] <= held[k] <= after[k]["delivered"] for k in SINKS)
    counted = ", ".join(f"{k} {after[k]['delivered']:.0f}" for k in SINKS)
    text = (f"the stream holds {stream.records} records in {stream.entries} entries, the workspace files "
            f"{workspace.lines} lines (the sinks counted {counted} delivered)")
    return ok, text


def stream_body(body: str) -> str:
    doc = json.loads(body)
    doc.update(stream=True, stream_options={"include_usage": True})
    return json.dumps(doc, separators=(",", ":"))


def show_sinks(before: dict[str, dict[str, float]], after: dict[str, dict[str, float]], waited: float,
               limit: float) -> None:
    emptied = all(s["queued"] == 0 for s in after.values())
    print(f"  {'':<10} sinks: " + "; ".join(
        f"{k} delivered {after[k]['delivered'] - before[k]['delivered']:.0f} (all {after[k]['delivered']:.0f}), "
        f"dropped {after[k]['dropped']:.0f}, failed {after[k]['failed']:.0f}, queued {after[k]['queued']:.0f}"
        for k in SINKS) + (f"; queues empty {waited:.1f} s after the load" if emptied
                           else f"; queues NOT empty {limit:g} s after the load"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of measured load per server and round (10)")
    ap.add_argument("--connections", type=int, default=64, help="concurrent connections (64)")
    ap.add_argument("--warmup", type=float, default=2.0, help="seconds of unmeasured load before each run (2)")
    ap.add_argument("--rounds", type=int, default=3, help="alternate the two servers this many times (3)")
    ap.add_argument("--threads", type=int, default=2, help="wrk threads (2)")
    ap.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    ap.add_argument("--stream", action="store_true", help="streamed answers (SSE) instead of JSON ones")
    ap.add_argument("--broker", default="redis://127.0.0.1:6379/0", help="the Redis behind the event hub")
    ap.add_argument("--drain", type=float, default=5.0,
                    help="seconds the sinks' queues may take to empty after a load (5)")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = ap.parse_args(argv)
    if not 0 < args.duration <= 600 or args.connections < 1 or not 1 <= args.rounds <= 20 or args.warmup < 0 \
            or args.drain < 0:
        ap.error("need 0 < --duration <= 600, --connections >= 1, 1 <= --rounds <= 20, --warmup >= 0, --drain >= 0")

    exit_on_signals()  # SIGTERM/SIGHUP -> SystemExit, so the finally below stops every child.
    children = Children()
    workdir = Path(tempfile.mkdtemp(prefix="lapis-bench-observe-"))
    namespace = f"lapis-bench-{uuid.uuid4().hex[:12]}"
    stream: Stream | None = None
    results: dict[str, Any] = {}
    try:
        loadgen = pick(args.loadgen, args.threads, False, workdir)
        if loadgen is None:
            print("wrk is not installed (apt-get install -y wrk)", file=sys.stderr)
            return 1
        try:
            stream = Stream(args.broker, f"eventhubs/{namespace}/{HUB}")
        except Exception as exc:  # noqa: BLE001 - any failure to reach the broker ends the run here
            raise RuntimeError(f"the event hub's Redis at {args.broker} cannot be used: {exc!r}") from exc
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
        print(f"  folder    {workdir}")
        print()

        servers: dict[str, Lapis] = {}
        for name, env in (("observed", {"LAPIS_METRICS": "on", "LAPIS_EVENTHUBS_URL": args.broker,
                                        "LAPIS_WORKSPACE_FILE_BYTES": NO_ROTATION}),
                          ("bare", {"LAPIS_METRICS": "off"})):
            home = workdir / name
            home.mkdir()
            servers[name] = start_lapis(children, home, label=name, LAPIS_RATELIMIT="off", **env)
        sinks_setting = put_setting(servers["observed"], namespace)
        workspace = Workspace(servers["observed"].home / "workspaces" / SUBSCRIPTION.lower() / "lapis-demo"
                              / "lapis-bench")
        targets: dict[str, tuple[str, dict[str, str]]] = {}
        for name, lapis in servers.items():
            prefix, key = demo_endpoint(lapis)
            path = f"{prefix}/openai/deployments/{DEPLOYMENT}/chat/completions?api-version={API_VERSION}"
            own = {"Content-Type": "application/json", "api-key": key}
            preflight(lapis.port, path, body, own, expect_chat=not args.stream)
            targets[name] = (f"http://127.0.0.1:{lapis.port}{path}", own)
            what = "LAPIS_METRICS=off, no diagnostic setting"
            if name == "observed":
                what = (f"LAPIS_METRICS=on, diagnostic setting '{SETTING}': RequestResponse + AllMetrics to a "
                        f"workspace and the stream {stream.key}")
            print(f"{name:<9} pid {lapis.proc.pid}, port {lapis.port}, ready in {lapis.ready_s:.2f} s; {what}")
        print()

        runs: dict[str, list[LoadResult]] = {"observed": [], "bare": []}
        sink_runs: list[dict[str, Any]] = []
        for rnd in range(args.rounds):
            order = ["observed", "bare"] if rnd % 2 == 0 else ["bare", "observed"]
            print(f"Load round {rnd + 1}/{args.rounds}")
            for name in order:
                url, own = targets[name]
                ps = servers[name].ps
                if name == "observed":
                    _, sinks_before = scrape(servers[name])
                if args.warmup > 0:
                    loadgen.run(children, url, body, own, args.connections, args.warmup)
                r = measured_load(loadgen, children, ps, url, body, own, args.connections, args.duration)
                runs[name].append(r)
                show_load(name, r)
                if servers[name].proc.poll() is not None:
                    raise RuntimeError(f"{name} exited during the load:\n{servers[name].log_tail()}")
                if name == "observed":
                    waited, _, sinks_after = drain(servers[name], args.drain)
                    show_sinks(sinks_before, sinks_after, waited, args.drain)
                    held_ok, held = arrived(servers[name], stream, workspace)
                    print(f"  {'':<10} {held}")
                    delivered = {k: sinks_after[k]["delivered"] - sinks_before[k]["delivered"] for k in SINKS}
                    sink_runs.append({"before": sinks_before, "after": sinks_after, "drain_s": waited,
                                      "answered": r.requests - r.errors, "delivered": delivered, "arrived": held_ok,
                                      "stream_records": stream.records, "workspace_lines": workspace.lines})
        time.sleep(1.0)  # one group commit and more: everything answered is written by now
        own, sinks = scrape(servers["observed"])
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
        print("  diagnostic sinks: " + "; ".join(
            f"{k} delivered {sinks[k]['delivered']:.0f}, dropped {sinks[k]['dropped']:.0f}, failed "
            f"{sinks[k]['failed']:.0f}, queued {sinks[k]['queued']:.0f}" for k in SINKS))
        print()
        unwritten = own["lapis_usage_dropped_total"] + own["lapis_usage_queue_depth"]
        lost = {k: sinks[k]["dropped"] for k in SINKS}
        late = [i + 1 for i, run in enumerate(sink_runs) if any(run["after"][k]["queued"] for k in SINKS)]
        short = [i + 1 for i, run in enumerate(sink_runs) if any(run["delivered"][k] < run["answered"] for k in SINKS)]
        missing = [i + 1 for i, run in enumerate(sink_runs) if not run["arrived"]]
        checks = [
            (f"throughput ratio {ratio:.3f} (observed {ok_rps(observed):.0f} / bare {ok_rps(bare):.0f} successful "
             f"req/s, rounds {[round(x, 3) for x in ratios]}): observing costs {100 * (1 - ratio):.1f}%",
             f">= {TARGET_RATIO:.2f}", ratio >= TARGET_RATIO),
            (f"errors under load: observed {observed.errors}, bare {bare.errors}", "== 0",
             observed.errors == 0 and bare.errors == 0),
            (f"usage rows dropped or left unwritten: {unwritten:.0f}", "== 0", unwritten == 0),
            (f"diagnostic records dropped: {', '.join(f'{k} {v:.0f}' for k, v in lost.items())}", "== 0",
             not any(lost.values())),
            (f"loads after which a sink's queue was not empty within {args.drain:g} s: {late or 'none'}; a sink "
             f"delivered fewer records than requests answered: {short or 'none'}; destination short of what its "
             f"sink counted: {missing or 'none'}", "none", not (late or short or missing)),
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
                   "own_counters": own, "diagnostic_setting": sinks_setting, "sinks": sinks, "sink_runs": sink_runs,
                   "checks": [{"check": t, "target": g, "pass": ok} for t, g, ok in checks]}
        return 0 if all(ok for _, _, ok in checks) else 1
    except RuntimeError as exc:
        print(f"\nFAIL  benchmark could not run: {exc}", file=sys.stderr)
        return 1
    finally:
        children.stop_all()
        if stream is not None:
            try:
                stream.drop()
            except Exception as exc:  # noqa: BLE001 - say so, and go on cleaning up
                print(f"could not delete the stream {stream.key}: {exc!r}", file=sys.stderr)
        shutil.rmtree(workdir / "observed" / "workspaces", ignore_errors=True)
        if args.json and results:
            Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
