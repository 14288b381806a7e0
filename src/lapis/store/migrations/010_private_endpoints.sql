-- Lapis schema, version 10: private endpoints (issue #4).
-- A private endpoint is a Microsoft.Network/privateEndpoints resource in a
-- resource group (`group_key`, `name_key`: lower-cased, as ARM compares
-- names) bound to one account (`account_id`, the internal id). Lapis gives it
-- a listener of its own: `address` and `port`, unique together, on which the
-- account is served even with public network access disabled
-- (lapis.network.private_endpoints). `doc` keeps what ARM echoes back (tags,
-- subnet, the connection's name and request message, ipConfigurations, the
-- resource guid and etag) as JSON text.
-- Portable SQL: runs on SQLite and PostgreSQL alike.

CREATE TABLE private_endpoints (
    subscription_id TEXT NOT NULL,
    group_key TEXT NOT NULL,
    name_key TEXT NOT NULL,
    resource_group TEXT NOT NULL,
    name TEXT NOT NULL,
    location TEXT NOT NULL,
    account_id TEXT NOT NULL,
    address TEXT NOT NULL,
    port INTEGER NOT NULL,
    doc TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (subscription_id, group_key, name_key)
);

CREATE UNIQUE INDEX private_endpoints_by_listener ON private_endpoints (address, port);

CREATE INDEX private_endpoints_by_account ON private_endpoints (account_id)
