"""Where each sealed value lives: its data key, the context bound to it, and the upgrade.

    accounts.key1, accounts.key2     the account's data key ('acct-<id>'),
                                     context 'accounts.<column>:<account id>'
    signing_keys.private_pem         the service data key, 'signing_keys.private_pem:<kid>'
    settings.value                   the service data key, 'settings.value:<name>', for the
                                     names in SECRET_SETTINGS (the admin credential and the
                                     managed-identity header); other settings are not secret
    vault_key_versions.private_sealed   see lapis.crypto.vault

`seal_plaintext` is the upgrade step of migration 007: databases written
before it hold these secrets in the clear, and the store seals them once at
start-up (idempotent: sealed values are left alone, and each update checks
the row still holds what was read, so replicas starting together do not
seal twice). On SQLite the write-ahead log is then checkpointed and
truncated, and the store runs with `secure_delete`, so the old bytes do not
linger in the file.
"""

from __future__ import annotations

from lapis.crypto.envelope import is_sealed
from lapis.crypto.keyring import SERVICE, Keyring, account_key_id
from lapis.store.database import Database

SECRET_SETTINGS = frozenset({"admin_token", "identity_header"})


def account_secret(account_id: str, column: str) -> str:
    return f"accounts.{column}:{account_id}"


def signing_key(kid: str) -> str:
    return f"signing_keys.private_pem:{kid}"


def setting(name: str) -> str:
    return f"settings.value:{name}"


async def seal_plaintext(db: Database, keyring: Keyring) -> int:
    """Seal every secret still stored in the clear; how many rows changed."""
    changed = 0
    for row in await db.fetch("SELECT id, key1, key2 FROM accounts"):
        if is_sealed(row["key1"]) and is_sealed(row["key2"]):
            continue
        key_id = account_key_id(row["id"])
        sealed = [row[c] if is_sealed(row[c]) else await keyring.seal(key_id, row[c], account_secret(row["id"], c))
                  for c in ("key1", "key2")]
        async with db.transaction() as conn:
            changed += await conn.execute("UPDATE accounts SET key1 = ?, key2 = ? WHERE id = ? AND key1 = ? AND "
                                          "key2 = ?", *sealed, row["id"], row["key1"], row["key2"])
    for row in await db.fetch("SELECT kid, private_pem FROM signing_keys"):
        if not is_sealed(row["private_pem"]):
            sealed_pem = await keyring.seal(SERVICE, row["private_pem"], signing_key(row["kid"]))
            async with db.transaction() as conn:
                changed += await conn.execute("UPDATE signing_keys SET private_pem = ? WHERE kid = ? AND "
                                              "private_pem = ?", sealed_pem, row["kid"], row["private_pem"])
    for row in await db.fetch("SELECT name, value FROM settings"):
        if row["name"] in SECRET_SETTINGS and not is_sealed(row["value"]):
            sealed_value = await keyring.seal(SERVICE, row["value"], setting(row["name"]))
            async with db.transaction() as conn:
                changed += await conn.execute("UPDATE settings SET value = ? WHERE name = ? AND value = ?",
                                              sealed_value, row["name"], row["value"])
    if changed and db.dialect == "sqlite":
        await db.fetch("PRAGMA wal_checkpoint(TRUNCATE)")
    return changed
