-- Lapis schema, version 4: Azure RBAC role assignments (issue #4).
-- Role definitions are the built-in ones, packaged in lapis/auth/roles.json;
-- only assignments are stored. `id` is the assignment's GUID name (lower-case),
-- `scope` the scope as it was given, `scope_key` the same lower-cased (what
-- lookups compare), `role_definition_id` the role's GUID (lower-case).
-- An assignment is unique by (scope, role, principal), as ARM enforces.
-- Portable SQL: runs on SQLite and PostgreSQL alike.

CREATE TABLE role_assignments (
    id TEXT PRIMARY KEY,
    scope TEXT NOT NULL,
    scope_key TEXT NOT NULL,
    role_definition_id TEXT NOT NULL,
    principal_id TEXT NOT NULL,
    principal_type TEXT NOT NULL,
    created_at TEXT NOT NULL,
    created_by TEXT NULL
);

CREATE UNIQUE INDEX role_assignments_unique ON role_assignments (scope_key, role_definition_id, principal_id);

CREATE INDEX role_assignments_by_principal ON role_assignments (principal_id)
