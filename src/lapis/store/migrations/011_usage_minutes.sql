-- Lapis schema, version 11: usage as per-minute sums (issue #6).
-- usage_minutes replaces usage_records (one row per request, whose random
-- TEXT key and two indexes cost ~25 us of store CPU per request). One row per
-- minute (epoch seconds / 60, UTC) and every dimension the usage queries group
-- or filter by; the writer adds its batch's sums into it (INSERT ... ON
-- CONFLICT DO UPDATE adding, as metric_rollups does), so replicas share rows.
-- Exactly once comes from usage_journal_marks, written in the same
-- transaction as the sums: per journal segment (lapis.usage.journal), the
-- highest line sequence number whose usage is in usage_minutes. Replay applies
-- only the lines above it.
-- usage_records' rows are moved here, summed per minute; the table stays, empty
-- and no longer written or read.
-- Portable SQL: runs on SQLite and PostgreSQL alike.

CREATE TABLE usage_minutes (
    minute BIGINT NOT NULL,
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
    requests BIGINT NOT NULL,
    prompt_tokens BIGINT NOT NULL,
    cached_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    cost_input_nano BIGINT NOT NULL,
    cost_cached_nano BIGINT NOT NULL,
    cost_output_nano BIGINT NOT NULL,
    PRIMARY KEY (minute, usage_day, subscription_id, resource_group, account_id, account_arm_id, location,
                 deployment, model, model_version, sku, caller, operation, tags)
);

CREATE INDEX usage_minutes_by_subscription ON usage_minutes (subscription_id, minute);

CREATE TABLE usage_journal_marks (
    segment TEXT PRIMARY KEY,
    seq BIGINT NOT NULL
);

INSERT INTO usage_minutes (minute, usage_day, subscription_id, resource_group, account_id, account_arm_id, location,
                           deployment, model, model_version, sku, caller, operation, tags, requests, prompt_tokens,
                           cached_tokens, completion_tokens, cost_input_nano, cost_cached_nano, cost_output_nano)
SELECT time_ms / 60000, usage_day, subscription_id, resource_group, account_id, account_arm_id, location, deployment,
       model, model_version, sku, caller, operation, tags, COUNT(*), SUM(prompt_tokens), SUM(cached_tokens),
       SUM(completion_tokens), SUM(cost_input_nano), SUM(cost_cached_nano), SUM(cost_output_nano)
FROM usage_records
GROUP BY time_ms / 60000, usage_day, subscription_id, resource_group, account_id, account_arm_id, location,
         deployment, model, model_version, sku, caller, operation, tags;

DELETE FROM usage_records
