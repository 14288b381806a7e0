"""What the benchmarks in bench/ share: child processes, Lapis start-up, plain HTTP,
CPU and RSS readings, and the printed report's small helpers.

bench/ is not a package: each script puts its own folder on sys.path and imports
`common` (and `loadgen` for wrk and the Python fallback). Nothing here measures on
its own; the scripts decide what to run and what to judge.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import psutil

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
SUBSCRIPTION = "2c6d6e8a-6c61-7069-7300-000000000001"
ACCOUNT_PATH = (f"/subscriptions/{SUBSCRIPTION}/resourceGroups/lapis-demo"
                "/providers/Microsoft.CognitiveServices/accounts/lapis-demo")
ARM_API = "2025-06-01"
DEPLOYMENT = "gpt-4o-mini"
API_VERSION = "2024-10-21"

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


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def exit_on_signals(*signals: int) -> None:
    """SIGTERM/SIGHUP (and whatever else is named) -> SystemExit, so `finally` stops every child."""
    for sig in signals or (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, frame: sys.exit(128 + signum))


def has_uvloop() -> bool:
    try:
        import uvloop  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        return False
    return True


# -- CPU and memory --------------------------------------------------------------


def _tree(proc: psutil.Process) -> list[psutil.Process]:
    """A process and its children (Lapis's observer process is its child); [] once it is gone."""
    try:
        return [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return []


def _sum(procs: list[psutil.Process], read: Callable[[psutil.Process], float]) -> float:
    total = 0.0
    for p in procs:
        try:
            total += read(p)
        except psutil.Error:  # a child that exited meanwhile
            pass
    return total


def tree_rss(proc: psutil.Process) -> int:
    """RSS of a process and its children, in bytes (0 once it is gone)."""
    return int(_sum(_tree(proc), lambda p: p.memory_info().rss))


def cpu_seconds(proc: psutil.Process) -> float:
    """CPU of a process and its children, in seconds."""
    return _sum(_tree(proc), lambda p: sum(p.cpu_times()[:2]))


def system_busy() -> tuple[float, float, float]:
    """(busy, steal, total) CPU seconds of the whole machine so far, all cores."""
    t = psutil.cpu_times()
    total = sum(t)
    idle = t.idle + getattr(t, "iowait", 0.0)
    steal = getattr(t, "steal", 0.0)
    return total - idle - steal, steal, total


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


def clean_env(home: Path | None = None, **extra: str) -> dict[str, str]:
    """The environment for a child: this one without LAPIS_*, AZURE_OPENAI* and OPENAI_*
    (a developer's own settings must not leak into a measured server), plus LAPIS_HOME
    when given and `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAPIS_", "AZURE_OPENAI", "OPENAI_"))}
    if home is not None:
        env["LAPIS_HOME"] = str(home)
    env.update(extra)
    return env


def wait_listening(proc: subprocess.Popen, port: int, what: str, log_path: Path, timeout: float = 15.0) -> None:
    """Until something accepts TCP connections on the port; RuntimeError with the log when not."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{log_path.read_text(errors='replace')}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.01)
    raise RuntimeError(f"{what} did not start listening")


def start_bare(children: Children, workdir: Path, timeout: float = 15.0) -> tuple[subprocess.Popen, int]:
    """bench/bare_server.py (aiohttp.web + msgspec, one POST route) on a free port."""
    port = free_port()
    log_path = workdir / "bare.log"
    with open(log_path, "wb") as log:
        proc = children.spawn([sys.executable, str(BENCH / "bare_server.py"), str(port)],
                              env=clean_env(), stdout=log, stderr=subprocess.STDOUT, cwd=str(workdir))
    wait_listening(proc, port, "bare server", log_path, timeout)
    return proc, port


# -- Lapis ---------------------------------------------------------------------


@dataclass
class Lapis:
    """One `python -m lapis serve` child; `admin_token` is the local admin credential from server.json."""

    proc: subprocess.Popen
    port: int
    home: Path
    log_path: Path
    ready_s: float = 0.0
    admin_token: str = ""
    label: str = "lapis"

    @property
    def ps(self) -> psutil.Process:
        return psutil.Process(self.proc.pid)

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def call(self, method: str, path: str, body: Any = None, api_version: str | None = ARM_API) -> tuple[int, Any]:
        """An admin call (ARM or /lapis/admin) with the admin bearer token; (status, JSON or text)."""
        if api_version:
            path = f"{path}{'&' if '?' in path else '?'}api-version={api_version}"
        raw_body = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {self.admin_token}", "Content-Type": "application/json"}
        status, raw = http_request(self.port, method, path, body=raw_body, headers=headers, timeout=30)
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode(errors="replace")


def start_lapis(children: Children, home: Path, *, demo: bool = True, label: str = "lapis",
                log_path: Path | None = None, cwd: Path | None = None, timeout: float = 30.0,
                poll_s: float = 0.005, **env: str) -> Lapis:
    """`python -m lapis serve [--demo]` on a free port with LAPIS_HOME=home and `env`; returns once
    GET /healthz answers 200 and server.json (with the admin token) exists, timed as ready_s."""
    port = free_port()
    log_path = log_path or home.parent / f"{home.name}.log"
    server_file = home / "server.json"
    args = [sys.executable, "-m", "lapis", "serve", "--port", str(port)] + (["--demo"] if demo else [])
    t0 = time.perf_counter()
    with open(log_path, "wb") as log:
        proc = children.spawn(args, env=clean_env(home, **env), stdout=log, stderr=subprocess.STDOUT,
                              cwd=str(cwd or home.parent))
    lapis = Lapis(proc=proc, port=port, home=home, log_path=log_path, label=label)
    deadline = t0 + timeout
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{label}: lapis exited with {proc.returncode}:\n{lapis.log_tail()}")
        try:
            status, _ = http_request(port, "GET", "/healthz", timeout=1)
        except OSError:
            status = 0
        if status == 200 and server_file.exists():
            lapis.ready_s = time.perf_counter() - t0
            try:
                lapis.admin_token = json.loads(server_file.read_text())["admin_token"]
            except (ValueError, KeyError):
                time.sleep(0.05)  # written but not yet complete
                continue
            return lapis
        time.sleep(poll_s)
    raise RuntimeError(f"{label}: lapis did not become ready in {timeout} s:\n{lapis.log_tail()}")


def demo_endpoint(lapis: Lapis) -> tuple[str, str]:
    """(data-plane path prefix on the Lapis port, key1) of the demo account, through ARM."""
    status, doc = lapis.call("GET", ACCOUNT_PATH)
    if status != 200:
        raise RuntimeError(f"GET demo account: {status} {str(doc)[:500]}")
    endpoint = doc["properties"]["endpoint"].rstrip("/")
    status, keys = lapis.call("POST", f"{ACCOUNT_PATH}/listKeys")
    if status != 200:
        raise RuntimeError(f"listKeys: {status} {str(keys)[:500]}")
    prefix = f"http://127.0.0.1:{lapis.port}"
    if not endpoint.startswith(prefix):
        raise RuntimeError(f"demo endpoint {endpoint} is not on {prefix}")
    return endpoint[len(prefix):], keys["key1"]


def preflight(port: int, path: str, body: str, headers: dict[str, str], expect_chat: bool) -> int:
    """One request that must answer 200 (with a chat.completion when expect_chat); returns the answer's size."""
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


def verdict_lines(checks: list[tuple[str, str, bool]]) -> None:
    for text, target, ok in checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {text}  (target {target})")
