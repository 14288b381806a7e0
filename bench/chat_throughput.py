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
import http.client
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
SUBSCRIPTION = "2c6d6e8a-6c61-7069-7300-000000000001"
ACCOUNT_PATH = (f"/subscriptions/{SUBSCRIPTION}/resourceGroups/lapis-demo"
                "/providers/Microsoft.CognitiveServices/accounts/lapis-demo")
ARM_API = "2025-06-01"
DEPLOYMENT = "gpt-4o-mini"
API_VERSION = "2024-10-21"

TARGET_RATIO = 0.40
TARGET_READY_S = 2.0
TARGET_IDLE_RSS_MB = 150.0

MB = 1024 * 1024


# -- small helpers -------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_request(port: int, method: str, path: str, body: bytes | None = None,
                 headers: dict[str, str] | None = None, timeout: float = 10.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def chat_body() -> str:
    """A ~500-byte chat request: a system prompt, a short exchange, max_tokens 16."""
    body = {
        "messages": [
            {"role": "system", "content": "You are a concise assistant for a hardware shop. Answer in one "
                                          "short sentence and never invent prices or stock levels."},
            {"role": "user", "content": "Do you sell cordless drills?"},
            {"role": "assistant", "content": "Yes, we carry several cordless drills from three brands."},
            {"role": "user", "content": "Which one would you recommend for occasional home use, "
                                        "like hanging shelves and assembling furniture?"},
        ],
        "max_tokens": 16,
        "temperature": 0.7,
        "user": "bench-user-0001",
    }
    return json.dumps(body, separators=(",", ":"))


def tree_rss(proc: psutil.Process) -> int:
    """RSS of a process and its children, in bytes (0 once it is gone)."""
    total = 0
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def cpu_seconds(proc: psutil.Process) -> float:
    try:
        t = proc.cpu_times()
        return t.user + t.system
    except psutil.Error:
        return 0.0


class RssSampler:
    """Samples a process's RSS every `interval` seconds in a thread; keeps the peak."""

    def __init__(self, proc: psutil.Process, interval: float = 0.1) -> None:
        self.proc, self.interval, self.peak = proc, interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(self.proc))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.peak = max(self.peak, tree_rss(self.proc))


# -- child processes -----------------------------------------------------------


