"""The keyring: data keys in the database, wrapped, and the seal/open pair everyone uses.

Envelope encryption. Each secret is sealed (lapis.crypto.envelope) under a
data key; each data key is stored only wrapped, in `data_keys`:

    'service'          service-level secrets (signing keys, secret settings,
                       the vault's own key material): wrapped by the service KEK
    'acct-<id>'        one account's secrets (key1, key2): wrapped by the service
                       KEK, or by a customer-managed key in Lapis's vault

`seal(key_id, plaintext, context)` and `open(value, context)` are the one
pair the store uses; the value names its data key, so `open` needs no owner.

Customer-managed keys: a data key wrapped by a vault key version opens only
while that version is enabled. Every `open` reads the data key's row (one
lookup by primary key) to learn its current wrapping and whether that
version is enabled, so a key disabled by any replica takes effect here with
the next read; the unwrapped key itself is cached by (id, wrapped value),
which changes whenever the key is re-wrapped. Re-wrapping (rotation, a
switch of key source) never changes the data key, so values sealed under it
stay as they are and requests keep being served throughout.

Errors:
    KeyUnavailable   the vault key version wrapping a data key is disabled or gone
    WrongKek         the database's keys were wrapped by another KEK (replicas must share one)
    SealedValueError (from envelope) a value that does not open, or whose data key was deleted
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable

from lapis.crypto import envelope
from lapis.crypto.envelope import SealedValueError
from lapis.crypto.kek import ServiceKek
from lapis.store.database import Database, Row

SERVICE = "service"


def account_key_id(account_id: str) -> str:
    """The id of an account's data key."""
    return f"acct-{account_id}"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


class KeyUnavailable(Exception):
    """A data key whose customer-managed key version is disabled (or no longer exists)."""

    def __init__(self, key_id: str, vault: str, name: str, version: str):
        super().__init__(f"data key {key_id} is wrapped by {vault}/{name}/{version}, which is disabled or gone")
        self.key_id, self.vault, self.name, self.version = key_id, vault, name, version


class WrongKek(Exception):
    """The data keys in the database were wrapped by a KEK other than this process's."""


@dataclass(frozen=True, slots=True)
class VaultRef:
    """A key in Lapis's vault; `version` None means the current (latest) version."""

    vault: str
    name: str
    version: str | None = None


_SELECT = (
    "SELECT d.*, v.enabled AS version_enabled FROM data_keys d LEFT JOIN vault_key_versions v "
    "ON v.vault_key = d.vault_key AND v.name_key = d.key_name AND v.version = d.key_version WHERE d.id = ?"
)


