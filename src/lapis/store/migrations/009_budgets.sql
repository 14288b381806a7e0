-- Lapis schema, version 9: budgets and the notifications they sent (issue #6).
-- budgets: one row per budget, keyed by its scope and name compared without
-- case (`scope_key`, `name_key` lower-cased); `scope` and `name` are spelled
-- as written, `properties` is the budget's ARM `properties` without the spend
-- (JSON text), `etag` changes on every write.
-- budget_notices: one row per notification sent, the claim that makes a
-- notification go out once per budget period: the replica that inserts the
-- row sends it, a replica or a restart that finds it does not. `notice_key` is
-- the notification's name and threshold (lower-cased), `period_start` the
-- period's first instant (2026-07-01T00:00:00Z); `status` says what became of
-- it (claimed, delivered, failed, recorded).
-- Portable SQL: runs on SQLite and PostgreSQL alike.

CREATE TABLE budgets (
    scope_key TEXT NOT NULL,
    name_key TEXT NOT NULL,
    scope TEXT NOT NULL,
    name TEXT NOT NULL,
    properties TEXT NOT NULL,
    etag TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (scope_key, name_key)
);

CREATE TABLE budget_notices (
    scope_key TEXT NOT NULL,
    name_key TEXT NOT NULL,
    notice_key TEXT NOT NULL,
    period_start TEXT NOT NULL,
    claimed_at TEXT NOT NULL,
    claimed_by TEXT NOT NULL,
    spend_nano BIGINT NOT NULL,
    status TEXT NOT NULL,
    PRIMARY KEY (scope_key, name_key, notice_key, period_start)
)
