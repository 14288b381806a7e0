"""The servers of bench/gateway_throughput.py: the fast upstream engine, a bare aiohttp proxy in
front of it, Lapis in front of it, and the LiteLLM proxy in front of it (installed into a venv of
its own on first use).

    start_upstream   tests/support/fake_upstream.py as a child process: OpenAI-compatible
                     (/v1/chat/completions, /slow/v1/... for 200-chunk streams) and Azure-style
                     (/openai/deployments/{d}/chat/completions, api-key "fake-azure-key")
    start_bare_proxy bench/bare_proxy.py over the upstream's /v1/chat/completions: the body
                     forwarded unchanged through one pooled aiohttp.ClientSession with Lapis's
                     connector limits (the ceiling of an aiohttp proxy hop)
    start_gateway    `lapis serve --demo`, LAPIS_RATELIMIT=off, with openai-compatible backends
                     registered for gpt-4o-mini in eastus (the demo account's region) through
                     PUT /lapis/admin/backends/{id}, so the demo deployment is served by them
    ensure_litellm   `litellm[proxy]` in ~/.cache/lapis/litellm-venv (reused when the pinned
                     version is there)
    start_litellm    `litellm --config` with an azure/<name> model_list entry over the upstream's
                     Azure path (shared/docs/STACK.md: a random master key, the local cost map)
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from common import (
    API_VERSION, BENCH, DEPLOYMENT, ROOT, Children, Lapis, clean_env, demo_endpoint, free_port, http_request,
    start_lapis, wait_listening,
)

sys.path.insert(0, str(ROOT / "src"))
from lapis.backends.http import DNS_TTL_S, KEEPALIVE_S, POOL_SIZE  # noqa: E402 - the bare proxy pools alike

UPSTREAM_KEY = "fake-azure-key"  # what tests/support/fake_upstream.py accepts on its Azure paths
UPSTREAM_DEPLOYMENT = "fake"
UPSTREAM_TEXT = b"Hello from the fake upstream."
LITELLM_SPEC = "litellm[proxy]==1.108.7"  # later releases' proxy extra needs litellm-proxy, not on PyPI
LITELLM_VENV = Path.home() / ".cache" / "lapis" / "litellm-venv"


@dataclass
class Target:
    """Something to load: where, with which headers, and which process to watch."""

    name: str
    port: int
    path: str
    headers: dict[str, str]
    proc: subprocess.Popen
    ready_s: float = 0.0
    note: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"


def azure_path(prefix: str, deployment: str) -> str:
    return f"{prefix}/openai/deployments/{deployment}/chat/completions?api-version={API_VERSION}"


def start_upstream(children: Children, workdir: Path, chunk_delay: float) -> Target:
    port = free_port()
    log_path = workdir / "upstream.log"
    t0 = time.perf_counter()
    with open(log_path, "wb") as log:
        proc = children.spawn([sys.executable, "-m", "tests.support.fake_upstream", "--port", str(port),
                               "--chunk-delay", str(chunk_delay)],
                              env=clean_env(), stdout=log, stderr=subprocess.STDOUT, cwd=str(ROOT))
    wait_listening(proc, port, "fake upstream", log_path)
    headers = {"Content-Type": "application/json", "api-key": UPSTREAM_KEY}
    return Target("direct", port, azure_path("", UPSTREAM_DEPLOYMENT), headers, proc,
                  ready_s=time.perf_counter() - t0, note="tests/support/fake_upstream.py (aiohttp.web + msgspec, uvloop)")


def start_bare_proxy(children: Children, workdir: Path, upstream_port: int) -> Target:
    """bench/bare_proxy.py forwarding to the upstream's OpenAI-compatible chat path, with the connector
    limits of Lapis's backends; loaded on the same Azure path as the others (it ignores path and key)."""
    port = free_port()
    log_path = workdir / "bare-proxy.log"
    upstream = f"http://127.0.0.1:{upstream_port}/v1/chat/completions"
    t0 = time.perf_counter()
    with open(log_path, "wb") as log:
        proc = children.spawn([sys.executable, str(BENCH / "bare_proxy.py"), str(port), upstream,
                               "--limit", str(POOL_SIZE), "--keepalive", str(KEEPALIVE_S), "--dns-ttl", str(DNS_TTL_S)],
                              env=clean_env(), stdout=log, stderr=subprocess.STDOUT, cwd=str(workdir))
    wait_listening(proc, port, "bare proxy", log_path)
    headers = {"Content-Type": "application/json", "api-key": "bare-proxy-ignores-the-key-000000"}
    return Target("bare proxy", port, azure_path("", DEPLOYMENT), headers, proc, ready_s=time.perf_counter() - t0,
                  note=f"bench/bare_proxy.py (aiohttp.web + one pooled aiohttp.ClientSession, limit {POOL_SIZE}, "
                       f"uvloop) -> {upstream}")