class Keyring:
    """Data keys of one database, under one service KEK."""

    def __init__(self, db: Database, kek: ServiceKek):
        from lapis.crypto.vault import Vault  # the vault seals its key material with this keyring

        self.db = db
        self.kek = kek
        self.vault = Vault(db, self)
        self._service: bytes | None = None
        self._cache: dict[tuple[str, str], bytes] = {}

    async def start(self) -> None:
        """Open (or make) the service data key; WrongKek when another KEK wrapped it."""
        self._service = await self.data_key(SERVICE, create=True)

    # -- service-level secrets (synchronous once started) ---------------------------

    def _service_key(self) -> bytes:
        if self._service is None:
            raise RuntimeError("the keyring is not started: call start() first")
        return self._service

    def seal_service(self, plaintext: str | bytes, context: str) -> str:
        return envelope.seal(self._service_key(), SERVICE, plaintext, context)

    def open_service(self, value: str, context: str) -> bytes:
        return envelope.open_bytes(self._service_key(), value, context)

    # -- the seal/open pair -------------------------------------------------------

    async def seal(self, key_id: str, plaintext: str | bytes, context: str) -> str:
        """Seal under data key `key_id`, making it (wrapped by the service KEK) when missing."""
        key = self._service_key() if key_id == SERVICE else await self.data_key(key_id, create=True)
        return envelope.seal(key, key_id, plaintext, context)

    async def open(self, value: str, context: str) -> str:
        return (await self.open_all([(value, context)]))[0]

    async def open_all(self, items: Iterable[tuple[str, str]]) -> list[str]:
        """Open several sealed values, reading each data key once."""
        keys: dict[str, bytes] = {}
        out = []
        for value, context in items:
            key_id = envelope.key_id_of(value)
            if key_id not in keys:
                keys[key_id] = self._service_key() if key_id == SERVICE else await self.data_key(key_id)
            out.append(envelope.open_text(keys[key_id], value, context))
        return out

    # -- data keys ----------------------------------------------------------------------

    async def data_key(self, key_id: str, create: bool = False) -> bytes:
        row = await self.db.fetchrow(_SELECT, key_id)
        if row is None and create:
            now = _now()
            async with self.db.transaction() as conn:
                await conn.execute(
                    "INSERT INTO data_keys (id, wrapped, kek_id, follows_latest, created_at, updated_at) "
                    "VALUES (?, ?, ?, 0, ?, ?) ON CONFLICT DO NOTHING",
                    key_id, self.kek.wrap(envelope.new_data_key(), key_id), self.kek.id, now, now)
            row = await self.db.fetchrow(_SELECT, key_id)
        if row is None:
            raise SealedValueError(f"data key {key_id} does not exist (its owner was deleted)")
        return await self._unwrap(row)

    async def _unwrap(self, row: Row) -> bytes:
        key_id, wrapped = row["id"], row["wrapped"]
        if row["kek_id"] is None and not row["version_enabled"]:
            raise KeyUnavailable(key_id, row["vault_key"], row["key_name"], row["key_version"])
        cached = self._cache.get((key_id, wrapped))
        if cached is not None:
            return cached
        if row["kek_id"] is not None:
            if row["kek_id"] != self.kek.id:
                raise WrongKek(
                    f"The data keys in this database were wrapped by key-encryption key {row['kek_id']}, but this "
                    f"process holds key {self.kek.id} ({self.kek.path}). Every process sharing a database needs the "
                    "same KEK file: copy it from the first one (mode 0600) or point LAPIS_KEK_FILE at it.")
            key = self.kek.unwrap(wrapped, key_id)
        else:
            from lapis.crypto.vault import VaultError

            try:
                key = await self.vault.unwrap(row["vault_key"], row["key_name"], row["key_version"], wrapped, key_id)
            except VaultError:  # disabled (or gone) since the row was read
                raise KeyUnavailable(key_id, row["vault_key"], row["key_name"], row["key_version"]) from None
        self._cache[(key_id, wrapped)] = key
        return key

    async def wrapping(self, key_id: str) -> Row | None:
        """The data key's row (how it is wrapped now), or None."""
        return await self.db.fetchrow(_SELECT, key_id)

    async def rewrap(self, key_id: str, target: VaultRef | None) -> bool:
        """Wrap data key `key_id` with the service KEK (target None) or a vault key; True when it changed.

        The data key itself stays the same. Raises KeyUnavailable when its
        current wrapping cannot be opened, and the vault's errors when the
        target key is missing or disabled."""
        key = await self.data_key(key_id, create=True)
        row = await self.wrapping(key_id)
        assert row is not None
        if target is None:
            if row["kek_id"] == self.kek.id:
                return False
            values: tuple[Any, ...] = (self.kek.wrap(key, key_id), self.kek.id, None, None, None, 0)
        else:
            version = await self.vault.current_version(target.vault, target.name, target.version)
            follows = 1 if target.version is None else 0
            same = (row["vault_key"], row["key_name"], row["key_version"], row["follows_latest"]) == (
                target.vault.lower(), target.name.lower(), version, follows)
            if same:
                return False
            wrapped = await self.vault.wrap(target.vault, target.name, version, key)
            values = (wrapped, None, target.vault.lower(), target.name.lower(), version, follows)
        async with self.db.transaction() as conn:
            await conn.execute(
                "UPDATE data_keys SET wrapped = ?, kek_id = ?, vault_key = ?, key_name = ?, key_version = ?, "
                "follows_latest = ?, updated_at = ? WHERE id = ?", *values, _now(), key_id)
        return True

    async def wrapped_by(self, vault: str, name: str) -> list[Row]:
        """Rows of the data keys a vault key wraps (any version)."""
        return await self.db.fetch("SELECT * FROM data_keys WHERE vault_key = ? AND key_name = ? ORDER BY id",
                                   vault.lower(), name.lower())

    def evict(self, key_ids: Iterable[str]) -> None:
        """Drop deleted data keys from the cache (the store deletes their rows: crypto-shredding,
        what they sealed can never be opened again)."""
        gone = set(key_ids)
        self._cache = {k: v for k, v in self._cache.items() if k[0] not in gone}
