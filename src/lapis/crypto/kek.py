"""The service-managed key-encryption key (KEK): one file, readable by its owner only.

Where: `LAPIS_HOME/keys/kek`, or the file `LAPIS_KEK_FILE` names (settings
`kek_file`). Every replica that shares a database must share this file: the
data keys in the database are wrapped with it, and a replica holding another
KEK refuses to start (lapis.crypto.keyring.WrongKek) rather than make a
second, incompatible set of data keys. Lose the file and the data it wraps is
gone: back it up with the database (but not next to it).

Created on first start with mode 0600 in a 0700 folder, atomically: written
to a temporary file of its own, then hard-linked into place, so two
processes starting together end up with the same key (the loser of the race
reads the winner's) and no reader ever sees half a file.

Permissions (Lapis's choice, as ssh does with private keys): a KEK file that
its group or others may read or write is refused, with the `chmod 600` that
fixes it. Lapis does not quietly narrow the mode: a key that was readable by
others may already have been read, and the operator should know.

The file holds one line, `lapis-kek-v1:<32 bytes, base64url>`. The KEK's id
(what wrapped data keys name) is a hash of the key: it says which KEK, and
nothing about the key itself.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

from lapis.crypto import envelope

HEADER = "lapis-kek-v1:"


class KekError(Exception):
    """The KEK file cannot be used (its permissions, its content); the message says how to fix it."""


@dataclass(frozen=True, slots=True)
class ServiceKek:
    """The KEK in memory. `repr` never shows the key."""

    id: str
    key: bytes = field(repr=False)
    path: Path | None = None

    @property
    def key_id(self) -> str:
        """The id sealed values wrapped by this KEK carry."""
        return f"kek-{self.id}"

    def wrap(self, data_key: bytes, data_key_id: str) -> str:
        return envelope.seal(self.key, self.key_id, data_key, f"data-key:{data_key_id}")

    def unwrap(self, wrapped: str, data_key_id: str) -> bytes:
        return envelope.open_bytes(self.key, wrapped, f"data-key:{data_key_id}")


def kek_id(key: bytes) -> str:
    return hashlib.sha256(b"lapis-kek-id:" + key).hexdigest()[:16]


def from_bytes(key: bytes, path: Path | None = None) -> ServiceKek:
    if len(key) != envelope.KEY_BYTES:
        raise KekError(f"a key-encryption key is {envelope.KEY_BYTES} bytes, not {len(key)}")
    return ServiceKek(kek_id(key), key, path)


def _read(path: Path) -> ServiceKek:
    info = path.stat()
    if info.st_mode & 0o077:
        raise KekError(f"The key-encryption key {path} has mode {stat.S_IMODE(info.st_mode):04o}: group or others "
                       f"may read it. Make it readable by its owner only (chmod 600 {path}) and start again.")
    text = path.read_text().strip()
    if not text.startswith(HEADER):
        raise KekError(f"{path} is not a Lapis key-encryption key (it should start with '{HEADER}').")
    encoded = text[len(HEADER):]
    try:
        key = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    except ValueError:
        raise KekError(f"{path} is not a Lapis key-encryption key (bad base64).") from None
    return from_bytes(key, path)


def _create(path: Path) -> None:
    """Write a new key to `path` unless another process got there first."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = secrets.token_bytes(envelope.KEY_BYTES)
    line = HEADER + base64.urlsafe_b64encode(key).rstrip(b"=").decode() + "\n"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)  # atomic, and never replaces a key someone else just made
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load_or_create(path: Path) -> ServiceKek:
    """The KEK in `path`, made there first when there is none; KekError when it is unusable."""
    if not path.exists():
        _create(path)
    return _read(path)
