"""Closed-loop HTTP load for bench/*.py: wrk (the Debian package) with a generated Lua
script, or bench/pyload.py in its own process when wrk is missing; and `measured_load`,
which runs one of them while reading the server's RSS and CPU, the load generator's CPU
and everything else the machine did meanwhile.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from common import BENCH, MB, Children, RssSampler, cpu_seconds, fmt_ms, median, system_busy


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


def load_dict(r: LoadResult) -> dict[str, Any]:
    return {"rps": r.rps, "ok_rps": r.ok_rps, "requests": r.requests, "seconds": r.seconds,
            "p50_ms": r.p50_ms, "p75_ms": r.p75_ms, "p90_ms": r.p90_ms, "p99_ms": r.p99_ms,
            "errors": r.errors, "error_detail": r.error_detail, "server_cpu_pct": r.server_cpu_pct,
            "loadgen_cpu_pct": r.loadgen_cpu_pct, "other_cpu_pct": r.other_cpu_pct, "steal_pct": r.steal_pct,
            "peak_rss_mb": r.peak_rss / MB}


def pick(choice: str, threads: int, strict_status: bool, workdir: Path) -> Wrk | PyLoad | None:
    """wrk when installed (and not --loadgen python), else bench/pyload.py; None when wrk was
    demanded (--loadgen wrk) and is missing."""
    wrk_path = shutil.which("wrk")
    if choice == "wrk" and not wrk_path:
        return None
    if wrk_path and choice != "python":
        return Wrk(wrk_path, threads, strict_status, workdir)
    return PyLoad()


def show_load(label: str, r: LoadResult) -> None:
    detail = ", ".join(f"{k} {v}" for k, v in r.error_detail.items()) or "none"
    print(f"  {label:<10} {r.ok_rps:7.0f} req/s  p50 {fmt_ms(r.p50_ms)} ms  p99 {fmt_ms(r.p99_ms)} ms  "
          f"errors {r.errors} ({detail}); {r.requests} requests in {r.seconds:.2f} s")
    print(f"  {'':<10} CPU: server (with its children) {r.server_cpu_pct:.0f}%, load generator {r.loadgen_cpu_pct:.0f}%, "
          f"rest of machine {r.other_cpu_pct:.0f}%, steal {r.steal_pct:.0f}% (of {100 * (os.cpu_count() or 1)}%); "
          f"server peak RSS {r.peak_rss / MB:.1f} MB")
