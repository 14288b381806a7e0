"""Lapis's key vault: named RSA keys with versions, each enabled or disabled.

What Azure Key Vault does for customer-managed keys, kept to what Lapis
needs: create a key (an existing name gets a new version, as in Key Vault),
rotate it (a new version like the current one), read it, list keys and
versions, update a version's attributes (`enabled`, tags, key_ops), and wrap
or unwrap a data key with RSA-OAEP-256. Unwrapping with a disabled version is
refused (Key Vault's 403 KeyDisabled), which is what makes disabling a key
revoke the accounts it protects.

Vaults need no creation: a vault exists once a key is made in it (Lapis's
choice; Azure creates vaults through ARM). Vault and key names are compared
case-insensitively and keep the case they were first written with.

A version's private key is stored sealed under the service data key
(lapis.crypto.keyring), never in the clear; its public half is stored as the
JWK's `n` and `e`.

Errors (translated to Key Vault's or ARM's bodies by the surfaces):
    KeyNotFound       no such vault, key or version
    KeyDisabled       the version is disabled (for unwrap, and for choosing it as a CMK)
    BadKeyParameter   a request Lapis cannot honour (name, kty, key_size, ...)
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from lapis.store.database import Database, Row

if TYPE_CHECKING:
    from lapis.crypto.keyring import Keyring

VAULT_NAME = re.compile(r"^(?!.*--)[a-zA-Z][a-zA-Z0-9-]{1,22}[a-zA-Z0-9]$")  # Azure: 3-24, no "--"
KEY_NAME = re.compile(r"^[0-9a-zA-Z-]{1,127}$")
KTYS = ("RSA", "RSA-HSM")
KEY_SIZES = (2048, 3072, 4096)
ALL_OPS = ("encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey")
_OAEP = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


class VaultError(Exception):
    pass


class KeyNotFound(VaultError):
    def __init__(self, vault: str, name: str, version: str | None = None):
        super().__init__(f"key {name} (version {version or 'current'}) not found in vault {vault}")
        self.vault, self.name, self.version = vault, name, version


class KeyDisabled(VaultError):
    def __init__(self, vault: str, name: str, version: str, operation: str):
        super().__init__(f"operation {operation} is not allowed on disabled key {vault}/{name}/{version}")
        self.vault, self.name, self.version, self.operation = vault, name, version, operation


class BadKeyParameter(VaultError):
    pass


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _uint(text: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)), "big")


@dataclass(frozen=True, slots=True)
class KeyVersion:
    vault: str
    name: str
    version: str
    seq: int
    kty: str
    key_size: int
    key_ops: tuple[str, ...]
    n: str
    e: str
    enabled: bool
    tags: dict[str, str]
    created: int
    updated: int


def _key_version(row: Row) -> KeyVersion:
    return KeyVersion(vault=row["vault"], name=row["name"], version=row["version"], seq=int(row["seq"]),
                      kty=row["kty"], key_size=int(row["key_size"]), key_ops=tuple(json.loads(row["key_ops"])),
                      n=row["public_n"], e=row["public_e"], enabled=bool(row["enabled"]), tags=json.loads(row["tags"]),
                      created=int(row["created"]), updated=int(row["updated"]))


_VERSIONS = ("SELECT v.*, k.vault, k.name FROM vault_key_versions v JOIN vault_keys k "
             "ON k.vault_key = v.vault_key AND k.name_key = v.name_key WHERE v.vault_key = ? AND v.name_key = ?")


def check_names(vault: str, name: str | None = None) -> None:
    if not VAULT_NAME.match(vault):
        raise BadKeyParameter(f"The vault name '{vault}' is invalid: 3-24 letters, digits and hyphens, starting "
                              "with a letter, ending with a letter or digit, without consecutive hyphens.")
    if name is not None and not KEY_NAME.match(name):
        raise BadKeyParameter(f"The key name '{name}' is invalid: 1-127 letters, digits and hyphens.")


def _tags(tags: Any) -> dict[str, str]:
    if tags is None:
        return {}
    if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
        raise BadKeyParameter("tags must be an object of string values.")
    return dict(tags)


def _ops(ops: Any) -> tuple[str, ...]:
    if ops is None:
        return ALL_OPS
    if not isinstance(ops, list) or any(op not in ALL_OPS for op in ops):
        raise BadKeyParameter(f"key_ops must be a list of: {', '.join(ALL_OPS)}.")
    return tuple(ops)


class Vault:
    """The vault tables of one database; key material sealed by `keyring`."""

    def __init__(self, db: Database, keyring: "Keyring"):
        self.db = db
        self.keyring = keyring
        self._private: dict[tuple[str, str, str], rsa.RSAPrivateKey] = {}

    # -- reading -----------------------------------------------------------------------

    async def versions(self, vault: str, name: str) -> list[KeyVersion]:
        """Every version of a key, oldest first (empty when there is no such key)."""
        rows = await self.db.fetch(f"{_VERSIONS} ORDER BY v.seq", vault.lower(), name.lower())
        return [_key_version(r) for r in rows]

    async def get(self, vault: str, name: str, version: str | None = None) -> KeyVersion:
        """One version (the current one when `version` is None or empty); KeyNotFound otherwise."""
        if version:
            row = await self.db.fetchrow(f"{_VERSIONS} AND v.version = ?", vault.lower(), name.lower(),
                                         version.lower())
        else:
            row = await self.db.fetchrow(f"{_VERSIONS} ORDER BY v.seq DESC LIMIT 1", vault.lower(), name.lower())
        if row is None:
            raise KeyNotFound(vault, name, version)
        return _key_version(row)

    async def keys(self, vault: str) -> list[KeyVersion]:
        """The current version of every key in a vault, by name."""
        rows = await self.db.fetch(
            "SELECT v.*, k.vault, k.name FROM vault_key_versions v JOIN vault_keys k ON k.vault_key = v.vault_key "
            "AND k.name_key = v.name_key WHERE v.vault_key = ? AND v.seq = (SELECT MAX(seq) FROM vault_key_versions "
            "x WHERE x.vault_key = v.vault_key AND x.name_key = v.name_key) ORDER BY v.name_key", vault.lower())
        return [_key_version(r) for r in rows]

    # -- writing -----------------------------------------------------------------------

    async def create_key(self, vault: str, name: str, kty: Any = "RSA", key_size: Any = None, key_ops: Any = None,
                         enabled: bool = True, tags: Any = None) -> KeyVersion:
        """A new key, or a new version of an existing one (Key Vault's create)."""
        check_names(vault, name)
        if kty not in KTYS:
            raise BadKeyParameter(f"The key type '{kty}' is not supported: Lapis's vault makes {' and '.join(KTYS)} "
                                  "keys.")
        size = 2048 if key_size is None else key_size
        if size not in KEY_SIZES or isinstance(size, bool):
            raise BadKeyParameter(f"The key size '{key_size}' is invalid: use 2048, 3072 or 4096.")
        private = await asyncio.to_thread(rsa.generate_private_key, 65537, size)
        return await self._insert(vault, name, str(kty), size, _ops(key_ops), bool(enabled), _tags(tags), private)

    async def rotate(self, vault: str, name: str) -> KeyVersion:
        """A new version with the current one's type, size, operations and tags."""
        check_names(vault, name)
        current = await self.get(vault, name)
        private = await asyncio.to_thread(rsa.generate_private_key, 65537, current.key_size)
        return await self._insert(current.vault, current.name, current.kty, current.key_size, current.key_ops, True,
                                  current.tags, private)

    async def _insert(self, vault: str, name: str, kty: str, size: int, ops: tuple[str, ...], enabled: bool,
                      tags: dict[str, str], private: rsa.RSAPrivateKey) -> KeyVersion:
        vkey, nkey, version = vault.lower(), name.lower(), uuid.uuid4().hex
        der = private.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        sealed = self.keyring.seal_service(der, f"vault:{vkey}/{nkey}/{version}")
        numbers = private.public_key().public_numbers()
        now = int(time.time())
        for attempt in range(5):  # two writers may pick the same seq (PostgreSQL): try again
            try:
                async with self.db.transaction() as conn:
                    await conn.execute("INSERT INTO vault_keys (vault_key, name_key, vault, name, created_at) VALUES "
                                       "(?, ?, ?, ?, ?) ON CONFLICT DO NOTHING", vkey, nkey, vault, name, str(now))
                    row = await conn.fetchrow("SELECT MAX(seq) AS seq FROM vault_key_versions WHERE vault_key = ? "
                                              "AND name_key = ?", vkey, nkey)
                    seq = int(row["seq"] or 0) + 1 if row else 1
                    await conn.execute(
                        "INSERT INTO vault_key_versions (vault_key, name_key, version, seq, kty, key_size, key_ops, "
                        "public_n, public_e, private_sealed, enabled, tags, created, updated) VALUES "
                        "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", vkey, nkey, version, seq, kty, size,
                        json.dumps(list(ops)), _b64url_uint(numbers.n), _b64url_uint(numbers.e), sealed,
                        int(enabled), json.dumps(tags), now, now)
                break
            except Exception as exc:  # noqa: BLE001 - sqlite3/asyncpg unique violations differ
                if attempt == 4 or "unique" not in str(exc).lower():
                    raise
        self._private[(vkey, nkey, version)] = private
        return await self.get(vault, name, version)

    async def update(self, vault: str, name: str, version: str | None, enabled: Any = None, tags: Any = None,
                     key_ops: Any = None) -> KeyVersion:
        """Change a version's attributes (the current version when `version` is None)."""
        current = await self.get(vault, name, version)
        if enabled is not None and not isinstance(enabled, bool):
            raise BadKeyParameter("attributes.enabled must be true or false.")
        new_enabled = current.enabled if enabled is None else enabled
        new_tags = current.tags if tags is None else _tags(tags)
        new_ops = current.key_ops if key_ops is None else _ops(key_ops)
        async with self.db.transaction() as conn:
            await conn.execute(
                "UPDATE vault_key_versions SET enabled = ?, tags = ?, key_ops = ?, updated = ? WHERE vault_key = ? "
                "AND name_key = ? AND version = ?", int(new_enabled), json.dumps(new_tags), json.dumps(list(new_ops)),
                int(time.time()), vault.lower(), name.lower(), current.version)
        return await self.get(vault, name, current.version)

    # -- wrapping data keys --------------------------------------------------------------

    async def current_version(self, vault: str, name: str, version: str | None) -> str:
        """The version a customer-managed key names (the current one when None), if it can wrap now."""
        found = await self.get(vault, name, version)
        if not found.enabled:
            raise KeyDisabled(found.vault, found.name, found.version, "wrapKey")
        return found.version

    async def wrap(self, vault: str, name: str, version: str, data_key: bytes) -> str:
        """RSA-OAEP-256 of `data_key` under the version's public key, base64url."""
        found = await self.get(vault, name, version)
        public = rsa.RSAPublicNumbers(_uint(found.e), _uint(found.n)).public_key()
        return base64.urlsafe_b64encode(public.encrypt(data_key, _OAEP)).rstrip(b"=").decode()

    async def unwrap(self, vault: str, name: str, version: str, wrapped: str, key_id: str) -> bytes:
        """The data key `wrapped` holds; KeyDisabled when the version is disabled."""
        found = await self.get(vault, name, version)
        if not found.enabled:
            raise KeyDisabled(found.vault, found.name, version, "unwrapKey")
        private = await self._private_key(vault.lower(), name.lower(), version)
        return private.decrypt(base64.urlsafe_b64decode(wrapped + "=" * (-len(wrapped) % 4)), _OAEP)

    async def _private_key(self, vkey: str, nkey: str, version: str) -> rsa.RSAPrivateKey:
        cached = self._private.get((vkey, nkey, version))
        if cached is not None:
            return cached
        row = await self.db.fetchrow("SELECT private_sealed FROM vault_key_versions WHERE vault_key = ? AND "
                                     "name_key = ? AND version = ?", vkey, nkey, version)
        if row is None:
            raise KeyNotFound(vkey, nkey, version)
        der = self.keyring.open_service(row["private_sealed"], f"vault:{vkey}/{nkey}/{version}")
        key = serialization.load_der_private_key(der, password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        self._private[(vkey, nkey, version)] = key
        return key
