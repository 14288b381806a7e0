-- Lapis schema, version 5: serving (issue #5). Engines registered per region
-- and model (backends), load-balancing pools bound to one deployment with
-- their members, and injected faults. Values are lapis.serving.specs.
-- Names are case-insensitive: each keeps its case and a lower-cased *_key
-- column that uniqueness and lookups use. `secret` is written and read only
-- by lapis.store.serving (_seal / _unseal), so encryption at rest fits there.
-- Portable SQL: runs on SQLite and PostgreSQL alike. Times are ISO-8601 UTC.

CREATE TABLE serving_backends (
    id_key TEXT PRIMARY KEY,
    id TEXT NOT NULL,
    region TEXT NOT NULL,
    model TEXT NOT NULL,
    kind TEXT NOT NULL,
    url TEXT NOT NULL,
    upstream_model TEXT NOT NULL,
    deployment TEXT NOT NULL,
    api_version TEXT NOT NULL,
    auth TEXT NOT NULL,
    secret TEXT NOT NULL,
    timeout_s DOUBLE PRECISION NOT NULL,
    weight INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE serving_pools (
    subscription_id TEXT NOT NULL REFERENCES subscriptions(id) ON DELETE CASCADE,
    name_key TEXT NOT NULL,
    name TEXT NOT NULL,
    deployment_id TEXT NOT NULL,
    deployment_key TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (subscription_id, name_key)
);

CREATE TABLE serving_pool_members (
    subscription_id TEXT NOT NULL,
    pool_key TEXT NOT NULL,
    id_key TEXT NOT NULL,
    id TEXT NOT NULL,
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    priority INTEGER NOT NULL,
    weight INTEGER NOT NULL,
    PRIMARY KEY (subscription_id, pool_key, id_key),
    FOREIGN KEY (subscription_id, pool_key) REFERENCES serving_pools(subscription_id, name_key) ON DELETE CASCADE
);

CREATE TABLE serving_faults (
    scope TEXT NOT NULL,
    target_key TEXT NOT NULL,
    target TEXT NOT NULL,
    rate_429 DOUBLE PRECISION NOT NULL,
    rate_503 DOUBLE PRECISION NOT NULL,
    retry_after_s DOUBLE PRECISION NOT NULL,
    latency_ms DOUBLE PRECISION NOT NULL,
    hang INTEGER NOT NULL,
    cut_after INTEGER NULL,
    down INTEGER NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (scope, target_key)
)
