"""Settings: the only module that reads the environment.

Every knob Lapis has is a field here, read once at start-up into a frozen
`Settings`, and passed down. Nothing else calls os.environ.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_PORT = 8080
# Azure caps one chat message at 1,048,576 characters; a request may hold
# several, so the gateway's own body cap sits well above that. Bigger bodies
# get 413 (see errors.catalogue.request_too_large).
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Settings:
    home: Path
    database_url: str
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    public_url: str = ""  # base URL clients use; derived from host/port when empty
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    sim_ttft_ms: float = 0.0
    sim_token_ms: float = 0.0
    demo: bool = False
    redis_url: str = ""  # LAPIS_REDIS_URL: rate-limit counters shared by replicas; empty = in-process
    ratelimit_failure: str = "open"  # what to do when Redis is unreachable: open | closed
    ratelimit: bool = True  # LAPIS_RATELIMIT=off turns per-deployment limits off (benchmarks, load tests)
    tls: bool = False  # LAPIS_TLS / serve --tls: HTTPS with a local CA (lapis.certificates)
    trusted_proxies: tuple[str, ...] = ()  # LAPIS_TRUSTED_PROXIES: addresses/CIDRs whose X-Forwarded-For is believed
    server_url: str = ""  # for the CLI: LAPIS_URL, overriding the one in LAPIS_HOME
    kek_path: str = ""  # LAPIS_KEK_FILE: the service key-encryption key; default LAPIS_HOME/keys/kek (lapis.crypto.kek)
    diagnostics_queue: int = 10_000  # LAPIS_DIAGNOSTICS_QUEUE: records each log sink may hold while it is slow or down
    diagnostics_max_backoff: float = 5.0  # LAPIS_DIAGNOSTICS_MAX_BACKOFF: seconds between retries of a sink, at most
    workspace_file_bytes: int = 64 * 1024 * 1024  # LAPIS_WORKSPACE_FILE_BYTES: a workspace table file rotates past this
    workspace_files: int = 4  # LAPIS_WORKSPACE_FILES: rotated files kept per table, besides the current one
    eventhubs_url: str = ""  # LAPIS_EVENTHUBS_URL: the Redis behind Event Hubs destinations; else LAPIS_REDIS_URL
    metrics: bool = True  # LAPIS_METRICS=off: no /metrics, no rollups, no usage metering (lapis.metrics)
    metrics_retention_days: int = 93  # LAPIS_METRICS_RETENTION_DAYS: per-minute rollups kept (Azure keeps 93 days)
    metrics_flush_s: float = 5.0  # LAPIS_METRICS_FLUSH_SECONDS: rollups go from memory to the store this often
    observer: str = "process"  # LAPIS_OBSERVER: process | inline: where metrics and log sinks run (lapis.observe.relay)
    usage_retention_days: int = 400  # LAPIS_USAGE_RETENTION_DAYS: metered requests kept (cost history)
    upstream_deadline_s: float = 120.0  # LAPIS_UPSTREAM_DEADLINE_S: a request's budget for engine attempts and retries
    budget_interval_s: float = 5.0  # LAPIS_BUDGET_INTERVAL_S: seconds between budget evaluations
    budget_clock_offset_s: float = 0.0  # LAPIS_BUDGET_CLOCK_OFFSET_S: tests only: moves budget periods
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "", "::") else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    @property
    def observer_process(self) -> bool:
        """Metrics and log sinks run in an observer process; not with an in-memory store (it shares the store)."""
        return self.observer == "process" and ":memory:" not in self.database_url

    @property
    def kek_file(self) -> Path:
        """The service-managed key-encryption key. Replicas sharing a database must share it."""
        return Path(self.kek_path).expanduser() if self.kek_path else self.home / "keys" / "kek"

    @property
    def server_file(self) -> Path:
        """Where a running server writes its URL and admin credential."""
        return self.home / "server.json"


def _float(env: dict[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    return float(raw) if raw else default


def _choice(env: dict[str, str], name: str, choices: tuple[str, ...]) -> str:
    """One of `choices` (the first when unset); anything else is refused at start-up."""
    raw = env.get(name, "").strip().lower() or choices[0]
    if raw not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, not {raw!r}")
    return raw


def _int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    return int(raw) if raw else default


def load(env: dict[str, str] | None = None, **overrides: object) -> Settings:
    """Read settings from the environment (or `env`), then apply overrides."""
    env = dict(os.environ if env is None else env)
    home = Path(env.get("LAPIS_HOME") or Path.home() / ".lapis").expanduser()
    database_url = env.get("LAPIS_DATABASE_URL") or f"sqlite:///{home / 'data' / 'lapis.sqlite3'}"
    values: dict[str, object] = dict(
        home=home,
        database_url=database_url,
        host=env.get("LAPIS_HOST", "127.0.0.1"),
        port=_int(env, "LAPIS_PORT", DEFAULT_PORT),
        public_url=env.get("LAPIS_PUBLIC_URL", ""),
        max_body_bytes=_int(env, "LAPIS_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES),
        sim_ttft_ms=_float(env, "LAPIS_SIM_TTFT_MS", 0.0),
        sim_token_ms=_float(env, "LAPIS_SIM_TOKEN_MS", 0.0),
        demo=env.get("LAPIS_DEMO", "").lower() in ("1", "true", "yes"),
        redis_url=env.get("LAPIS_REDIS_URL", ""),
        ratelimit_failure=env.get("LAPIS_RATELIMIT_FAILURE", "open").lower(),
        ratelimit=env.get("LAPIS_RATELIMIT", "on").lower() not in ("off", "0", "false", "no"),
        tls=env.get("LAPIS_TLS", "").lower() in ("1", "true", "yes"),
        trusted_proxies=tuple(p.strip() for p in env.get("LAPIS_TRUSTED_PROXIES", "").split(",") if p.strip()),
        server_url=env.get("LAPIS_URL", ""),
        kek_path=env.get("LAPIS_KEK_FILE", ""),
        diagnostics_queue=_int(env, "LAPIS_DIAGNOSTICS_QUEUE", 10_000),
        diagnostics_max_backoff=_float(env, "LAPIS_DIAGNOSTICS_MAX_BACKOFF", 5.0),
        workspace_file_bytes=_int(env, "LAPIS_WORKSPACE_FILE_BYTES", 64 * 1024 * 1024),
        workspace_files=_int(env, "LAPIS_WORKSPACE_FILES", 4),
        eventhubs_url=env.get("LAPIS_EVENTHUBS_URL", ""),
        upstream_deadline_s=_float(env, "LAPIS_UPSTREAM_DEADLINE_S", 120.0),
        metrics=env.get("LAPIS_METRICS", "on").lower() not in ("off", "0", "false", "no"),
        metrics_retention_days=_int(env, "LAPIS_METRICS_RETENTION_DAYS", 93),
        metrics_flush_s=_float(env, "LAPIS_METRICS_FLUSH_SECONDS", 5.0),
        observer=_choice(env, "LAPIS_OBSERVER", ("process", "inline")),
        usage_retention_days=_int(env, "LAPIS_USAGE_RETENTION_DAYS", 400),
        budget_interval_s=_float(env, "LAPIS_BUDGET_INTERVAL_S", 5.0),
        budget_clock_offset_s=_float(env, "LAPIS_BUDGET_CLOCK_OFFSET_S", 0.0),
    )
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(**values)  # type: ignore[arg-type]
