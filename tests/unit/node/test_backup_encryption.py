"""A backup stream opens only with its passphrase, and only whole and unchanged."""

from __future__ import annotations

import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from federation.errors import PreconditionError
from federation_node.backup import encryption
from federation_node.backup.encryption import (
    HEADER_SIZE,
    TAG_SIZE,
    BackupDecryptionError,
    OpeningReader,
    SealingWriter,
)

PASSPHRASE = "a passphrase long enough"
SMALL_CHUNK = 64


@pytest.fixture(autouse=True)
def fast_and_small(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cheap scrypt and small chunks, so a few bytes span several chunks."""
    monkeypatch.setattr(encryption, "LOG2_N", 10)
    monkeypatch.setattr(encryption, "CHUNK", SMALL_CHUNK)


def _seal(plaintext: bytes, passphrase: str = PASSPHRASE, pieces: int = 3) -> bytes:
    out = io.BytesIO()
    writer = SealingWriter(out, passphrase)
    step = max(1, len(plaintext) // pieces)
    for start in range(0, len(plaintext), step):
        writer.write(plaintext[start : start + step])
    writer.close()
    return out.getvalue()


def _open(sealed: bytes, passphrase: str = PASSPHRASE, read_size: int = 50) -> bytes:
    reader = OpeningReader(io.BytesIO(sealed), passphrase)
    parts = []
    while part := reader.read(read_size):
        parts.append(part)
    return b"".join(parts)


# The fixture's patches hold for every example alike.
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=5 * SMALL_CHUNK + 7), st.integers(min_value=1, max_value=200))
def test_what_is_sealed_opens_to_the_same_bytes(plaintext: bytes, read_size: int) -> None:
    assert _open(_seal(plaintext), read_size=read_size) == plaintext


def test_a_wrong_passphrase_does_not_open_it() -> None:
    with pytest.raises(BackupDecryptionError, match="passphrase is wrong"):
        _open(_seal(b"x" * 200), "another passphrase, wrong")


def test_a_changed_byte_is_refused() -> None:
    sealed = bytearray(_seal(b"y" * 200))
    sealed[HEADER_SIZE + 5] ^= 1
    with pytest.raises(BackupDecryptionError):
        _open(bytes(sealed))


def test_a_stream_cut_at_a_chunk_boundary_is_refused() -> None:
    sealed = _seal(b"z" * (3 * SMALL_CHUNK + 10))
    # Header and the first two whole chunks: every chunk authentic, the last one missing.
    cut = sealed[: HEADER_SIZE + 2 * (SMALL_CHUNK + TAG_SIZE)]
    with pytest.raises(BackupDecryptionError):
        _open(cut)


def test_swapped_chunks_are_refused() -> None:
    sealed = _seal(b"a" * SMALL_CHUNK + b"b" * SMALL_CHUNK + b"c")
    size = SMALL_CHUNK + TAG_SIZE
    first = sealed[HEADER_SIZE : HEADER_SIZE + size]
    second = sealed[HEADER_SIZE + size : HEADER_SIZE + 2 * size]
    swapped = sealed[:HEADER_SIZE] + second + first + sealed[HEADER_SIZE + 2 * size :]
    with pytest.raises(BackupDecryptionError):
        _open(swapped)


def test_two_streams_of_the_same_bytes_differ() -> None:
    assert _seal(b"same") != _seal(b"same")


def test_a_short_passphrase_is_refused() -> None:
    with pytest.raises(PreconditionError, match="at least"):
        SealingWriter(io.BytesIO(), "short")


def test_something_else_is_not_taken_for_a_backup() -> None:
    with pytest.raises(BackupDecryptionError, match="not a certfed backup"):
        OpeningReader(io.BytesIO(b"PK\x03\x04 a zip file, say" * 4), PASSPHRASE)
