-- Lapis schema, version 2: subscription quota (issue #3).
-- Usage is never stored: it is the sum of the deployments' sku.capacity.
-- What is stored is where a limit differs from the catalogue's default
-- (an approved quota increase) and the increase requests themselves.
-- Portable SQL: runs on SQLite and PostgreSQL alike.

CREATE TABLE quota_limits (
    subscription_id TEXT NOT NULL REFERENCES subscriptions(id) ON DELETE CASCADE,
    location TEXT NOT NULL,
    usage_name TEXT NOT NULL,
    limit_value INTEGER NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (subscription_id, location, usage_name)
);

CREATE TABLE quota_requests (
    id TEXT PRIMARY KEY,
    subscription_id TEXT NOT NULL REFERENCES subscriptions(id) ON DELETE CASCADE,
    location TEXT NOT NULL,
    usage_name TEXT NOT NULL,
    model TEXT NOT NULL,
    sku TEXT NOT NULL,
    requested_limit INTEGER NOT NULL,
    previous_limit INTEGER NOT NULL,
    state TEXT NOT NULL,
    created_at TEXT NOT NULL,
    decided_at TEXT NULL,
    decided_by TEXT NULL,
    reason TEXT NULL
);

CREATE INDEX quota_requests_by_subscription ON quota_requests (subscription_id, created_at);

CREATE INDEX accounts_by_location ON accounts (subscription_id, location)
