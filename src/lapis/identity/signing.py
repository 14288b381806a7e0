"""Signing keys for the token service: RSA-2048, kept in the `signing_keys` table.

Every key whose `retired_at` is NULL is active; tokens are signed with the
newest active key. `rotate()` retires the active keys and makes a new one.
A retired key stays in the JWKS (and keeps verifying) until the last token
it can have signed has expired: `retired_at + lifetime`.

Replicas share the table. Each process keeps a parsed copy and reloads it
when it is older than `max_age_s`, or when a token names a kid it does not
know (at most once a second, so random kids cannot make it hammer the
database). Two replicas that start together may each create a key; both are
active and published, and both converge on signing with the newest.

The private keys are stored sealed (lapis.crypto): under the service data
key, bound to their kid, through the `sealer` (the store's Keyring). Only a
SigningKeys made without a sealer (tests on a bare database) stores PEM text;
rows written in the clear by an older Lapis are sealed by the store at start-up.
"""

from __future__ import annotations

import base64
import hashlib
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from lapis.crypto import fields
from lapis.crypto.envelope import is_sealed
from lapis.crypto.keyring import SERVICE
from lapis.store.database import Database

TOKEN_LIFETIME_S = 3599
RELOAD_AFTER_S = 30.0
UNKNOWN_KID_RELOAD_S = 1.0


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="microseconds")


def _epoch(iso: str | None) -> float | None:
    return None if iso is None else datetime.fromisoformat(iso).timestamp()


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One parsed key: its id, the key pair, and when it was made and retired (epoch seconds)."""

    kid: str
    private_key: rsa.RSAPrivateKey
    created_at: float
    retired_at: float | None

    @property
    def public_key(self) -> rsa.RSAPublicKey:
        return self.private_key.public_key()

    def jwk(self) -> dict[str, Any]:
        """The public half as a JWK, in Entra's field order."""
        numbers = self.public_key.public_numbers()
        return {"kty": "RSA", "use": "sig", "kid": self.kid, "n": _b64url_uint(numbers.n),
                "e": _b64url_uint(numbers.e), "alg": "RS256"}


def new_private_pem() -> tuple[str, str]:
    """A fresh RSA-2048 key as PKCS#8 PEM, and a kid derived from its public key (like a thumbprint)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    kid = base64.urlsafe_b64encode(hashlib.sha1(der).digest()).rstrip(b"=").decode()  # noqa: S324 - an id, like x5t
    return kid, pem


def _parse(row: dict[str, Any], pem: str) -> SigningKey:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"signing key {row['kid']} is not an RSA key")
    return SigningKey(kid=row["kid"], private_key=key, created_at=_epoch(row["created_at"]) or 0.0,
                      retired_at=_epoch(row["retired_at"]))


class SigningKeys:
    """The token service's keys, shared through the database by every replica."""

    def __init__(self, db: Database, lifetime_s: int = TOKEN_LIFETIME_S, clock: Any = time.time,
                 sealer: Any = None):
        self._db = db
        self._sealer = sealer  # lapis.crypto.keyring.Keyring: seal(key_id, text, context) / open(value, context)
        self.lifetime_s = lifetime_s
        self._clock = clock
        self._keys: dict[str, SigningKey] = {}
        self._loaded_at = 0.0
        self._kid_reload_at = 0.0

    @classmethod
    async def load_or_create(cls, db: Database, lifetime_s: int = TOKEN_LIFETIME_S,
                             clock: Any = time.time, sealer: Any = None) -> "SigningKeys":
        """Load the keys, creating the first one when the table is empty."""
        keys = cls(db, lifetime_s, clock, sealer)
        await keys.reload()
        if keys.active() is None:
            await keys._insert_new(retire_others=False)
        return keys

    # -- reading ---------------------------------------------------------------

    def active(self) -> SigningKey | None:
        """The key to sign with, from the copy in memory (None before the first key exists)."""
        active = [k for k in self._keys.values() if k.retired_at is None]
        return max(active, key=lambda k: (k.created_at, k.kid)) if active else None

    def _published(self, key: SigningKey, now: float) -> bool:
        return key.retired_at is None or now < key.retired_at + self.lifetime_s

    async def reload(self) -> None:
        """Re-read the table (every replica's rotations become visible)."""
        rows = await self._db.fetch("SELECT kid, private_pem, created_at, retired_at FROM signing_keys")
        self._keys = {row["kid"]: _parse(row, await self._open(row)) for row in rows}
        self._loaded_at = self._clock()

    async def refresh(self) -> None:
        """Reload when the copy in memory is older than RELOAD_AFTER_S."""
        if self._clock() - self._loaded_at > RELOAD_AFTER_S:
            await self.reload()

    async def current(self) -> SigningKey:
        """The key to sign with now (the newest active one)."""
        await self.refresh()
        key = self.active()
        if key is None:  # every key was retired by hand: make one
            key = await self._insert_new(retire_others=False)
        return key

    async def find(self, kid: str) -> SigningKey | None:
        """The key named `kid` if it still verifies; reloads once for an unknown kid."""
        now = self._clock()
        key = self._keys.get(kid)
        if key is None and now - self._kid_reload_at > UNKNOWN_KID_RELOAD_S:
            self._kid_reload_at = now
            await self.reload()
            key = self._keys.get(kid)
        return key if key is not None and self._published(key, now) else None

    def lookup(self, kid: str) -> SigningKey | None:
        """`find` without reloading (for synchronous callers and tests)."""
        key = self._keys.get(kid)
        return key if key is not None and self._published(key, self._clock()) else None

    def jwks(self) -> dict[str, list[dict[str, Any]]]:
        """The JWKS document: active keys, and retired ones whose tokens may still be alive."""
        now = self._clock()
        keys = sorted((k for k in self._keys.values() if self._published(k, now)),
                      key=lambda k: (k.retired_at is not None, -k.created_at))
        return {"keys": [k.jwk() for k in keys]}

    async def _open(self, row: dict[str, Any]) -> str:
        stored = row["private_pem"]
        if not is_sealed(stored):
            return stored
        if self._sealer is None:
            raise RuntimeError(f"signing key {row['kid']} is sealed, and these SigningKeys have no sealer")
        return await self._sealer.open(stored, fields.signing_key(row["kid"]))

    # -- writing ---------------------------------------------------------------

    async def _insert_new(self, retire_others: bool) -> SigningKey:
        kid, pem = new_private_pem()
        if self._sealer is not None:
            pem = await self._sealer.seal(SERVICE, pem, fields.signing_key(kid))
        now = self._clock()
        async with self._db.transaction() as conn:
            if retire_others:
                await conn.execute("UPDATE signing_keys SET retired_at = ? WHERE retired_at IS NULL", _iso(now))
            await conn.execute("INSERT INTO signing_keys (kid, private_pem, created_at, retired_at) "
                               "VALUES (?, ?, ?, NULL)", kid, pem, _iso(now))
        await self.reload()
        return self._keys[kid]

    async def rotate(self) -> SigningKey:
        """Retire the active key(s) and start signing with a new one. Old tokens keep verifying."""
        return await self._insert_new(retire_others=True)

    async def prune(self) -> int:
        """Delete keys retired longer ago than a token lives; how many went."""
        cutoff = _iso(self._clock() - self.lifetime_s - 60)
        async with self._db.transaction() as conn:
            gone = await conn.execute("DELETE FROM signing_keys WHERE retired_at IS NOT NULL AND retired_at < ?",
                                      cutoff)
        await self.reload()
        return gone

