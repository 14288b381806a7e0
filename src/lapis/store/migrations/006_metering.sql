-- Lapis schema, version 6: metrics rollups and usage metering (issue #6).
-- metric_rollups: one row per minute and dimension set, what Azure Monitor's
-- metrics are computed from. Replicas add their partial minutes into the same
-- row (INSERT ... ON CONFLICT DO UPDATE adding the sums), so the key holds no
-- replica. `minute` is epoch seconds / 60 (UTC), `streaming` 0 or 1.
-- usage_records: one row per metered request, keyed by the request id, so a
-- batch written twice counts once (INSERT ... ON CONFLICT DO NOTHING). Costs
-- are integers in nano-USD (1e-9 USD), so sums are exact.
-- Portable SQL: runs on SQLite and PostgreSQL alike.

CREATE TABLE metric_rollups (
    account_id TEXT NOT NULL,
    minute BIGINT NOT NULL,
    deployment TEXT NOT NULL,
    model TEXT NOT NULL,
    model_version TEXT NOT NULL,
    region TEXT NOT NULL,
    status_code INTEGER NOT NULL,
    streaming INTEGER NOT NULL,
    operation TEXT NOT NULL,
    requests BIGINT NOT NULL,
    prompt_tokens BIGINT NOT NULL,
    generated_tokens BIGINT NOT NULL,
    cached_tokens BIGINT NOT NULL,
    ttfb_sum DOUBLE PRECISION NOT NULL,
    ttfb_min DOUBLE PRECISION NOT NULL,
    ttfb_max DOUBLE PRECISION NOT NULL,
    ttlt_sum DOUBLE PRECISION NOT NULL,
    ttlt_min DOUBLE PRECISION NOT NULL,
    ttlt_max DOUBLE PRECISION NOT NULL,
    tps_sum DOUBLE PRECISION NOT NULL,
    tps_count BIGINT NOT NULL,
    tbt_sum DOUBLE PRECISION NOT NULL,
    tbt_count BIGINT NOT NULL,
    PRIMARY KEY (account_id, minute, deployment, model, model_version, region, status_code, streaming, operation)
);

CREATE INDEX metric_rollups_by_minute ON metric_rollups (minute);

CREATE TABLE usage_records (
    request_id TEXT PRIMARY KEY,
    time_ms BIGINT NOT NULL,
    usage_day INTEGER NOT NULL,
    subscription_id TEXT NOT NULL,
    resource_group TEXT NOT NULL,
    account_id TEXT NOT NULL,
    account_arm_id TEXT NOT NULL,
    location TEXT NOT NULL,
    deployment TEXT NOT NULL,
    model TEXT NOT NULL,
    model_version TEXT NOT NULL,
    sku TEXT NOT NULL,
    caller TEXT NOT NULL,
    operation TEXT NOT NULL,
    tags TEXT NOT NULL,
    prompt_tokens BIGINT NOT NULL,
    cached_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    cost_input_nano BIGINT NOT NULL,
    cost_cached_nano BIGINT NOT NULL,
    cost_output_nano BIGINT NOT NULL
);

CREATE INDEX usage_records_by_subscription ON usage_records (subscription_id, time_ms);

CREATE INDEX usage_records_by_time ON usage_records (time_ms)