def start_gateway(children: Children, home: Path, upstream_port: int, backends: int = 1, slow: bool = False,
                  env: dict[str, str] | None = None) -> tuple[Target, Lapis]:
    """Lapis with the demo account, gpt-4o-mini served by `backends` openai-compatible backends
    (all on the one upstream; /slow/v1 when `slow`, for 200-chunk streams); `env` is added to
    LAPIS_RATELIMIT=off."""
    home.mkdir()
    lapis = start_lapis(children, home, **{"LAPIS_RATELIMIT": "off", **(env or {})})
    base = f"http://127.0.0.1:{upstream_port}{'/slow' if slow else ''}/v1"
    for i in range(1, backends + 1):
        body = {"region": "eastus", "model": DEPLOYMENT, "kind": "openai-compatible", "url": base,
                "upstreamModel": UPSTREAM_DEPLOYMENT}
        status, doc = lapis.call("PUT", f"/lapis/admin/backends/bench-upstream-{i}", body, api_version=None)
        if status not in (200, 201):
            raise RuntimeError(f"PUT /lapis/admin/backends/bench-upstream-{i}: {status} {doc}")
    prefix, key = demo_endpoint(lapis)
    headers = {"Content-Type": "application/json", "api-key": key}
    extra = "".join(f", {k}={v}" for k, v in (env or {}).items())
    note = f"lapis serve --demo, LAPIS_RATELIMIT=off{extra}, {backends} openai-compatible backend(s) -> {base}"
    return Target("Lapis", lapis.port, azure_path(prefix, DEPLOYMENT), headers, lapis.proc, lapis.ready_s, note), lapis


def check_forwarded(target: Target, body: str) -> int:
    """One call that must answer 200 with the upstream's own words (so not the simulator)."""
    status, raw = http_request(target.port, "POST", target.path, body=body.encode(), headers=target.headers)
    if status != 200 or UPSTREAM_TEXT not in raw:
        raise RuntimeError(f"{target.name}: POST {target.path} answered {status}, not the upstream's text: {raw[:600]!r}")
    return len(raw)


# -- LiteLLM -------------------------------------------------------------------


def _installed_version(venv: Path) -> str:
    """The litellm version in the venv when it and the proxy's own dependencies are there, else ''."""
    python = venv / "bin" / "python"
    if not (venv / "bin" / "litellm").exists() or not python.exists():
        return ""
    probe = "import importlib.metadata as m, fastapi, uvicorn, backoff, yaml; print(m.version('litellm'))"
    done = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, timeout=120)
    return done.stdout.strip() if done.returncode == 0 else ""


def ensure_litellm(spec: str = LITELLM_SPEC, venv: Path = LITELLM_VENV, reinstall: bool = False) -> tuple[Path, str]:
    """(the `litellm` executable, its version); installs `spec` into a fresh venv when the pinned
    version is not already there. PyPI through pip, as configured on this machine."""
    wanted = spec.split("==", 1)[1] if "==" in spec else ""
    found = "" if reinstall else _installed_version(venv)
    if found and (not wanted or found == wanted):
        return venv / "bin" / "litellm", found
    print(f"  installing {spec} into {venv} (first run only; a few minutes) ...", flush=True)
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    log = venv.parent / "litellm-install.log"
    with open(log, "wb") as out:
        steps = [[sys.executable, "-m", "venv", str(venv)],
                 [str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", spec]]
        for step in steps:
            if subprocess.run(step, stdout=out, stderr=subprocess.STDOUT, timeout=1800).returncode != 0:
                raise RuntimeError(f"installing LiteLLM failed ({' '.join(step)}); see {log}")
    found = _installed_version(venv)
    if not found:
        raise RuntimeError(f"LiteLLM installed but does not import; see {log}")
    return venv / "bin" / "litellm", found


def start_litellm(children: Children, workdir: Path, exe: Path, upstream_port: int,
                  timeout: float = 180.0) -> Target:
    """The LiteLLM proxy as an Azure-style gateway: deployment gpt-4o-mini -> azure/fake on the upstream.
    One process (LiteLLM's default, like Lapis); its defaults otherwise (it logs every request)."""
    port = free_port()
    master_key = "sk-bench-" + secrets.token_hex(16)
    config = workdir / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        f"  - model_name: {DEPLOYMENT}\n"
        "    litellm_params:\n"
        f"      model: azure/{UPSTREAM_DEPLOYMENT}\n"
        f"      api_base: http://127.0.0.1:{upstream_port}\n"
        f"      api_key: {UPSTREAM_KEY}\n"
        f"      api_version: \"{API_VERSION}\"\n"
        "    model_info:\n"  # else it logs "Could not identify azure model" twice a request
        f"      base_model: azure/{DEPLOYMENT}\n"
        "general_settings:\n"
        "  master_key: os.environ/LITELLM_MASTER_KEY\n")
    env = clean_env(LITELLM_MASTER_KEY=master_key, LITELLM_LOCAL_MODEL_COST_MAP="True")
    log_path = workdir / "litellm.log"
    t0 = time.perf_counter()
    with open(log_path, "wb") as log:
        proc = children.spawn([str(exe), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)],
                              env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(workdir))
    deadline = t0 + timeout
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"litellm exited with {proc.returncode}:\n{tail}")
        try:
            status, _ = http_request(port, "GET", "/health/liveliness", timeout=1)
        except OSError:
            status = 0
        if status == 200:
            headers = {"Content-Type": "application/json", "api-key": master_key}
            return Target("LiteLLM", port, azure_path("", DEPLOYMENT), headers, proc, time.perf_counter() - t0,
                          f"litellm --config (azure/{UPSTREAM_DEPLOYMENT} over the upstream's Azure path)")
        time.sleep(0.25)
    raise RuntimeError(f"litellm did not become ready in {timeout} s:\n"
                       f"{log_path.read_text(errors='replace')[-3000:]}")