class Children:
    """Every process the benchmark starts; all stopped on exit, whatever happens."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def spawn(self, args: list[str], **kw: Any) -> subprocess.Popen:
        proc = subprocess.Popen(args, **kw)
        self.procs.append(proc)
        return proc

    @staticmethod
    def stop(proc: subprocess.Popen, grace: float = 5.0) -> None:
        if proc.poll() is not None:
            return
        try:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        except ProcessLookupError:
            pass

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            try:
                self.stop(proc)
            except Exception:  # noqa: BLE001 - best effort on the way out
                try:
                    proc.kill()
                except Exception:  # noqa: BLE001
                    pass


# -- load generators -----------------------------------------------------------


@dataclass
class LoadResult:
    requests: int = 0
    seconds: float = 0.0
    rps: float = 0.0
    p50_ms: float | None = None
    p75_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    errors: int = 0
    error_detail: dict[str, int] = field(default_factory=dict)
    peak_rss: int = 0
    server_cpu_pct: float = 0.0
    loadgen_cpu_pct: float = 0.0
    machine_busy_pct: float = 0.0
    other_cpu_pct: float = 0.0
    steal_pct: float = 0.0
    raw: str = ""

    @property
    def ok_rps(self) -> float:
        return (self.requests - self.errors) / self.seconds if self.seconds else 0.0


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    if not m:
        raise ValueError(f"unparsable wrk latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


class Wrk:
    name = "wrk"

    def __init__(self, path: str, threads: int, strict_status: bool, workdir: Path) -> None:
        self.path, self.threads, self.strict_status, self.workdir = path, threads, strict_status, workdir
        out = subprocess.run([path, "-v"], capture_output=True, text=True, timeout=10)
        first = (out.stdout or out.stderr).strip().splitlines()
        self.version = first[0] if first else "wrk"

    def describe(self) -> str:
        how = "Lua response() hook counts every non-200" if self.strict_status else \
            "errors = wrk's non-2xx/3xx count + socket errors"
        return f"{self.version}; -t{self.threads}, --latency, POST body and headers from a Lua script; {how}"

    def _script(self, body: str, headers: dict[str, str]) -> Path:
        lines = ['wrk.method = "POST"', f"wrk.body = [==[{body}]==]"]
        lines += [f'wrk.headers["{k}"] = [==[{v}]==]' for k, v in headers.items()]
        if self.strict_status:
            lines += [
                "local threads = {}",
                "function setup(thread) table.insert(threads, thread) end",
                "function init(args) non200 = 0 end",
                "function response(status, headers, body) if status ~= 200 then non200 = non200 + 1 end end",
                "function done(summary, latency, requests)",
                "  local n = 0",
                "  for _, t in ipairs(threads) do n = n + t:get('non200') end",
                "  io.write(string.format('NON200 %d\\n', n))",
                "end",
            ]
        path = self.workdir / "post.lua"
        path.write_text("\n".join(lines) + "\n")
        return path

    def run(self, children: Children, url: str, body: str, headers: dict[str, str], connections: int,
            duration: float) -> LoadResult:
        script = self._script(body, headers)
        args = [self.path, f"-t{min(self.threads, connections)}", f"-c{connections}",
                f"-d{max(1, round(duration))}s", "--timeout", "5s", "--latency", "-s", str(script), url]
        proc = children.spawn(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            out, _ = proc.communicate(timeout=duration + 30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
            raise RuntimeError(f"wrk did not finish:\n{out}") from None
        if proc.returncode != 0:
            raise RuntimeError(f"wrk exited with {proc.returncode}:\n{out}")
        return self.parse(out)

    @staticmethod
    def parse(out: str) -> LoadResult:
        r = LoadResult(raw=out)
        m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", out)
        if not m:
            raise RuntimeError(f"cannot parse wrk output:\n{out}")
        r.requests = int(m.group(1))
        r.seconds = _ms(m.group(2) + m.group(3)) / 1000
        m = re.search(r"Requests/sec:\s+([\d.]+)", out)
        r.rps = float(m.group(1)) if m else (r.requests / r.seconds if r.seconds else 0.0)
        for pct in ("50", "75", "90", "99"):
            m = re.search(rf"^\s+{pct}%\s+(\S+)\s*$", out, re.M)
            if m:
                setattr(r, f"p{pct}_ms", _ms(m.group(1)))
        m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
        if m:
            for name, value in zip(("connect", "read", "write", "timeout"), m.groups()):
                if int(value):
                    r.error_detail[f"socket {name}"] = int(value)
        strict = re.search(r"^NON200 (\d+)$", out, re.M)
        if strict:
            if int(strict.group(1)):
                r.error_detail["non-200"] = int(strict.group(1))
        else:
            m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
            if m and int(m.group(1)):
                r.error_detail["non-2xx/3xx"] = int(m.group(1))
        # wrk does not count a socket error as a request in "N requests"; read/timeout
        # errors are requests that got no answer, so they count as errors on top of it.
        r.errors = sum(r.error_detail.values())
        unanswered = sum(v for k, v in r.error_detail.items() if k in ("socket read", "socket timeout"))
        r.requests += unanswered
        return r


class PyLoad:
    name = "pyload"
    version = "bench/pyload.py (aiohttp.ClientSession)"

    def describe(self) -> str:
        return ("bench/pyload.py, aiohttp.ClientSession in its own process (wrk not found); "
                "much slower per request than wrk, so absolute req/s are lower")

    def run(self, children: Children, url: str, body: str, headers: dict[str, str], connections: int,
            duration: float) -> LoadResult:
        cfg = json.dumps({"url": url, "body": body, "headers": headers, "connections": connections,
                          "duration": duration, "timeout": 5})
        proc = children.spawn([sys.executable, str(BENCH / "pyload.py"), cfg],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            out, err = proc.communicate(timeout=duration + 60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            raise RuntimeError(f"pyload did not finish:\n{out}\n{err}") from None
        if proc.returncode != 0:
            raise RuntimeError(f"pyload exited with {proc.returncode}:\n{out}\n{err}")
        data = json.loads(out.strip().splitlines()[-1])
        r = LoadResult(raw=out, requests=data["requests"], seconds=data["seconds"])
        r.rps = r.requests / r.seconds if r.seconds else 0.0
        for pct in ("50", "75", "90", "99"):
            v = data.get(f"p{pct}")
            setattr(r, f"p{pct}_ms", v * 1000 if v is not None else None)
        for status, n in data["statuses"].items():
            if status != "200":
                r.error_detail[f"HTTP {status}"] = n
        if data["socket_errors"]:
            r.error_detail["socket errors"] = data["socket_errors"]
        r.errors = sum(r.error_detail.values())
        return r


def system_busy() -> tuple[float, float, float]:
    """(busy, steal, total) CPU seconds of the whole machine so far, all cores."""
    t = psutil.cpu_times()
    total = sum(t)
    idle = t.idle + getattr(t, "iowait", 0.0)
    steal = getattr(t, "steal", 0.0)
    return total - idle - steal, steal, total


def measured_load(loadgen: Wrk | PyLoad, children: Children, server: psutil.Process, url: str, body: str,
                  headers: dict[str, str], connections: int, duration: float) -> LoadResult:
    """One load run with the server's RSS sampled, and the CPU used by the server, the load
    generator and everything else on the machine measured."""
    before_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy0, steal0, _ = system_busy()
    cpu0, t0 = cpu_seconds(server), time.perf_counter()
    with RssSampler(server) as sampler:
        result = loadgen.run(children, url, body, headers, connections, duration)
    wall = time.perf_counter() - t0
    server_cpu = cpu_seconds(server) - cpu0
    busy1, steal1, _ = system_busy()
    after_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    result.peak_rss = sampler.peak
    result.server_cpu_pct = 100 * server_cpu / wall
    used = (after_children.ru_utime - before_children.ru_utime) + (after_children.ru_stime - before_children.ru_stime)
    result.loadgen_cpu_pct = 100 * used / wall
    result.machine_busy_pct = 100 * (busy1 - busy0) / wall
    result.other_cpu_pct = max(0.0, result.machine_busy_pct - result.server_cpu_pct - result.loadgen_cpu_pct)
    result.steal_pct = 100 * (steal1 - steal0) / wall
    return result


# -- the two servers -----------------------------------------------------------


def clean_env(home: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAPIS_", "AZURE_OPENAI", "OPENAI_"))}
    if home is not None:
        env["LAPIS_HOME"] = str(home)
        # This benchmark measures the serving path; the demo deployment's
        # 50K TPM would answer most of this load with 429s. What limiting
        # costs is measured by bench/ratelimit_throughput.py.
        env["LAPIS_RATELIMIT"] = "off"
    return env


@dataclass
class Lapis:
    proc: subprocess.Popen
    port: int
    home: Path
    log_path: Path
    ready_s: float = 0.0
    admin_token: str = ""

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def start_lapis(children: Children, home: Path, timeout: float = 30.0) -> Lapis:
    port = free_port()
    log_path = home.parent / f"{home.name}.log"
    server_file = home / "server.json"
    log = open(log_path, "wb")
    t0 = time.perf_counter()
    proc = children.spawn([sys.executable, "-m", "lapis", "serve", "--port", str(port), "--demo"],
                          env=clean_env(home), stdout=log, stderr=subprocess.STDOUT, cwd=str(home.parent))
    log.close()
    lapis = Lapis(proc=proc, port=port, home=home, log_path=log_path)
    deadline = t0 + timeout
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"lapis exited with {proc.returncode}:\n{lapis.log_tail()}")
        try:
            status, _ = http_request(port, "GET", "/healthz", timeout=1)
        except OSError:
            status = 0
        if status == 200 and server_file.exists():
            lapis.ready_s = time.perf_counter() - t0
            try:
                lapis.admin_token = json.loads(server_file.read_text())["admin_token"]
            except (ValueError, KeyError) as exc:
                raise RuntimeError(f"server.json unreadable: {exc}") from None
            return lapis
        time.sleep(0.005)
    raise RuntimeError(f"lapis did not become ready in {timeout} s:\n{lapis.log_tail()}")


def demo_endpoint(lapis: Lapis) -> tuple[str, str]:
    """(data-plane path prefix on the Lapis port, key1) of the demo account, through ARM."""
    auth = {"Authorization": f"Bearer {lapis.admin_token}"}
    status, raw = http_request(lapis.port, "GET", f"{ACCOUNT_PATH}?api-version={ARM_API}", headers=auth)
    if status != 200:
        raise RuntimeError(f"GET demo account: {status} {raw[:500]!r}")
    endpoint = json.loads(raw)["properties"]["endpoint"].rstrip("/")
    status, raw = http_request(lapis.port, "POST", f"{ACCOUNT_PATH}/listKeys?api-version={ARM_API}",
                               body=b"", headers=auth)
    if status != 200:
        raise RuntimeError(f"listKeys: {status} {raw[:500]!r}")
    key = json.loads(raw)["key1"]
    prefix = f"http://127.0.0.1:{lapis.port}"
    if not endpoint.startswith(prefix):
        raise RuntimeError(f"demo endpoint {endpoint} is not on {prefix}")
    return endpoint[len(prefix):], key


def start_bare(children: Children, workdir: Path, timeout: float = 15.0) -> tuple[subprocess.Popen, int]:
    port = free_port()
    log = open(workdir / "bare.log", "wb")
    proc = children.spawn([sys.executable, str(BENCH / "bare_server.py"), str(port)],
                          env=clean_env(), stdout=log, stderr=subprocess.STDOUT, cwd=str(workdir))
    log.close()
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"bare server exited with {proc.returncode}:\n"
                               f"{(workdir / 'bare.log').read_text(errors='replace')}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc, port
        except OSError:
            time.sleep(0.01)
    raise RuntimeError("bare server did not start listening")


def preflight(port: int, path: str, body: str, headers: dict[str, str], expect_chat: bool) -> int:
    """One request that must answer 200 (with a chat.completion from Lapis); returns the answer's size."""
    status, raw = http_request(port, "POST", path, body=body.encode(), headers=headers)
    if status != 200:
        raise RuntimeError(f"preflight POST {path} answered {status}: {raw[:800]!r}")
    if expect_chat:
        doc = json.loads(raw)
        if doc.get("object") != "chat.completion":
            raise RuntimeError(f"preflight answer is not a chat.completion: {raw[:800]!r}")
    return len(raw)


