-- Lapis schema, version 1: the resource hierarchy of Azure Resource Manager
-- as far as Azure OpenAI needs it. Names are case-insensitive in Azure, so
-- every name has a lower-cased *_key column that uniqueness is checked on.
-- Portable SQL: runs on SQLite and PostgreSQL alike.

CREATE TABLE settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE subscriptions (
    id TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    state TEXT NOT NULL,
    openai_approved INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL
);

CREATE TABLE provider_registrations (
    subscription_id TEXT NOT NULL REFERENCES subscriptions(id) ON DELETE CASCADE,
    namespace_key TEXT NOT NULL,
    namespace TEXT NOT NULL,
    state TEXT NOT NULL,
    PRIMARY KEY (subscription_id, namespace_key)
);

CREATE TABLE resource_groups (
    subscription_id TEXT NOT NULL REFERENCES subscriptions(id) ON DELETE CASCADE,
    name_key TEXT NOT NULL,
    name TEXT NOT NULL,
    location TEXT NOT NULL,
    tags TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (subscription_id, name_key)
);

CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    subscription_id TEXT NOT NULL,
    group_key TEXT NOT NULL,
    name_key TEXT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    sku_name TEXT NOT NULL,
    location TEXT NOT NULL,
    subdomain_key TEXT UNIQUE,
    key1 TEXT NOT NULL,
    key2 TEXT NOT NULL,
    etag TEXT NOT NULL,
    doc TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    FOREIGN KEY (subscription_id, group_key) REFERENCES resource_groups(subscription_id, name_key) ON DELETE CASCADE,
    UNIQUE (subscription_id, group_key, name_key)
);

CREATE TABLE deployments (
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name_key TEXT NOT NULL,
    name TEXT NOT NULL,
    model_format TEXT NOT NULL,
    model_name TEXT NOT NULL,
    model_version TEXT NOT NULL,
    sku_name TEXT NOT NULL,
    capacity INTEGER NOT NULL,
    etag TEXT NOT NULL,
    doc TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (account_id, name_key)
);
