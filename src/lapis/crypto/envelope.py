"""Sealed values: AES-256-GCM under a data key, in a text form that says what opens it.

    lapis:v1:<data key id>:<nonce>:<ciphertext>

`nonce` (12 bytes) and `ciphertext` (with GCM's 16-byte tag) are base64url
without padding. The associated data is `lapis:v1:<data key id>:<context>`,
where the context names the place the value lives (for instance
`accounts.key1:<account id>`): a sealed value copied into another row or
column, or relabelled with another key id, does not open.

The same primitive wraps data keys under a key-encryption key (the key id is
then the KEK's, the context `data-key:<data key id>`), so there is one
authenticated construction in Lapis, not two.

Errors:
    SealedValueError    not a sealed value, or it does not open (wrong key,
                        wrong context, tampered bytes); never says more
"""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "lapis:v1:"
KEY_BYTES = 32
NONCE_BYTES = 12


class SealedValueError(ValueError):
    """A value that is not well-formed, or that does not open with the key and context given."""


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_data_key() -> bytes:
    """A fresh random AES-256 key."""
    return AESGCM.generate_key(bit_length=KEY_BYTES * 8)


def is_sealed(value: object) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


def _check_id(key_id: str) -> None:
    if not key_id or ":" in key_id:
        raise ValueError(f"a data key id must be non-empty and hold no ':' (got {key_id!r})")


def _aad(key_id: str, context: str) -> bytes:
    return f"{PREFIX}{key_id}:{context}".encode()


def key_id_of(value: str) -> str:
    """The id of the data key a sealed value names."""
    return _parts(value)[0]


def _parts(value: str) -> tuple[str, bytes, bytes]:
    if not is_sealed(value):
        raise SealedValueError("not a sealed value")
    fields = value[len(PREFIX):].split(":")
    if len(fields) != 3 or not fields[0]:
        raise SealedValueError("malformed sealed value")
    try:
        nonce, ciphertext = _unb64(fields[1]), _unb64(fields[2])
    except ValueError:
        raise SealedValueError("malformed sealed value") from None
    if len(nonce) != NONCE_BYTES or len(ciphertext) < 16:
        raise SealedValueError("malformed sealed value")
    return fields[0], nonce, ciphertext


def seal(key: bytes, key_id: str, plaintext: str | bytes, context: str) -> str:
    """Encrypt `plaintext` under `key` (whose id is `key_id`), bound to `context`."""
    _check_id(key_id)
    data = plaintext.encode() if isinstance(plaintext, str) else plaintext
    nonce = os.urandom(NONCE_BYTES)
    ciphertext = AESGCM(key).encrypt(nonce, data, _aad(key_id, context))
    return f"{PREFIX}{key_id}:{_b64(nonce)}:{_b64(ciphertext)}"


def open_bytes(key: bytes, value: str, context: str) -> bytes:
    """The plaintext of a sealed value; SealedValueError when it does not open."""
    key_id, nonce, ciphertext = _parts(value)
    try:
        return AESGCM(key).decrypt(nonce, ciphertext, _aad(key_id, context))
    except (InvalidTag, ValueError):
        raise SealedValueError(f"the value sealed under data key {key_id} does not open "
                               "(wrong key or context, or altered)") from None


def open_text(key: bytes, value: str, context: str) -> str:
    return open_bytes(key, value, context).decode()
