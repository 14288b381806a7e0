-- Lapis schema, version 7: encryption at rest (issue #4).
-- data_keys: one AES-256 data key per owner ('service' for service-level
-- secrets, 'acct-<account id>' for an account), stored only wrapped: by the
-- service key-encryption key (kek_id set) or by a version of a key in Lapis's
-- key vault (vault_key, key_name, key_version set). follows_latest = 1 when
-- the account asked for no keyVersion: rotating the key re-wraps it.
-- vault_keys / vault_key_versions: the keys of Lapis's key vault. A version's
-- private key is stored sealed under the service data key; `seq` orders the
-- versions (the highest is the current one). created/updated are epoch
-- seconds, as Key Vault reports them.
-- Existing plaintext secrets (account keys, signing keys, secret settings)
-- are sealed at start-up by lapis.crypto.fields.seal_plaintext.
-- Portable SQL: runs on SQLite and PostgreSQL alike.

CREATE TABLE data_keys (
    id TEXT PRIMARY KEY,
    wrapped TEXT NOT NULL,
    kek_id TEXT NULL,
    vault_key TEXT NULL,
    key_name TEXT NULL,
    key_version TEXT NULL,
    follows_latest INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE INDEX data_keys_by_vault_key ON data_keys (vault_key, key_name);

CREATE TABLE vault_keys (
    vault_key TEXT NOT NULL,
    name_key TEXT NOT NULL,
    vault TEXT NOT NULL,
    name TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (vault_key, name_key)
);

CREATE TABLE vault_key_versions (
    vault_key TEXT NOT NULL,
    name_key TEXT NOT NULL,
    version TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kty TEXT NOT NULL,
    key_size INTEGER NOT NULL,
    key_ops TEXT NOT NULL,
    public_n TEXT NOT NULL,
    public_e TEXT NOT NULL,
    private_sealed TEXT NOT NULL,
    enabled INTEGER NOT NULL,
    tags TEXT NOT NULL,
    created INTEGER NOT NULL,
    updated INTEGER NOT NULL,
    PRIMARY KEY (vault_key, name_key, version),
    UNIQUE (vault_key, name_key, seq),
    FOREIGN KEY (vault_key, name_key) REFERENCES vault_keys(vault_key, name_key) ON DELETE CASCADE
)
