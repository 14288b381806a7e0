"""Start and stop Lapis server processes for tests, and call their ARM API."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SUBSCRIPTION = "2c6d6e8a-6c61-7069-7300-000000000001"
ARM_API = "2025-06-01"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LapisProcess:
    home: Path
    port: int
    env: dict[str, str]
    proc: subprocess.Popen | None = None
    log_path: Path | None = None
    admin_token: str = ""
    extra_args: list[str] = field(default_factory=list)

    @property
    def tls(self) -> bool:
        return "--tls" in self.extra_args

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def verify(self) -> str | bool:
        """What requests should verify this server's certificate against."""
        return str(self.home / "tls" / "ca.pem") if self.tls else True

    def start(self, timeout: float = 20.0) -> None:
        self.log_path = self.home / "server.log"
        self.home.mkdir(parents=True, exist_ok=True)
        server_file = self.home / "server.json"
        if server_file.exists():
            server_file.unlink()
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lapis", "serve", "--port", str(self.port), *self.extra_args],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=str(self.home),
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"lapis exited with {self.proc.returncode}:\n{self.log()}")
            if server_file.exists():
                try:
                    if requests.get(f"{self.url}/healthz", timeout=1, verify=self.verify).status_code == 200:
                        self.admin_token = json.loads(server_file.read_text())["admin_token"]
                        return
                except (requests.ConnectionError, ValueError, KeyError):
                    pass
            time.sleep(0.05)
        raise RuntimeError(f"lapis did not become ready:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self, observer: bool = False) -> list[int]:
        """kill -9: no clean-up, no flush. Its observer process (lapis.observe.observer) too
        when `observer`; else the observer finishes on its own: the pids of those left running."""
        children = self.observers()
        if observer:
            for pid in children:
                os.kill(pid, signal.SIGKILL)
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        return [] if observer else children

    def observers(self) -> list[int]:
        """The pids of the server's child processes (its observer), read from /proc."""
        if self.proc is None:
            return []
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.proc.pid:
                found.append(int(stat.parent.name))
        return found


    # -- ARM helpers ---------------------------------------------------------

    def arm(self, method: str, path: str, body: Any = None, api_version: str = ARM_API,
            token: str | None = None) -> requests.Response:
        headers = {"Authorization": f"Bearer {token or self.admin_token}"}
        return requests.request(method, f"{self.url}{path}", params={"api-version": api_version},
                                json=body, headers=headers, timeout=30, verify=self.verify)

    def account_path(self, group: str, name: str, sub: str = DEFAULT_SUBSCRIPTION) -> str:
        return f"/subscriptions/{sub}/resourceGroups/{group}/providers/Microsoft.CognitiveServices/accounts/{name}"

    def demo_env(self) -> dict[str, str]:
        path = self.account_path("lapis-demo", "lapis-demo")
        account = self.arm("GET", path).json()
        keys = self.arm("POST", f"{path}/listKeys").json()
        return {
            "AZURE_OPENAI_ENDPOINT": account["properties"]["endpoint"].rstrip("/"),
            "AZURE_OPENAI_DEPLOYMENT": "gpt-4o-mini",
            "AZURE_OPENAI_KEY": keys["key1"],
            "AZURE_OPENAI_API_VERSION": "2024-10-21",
        }


def server_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAPIS_", "AZURE_OPENAI", "OPENAI_"))}
    env["LAPIS_HOME"] = str(home)
    env["PYTHONPATH"] = str(ROOT / "src")
    database = os.environ.get("LAPIS_TEST_DATABASE_URL")
    if database:
        env["LAPIS_DATABASE_URL"] = database
    env.update(extra)
    return env


def start_server(home: Path, demo: bool = False, port: int | None = None, tls: bool = False,
                 **extra_env: str) -> LapisProcess:
    args = (["--demo"] if demo else []) + (["--tls"] if tls else [])
    server = LapisProcess(home=home, port=port or free_port(), env=server_env(home, **extra_env), extra_args=args)
    server.start()
    return server


def wait_gone(pids: list[int], timeout: float = 20.0) -> bool:
    """Wait for the processes to exit; True when none is left."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not [pid for pid in pids if Path(f"/proc/{pid}").exists() and _alive(pid)]:
            return True
        time.sleep(0.05)
    return False


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; its parent (dead) just has not reaped it
