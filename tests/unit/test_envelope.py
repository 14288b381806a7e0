"""Sealed values (lapis.crypto.envelope) and the service KEK file (lapis.crypto.kek)."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from lapis.crypto import envelope, kek
from lapis.crypto.envelope import SealedValueError


def test_a_sealed_value_names_its_key_and_opens_with_key_and_context():
    key = envelope.new_data_key()
    sealed = envelope.seal(key, "acct-1", "the secret", "accounts.key1:1")
    assert sealed.startswith("lapis:v1:acct-1:") and "the secret" not in sealed
    assert envelope.is_sealed(sealed) and not envelope.is_sealed("the secret")
    assert envelope.key_id_of(sealed) == "acct-1"
    assert envelope.open_text(key, sealed, "accounts.key1:1") == "the secret"


def test_sealing_twice_gives_different_values():
    key = envelope.new_data_key()
    assert envelope.seal(key, "k", "same", "c") != envelope.seal(key, "k", "same", "c")


def test_a_value_does_not_open_with_another_key_or_context():
    key = envelope.new_data_key()
    sealed = envelope.seal(key, "k", "secret", "accounts.key1:a")
    with pytest.raises(SealedValueError):
        envelope.open_text(envelope.new_data_key(), sealed, "accounts.key1:a")
    with pytest.raises(SealedValueError):
        envelope.open_text(key, sealed, "accounts.key1:b")  # copied into another row
    with pytest.raises(SealedValueError):
        envelope.open_text(key, sealed, "accounts.key2:a")  # or another column


def test_relabelled_or_altered_values_do_not_open():
    key = envelope.new_data_key()
    sealed = envelope.seal(key, "k1", "secret", "c")
    relabelled = sealed.replace("lapis:v1:k1:", "lapis:v1:k2:")
    with pytest.raises(SealedValueError):
        envelope.open_text(key, relabelled, "c")
    prefix, nonce, body = sealed.rsplit(":", 2)
    flipped = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1]
    with pytest.raises(SealedValueError):
        envelope.open_text(key, f"{prefix}:{nonce}:{flipped}", "c")


@pytest.mark.parametrize("bad", ["plain", "lapis:v1:", "lapis:v1:k:AAAA", "lapis:v1:k:!!:??", "lapis:v1::a:b"])
def test_malformed_values_are_refused(bad):
    with pytest.raises(SealedValueError):
        envelope.open_text(envelope.new_data_key(), bad, "c")


def test_key_ids_cannot_hold_the_separator():
    with pytest.raises(ValueError):
        envelope.seal(envelope.new_data_key(), "a:b", "x", "c")


def test_the_kek_file_is_made_owner_only_and_read_back(tmp_path: Path):
    path = tmp_path / "home" / "keys" / "kek"
    made = kek.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert path.read_text().startswith(kek.HEADER)
    again = kek.load_or_create(path)
    assert again.id == made.id and again.key == made.key and len(made.key) == 32
    assert made.key.hex() not in repr(made)
    assert [p.name for p in path.parent.iterdir()] == ["kek"]  # no temporary file left behind


def test_a_kek_wraps_data_keys_bound_to_their_id(tmp_path: Path):
    service = kek.load_or_create(tmp_path / "kek")
    data_key = envelope.new_data_key()
    wrapped = service.wrap(data_key, "acct-1")
    assert service.unwrap(wrapped, "acct-1") == data_key
    with pytest.raises(SealedValueError):
        service.unwrap(wrapped, "acct-2")
    other = kek.load_or_create(tmp_path / "other")
    assert other.id != service.id
    with pytest.raises(SealedValueError):
        other.unwrap(wrapped, "acct-1")


def test_a_kek_readable_by_others_is_refused_with_the_fix(tmp_path: Path):
    path = tmp_path / "kek"
    kek.load_or_create(path)
    os.chmod(path, 0o644)
    with pytest.raises(kek.KekError) as caught:
        kek.load_or_create(path)
    assert "0644" in str(caught.value) and f"chmod 600 {path}" in str(caught.value)


def test_a_file_that_is_not_a_kek_is_refused(tmp_path: Path):
    path = tmp_path / "kek"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"hello\n")
    os.close(fd)
    with pytest.raises(kek.KekError):
        kek.load_or_create(path)


def test_processes_starting_together_end_up_with_one_kek(tmp_path: Path):
    path = tmp_path / "keys" / "kek"
    found: list[bytes] = []
    start = threading.Barrier(8)

    def race() -> None:
        start.wait()
        found.append(kek.load_or_create(path).key)

    threads = [threading.Thread(target=race) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(found) == 8 and len(set(found)) == 1
    assert [p.name for p in path.parent.iterdir()] == ["kek"]