# -- report --------------------------------------------------------------------


def fmt_ms(v: float | None) -> str:
    return "   n/a" if v is None else f"{v:6.2f}"


def show_load(label: str, r: LoadResult) -> None:
    detail = ", ".join(f"{k} {v}" for k, v in r.error_detail.items()) or "none"
    print(f"  {label:<10} {r.ok_rps:7.0f} req/s  p50 {fmt_ms(r.p50_ms)} ms  p99 {fmt_ms(r.p99_ms)} ms  "
          f"errors {r.errors} ({detail}); {r.requests} requests in {r.seconds:.2f} s")
    print(f"  {'':<10} CPU: server {r.server_cpu_pct:.0f}%, load generator {r.loadgen_cpu_pct:.0f}%, "
          f"rest of machine {r.other_cpu_pct:.0f}%, steal {r.steal_pct:.0f}% (of {100 * (os.cpu_count() or 1)}%); "
          f"server peak RSS {r.peak_rss / MB:.1f} MB")


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def combine(runs: list[LoadResult]) -> LoadResult:
    """Median req/s and latencies over rounds; errors summed; RSS peak is the max."""
    if len(runs) == 1:
        return runs[0]
    out = LoadResult()
    out.requests = sum(r.requests for r in runs)
    out.seconds = sum(r.seconds for r in runs)
    out.errors = sum(r.errors for r in runs)
    for r in runs:
        for k, v in r.error_detail.items():
            out.error_detail[k] = out.error_detail.get(k, 0) + v
    out.rps = median([r.rps for r in runs])
    for name in ("p50_ms", "p75_ms", "p90_ms", "p99_ms", "server_cpu_pct", "loadgen_cpu_pct",
                 "machine_busy_pct", "other_cpu_pct", "steal_pct"):
        vals = [getattr(r, name) for r in runs if getattr(r, name) is not None]
        setattr(out, name, median(vals) if vals else None)
    out.peak_rss = max(r.peak_rss for r in runs)
    out._ok_rps = median([r.ok_rps for r in runs])  # type: ignore[attr-defined]
    return out


