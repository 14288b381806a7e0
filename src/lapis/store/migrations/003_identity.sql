-- Lapis schema, version 3: the directory (issue #4). Signing keys for the
-- token service, service principals with hashed client secrets, and managed
-- identities (system-assigned per account, user-assigned per ARM resource,
-- and the server's own workload identity).
-- Portable SQL: runs on SQLite and PostgreSQL alike. Times are ISO-8601 UTC.

CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY,
    private_pem TEXT NOT NULL,
    created_at TEXT NOT NULL,
    retired_at TEXT NULL
);

CREATE TABLE service_principals (
    app_id TEXT PRIMARY KEY,
    object_id TEXT NOT NULL UNIQUE,
    tenant_id TEXT NOT NULL,
    display_name TEXT NOT NULL,
    display_key TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE INDEX service_principals_by_name ON service_principals (display_key);

CREATE TABLE managed_identities (
    principal_id TEXT PRIMARY KEY,
    client_id TEXT NOT NULL UNIQUE,
    tenant_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    resource_key TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    created_at TEXT NOT NULL
)
