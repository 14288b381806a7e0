-- Lapis schema, version 8: diagnostic settings and the activity log (issues #4 and #6).
-- A diagnostic setting belongs to one account (`account_id`, the internal id):
-- its name is unique per account compared without case (`name_key`), it keeps
-- the account's ARM id and location as they were when it was written (the
-- location is the region of every sink it configures), and `properties` is the
-- ARM `properties` object as Lapis echoes it (JSON text).
-- The activity log keeps one row per audited event: `event` is the EventData
-- JSON as served; the other columns are what `$filter` compares (`*_key`
-- lower-cased, `event_timestamp` in the fixed-width form
-- 2024-05-24T12:23:02.4350000Z, so text order is time order).
-- Portable SQL: runs on SQLite and PostgreSQL alike.

CREATE TABLE diagnostic_settings (
    account_id TEXT NOT NULL,
    name_key TEXT NOT NULL,
    name TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    location TEXT NOT NULL,
    properties TEXT NOT NULL,
    created_at TEXT NOT NULL,
    created_by TEXT NULL,
    updated_at TEXT NOT NULL,
    updated_by TEXT NULL,
    PRIMARY KEY (account_id, name_key)
);

CREATE TABLE activity_log (
    id TEXT PRIMARY KEY,
    subscription_id TEXT NOT NULL,
    event_timestamp TEXT NOT NULL,
    resource_group_key TEXT NOT NULL,
    resource_id_key TEXT NOT NULL,
    provider_key TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    caller TEXT NOT NULL,
    status TEXT NOT NULL,
    event TEXT NOT NULL
);

CREATE INDEX activity_log_by_time ON activity_log (subscription_id, event_timestamp)