def ok_rps(r: LoadResult) -> float:
    return getattr(r, "_ok_rps", r.ok_rps)


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

    # SIGTERM/SIGHUP -> SystemExit, so the finally below stops every child.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, frame: sys.exit(128 + signum))

    children = Children()
    workdir = Path(tempfile.mkdtemp(prefix="lapis-bench-"))
    results: dict[str, Any] = {}
    try:
        wrk_path = shutil.which("wrk")
        if args.loadgen == "wrk" and not wrk_path:
            print("wrk is not installed (apt-get install -y wrk)", file=sys.stderr)
            return 1
        loadgen: Wrk | PyLoad
        if wrk_path and args.loadgen != "python":
            loadgen = Wrk(wrk_path, args.threads, args.strict_status, workdir)
        else:
            loadgen = PyLoad()
        body = chat_body()
        n_messages = len(json.loads(body)["messages"])
        cores = os.cpu_count() or 1

        print("Lapis chat throughput benchmark")
        print(f"  machine   {cores} CPUs, {platform.system()} {platform.release()}, "
              f"Python {platform.python_version()} ({sys.executable}), event loop: "
              f"{'uvloop' if _has_uvloop() else 'asyncio (uvloop not installed)'} for both servers")
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
            lapis = start_lapis(children, home)
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
                      "answer_bytes": lapis_answer, "runs": [_load_dict(r) for r in runs["Lapis"]]},
            "baseline": {"idle_rss_mb": bare_idle / MB, "loaded_peak_rss_mb": bare_load.peak_rss / MB,
                         "answer_bytes": bare_answer, "runs": [_load_dict(r) for r in runs["baseline"]]},
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


def _has_uvloop() -> bool:
    try:
        import uvloop  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        return False
    return True


def _load_dict(r: LoadResult) -> dict[str, Any]:
    return {"rps": r.rps, "ok_rps": r.ok_rps, "requests": r.requests, "seconds": r.seconds,
            "p50_ms": r.p50_ms, "p75_ms": r.p75_ms, "p90_ms": r.p90_ms, "p99_ms": r.p99_ms,
            "errors": r.errors, "error_detail": r.error_detail, "server_cpu_pct": r.server_cpu_pct,
            "loadgen_cpu_pct": r.loadgen_cpu_pct, "other_cpu_pct": r.other_cpu_pct, "steal_pct": r.steal_pct,
            "peak_rss_mb": r.peak_rss / MB}


if __name__ == "__main__":
    sys.exit(main())
