"""A byte stream encrypted under a passphrase: scrypt, then AES-256-GCM in chunks.

Format (all of it authenticated):

    header  = MAGIC (16) || salt (16) || log2(N) (1) || r (1) || p (1) || nonce prefix (7)
    chunk_i = AES-256-GCM(key, nonce_i, plaintext_i, aad=header)       plaintext_i <= CHUNK
    key     = scrypt(passphrase, salt, N, r, p), 32 bytes (RFC 7914)
    nonce_i = nonce prefix (7) || i as 4 bytes big-endian || 0x01 for the last chunk, else 0x00

This is the STREAM construction (Hoang, Reyhanitabar, Rogaway, Vizar, "Online
Authenticated-Encryption and its Nonce-Reuse Misuse-Resistance", 2015): each chunk is checked
before a byte of it is used, and dropping, reordering or truncating chunks fails, since the
counter and the last-chunk flag are in the nonce. A fresh random salt per stream gives every
stream its own key, so counter nonces never repeat under one key. Memory stays at one chunk
whatever the stream's length.
"""

from __future__ import annotations

import os
import struct
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from federation.errors import PreconditionError

MAGIC = b"certfed-backup\x00\x01"
SALT_SIZE = 16
NONCE_PREFIX_SIZE = 7
HEADER_SIZE = len(MAGIC) + SALT_SIZE + 3 + NONCE_PREFIX_SIZE
TAG_SIZE = 16
CHUNK = 1 << 20
# scrypt at N = 2**17, r = 8, p = 1: 128 MiB and about half a second per derivation, the
# parameters OWASP recommends for scrypt; readers refuse more than MAX_LOG2_N (a hostile file
# could otherwise ask for any amount of memory).
LOG2_N = 17
SCRYPT_R = 8
SCRYPT_P = 1
MAX_LOG2_N = 20
MIN_PASSPHRASE_LENGTH = 12


class Sink(Protocol):
    def write(self, data: bytes, /) -> int: ...


class Source(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class BackupDecryptionError(PreconditionError):
    """The passphrase is wrong, or the backup was changed, truncated or is not a backup."""


def _key(passphrase: str, salt: bytes, log2_n: int, r: int, p: int) -> AESGCM:
    if not passphrase:
        raise PreconditionError("an empty passphrase cannot protect a backup")
    derived = Scrypt(salt=salt, length=32, n=1 << log2_n, r=r, p=p).derive(
        passphrase.encode("utf-8")
    )
    return AESGCM(derived)


def _nonce(prefix: bytes, counter: int, last: bool) -> bytes:
    if counter >= 1 << 32:
        raise PreconditionError("a backup stream is limited to 2**32 chunks")
    return prefix + struct.pack(">IB", counter, 1 if last else 0)


class SealingWriter:
    """Writes an encrypted stream to `out`; `close` writes the last chunk (it must be called)."""

    def __init__(self, out: Sink, passphrase: str) -> None:
        if len(passphrase) < MIN_PASSPHRASE_LENGTH:
            raise PreconditionError(
                f"the backup passphrase must have at least {MIN_PASSPHRASE_LENGTH} characters"
            )
        salt = os.urandom(SALT_SIZE)
        self._prefix = os.urandom(NONCE_PREFIX_SIZE)
        self._header = MAGIC + salt + bytes((LOG2_N, SCRYPT_R, SCRYPT_P)) + self._prefix
        self._aead = _key(passphrase, salt, LOG2_N, SCRYPT_R, SCRYPT_P)
        self._out = out
        self._buffer = bytearray()
        self._counter = 0
        self._closed = False
        out.write(self._header)

    def write(self, data: bytes, /) -> int:
        if self._closed:
            raise ValueError("write to a closed backup stream")
        self._buffer += data
        # A full chunk is sealed only once more data follows: the last chunk is sealed by close.
        while len(self._buffer) > CHUNK:
            self._seal(bytes(self._buffer[:CHUNK]), last=False)
            del self._buffer[:CHUNK]
        return len(data)

    def flush(self) -> None:
        """Nothing to do: a chunk is written once sealed, and the last one by `close`."""

    def close(self) -> None:
        if not self._closed:
            self._seal(bytes(self._buffer), last=True)
            self._buffer.clear()
            self._closed = True

    def _seal(self, plaintext: bytes, *, last: bool) -> None:
        nonce = _nonce(self._prefix, self._counter, last)
        self._out.write(self._aead.encrypt(nonce, plaintext, self._header))
        self._counter += 1


class OpeningReader:
    """Reads the plaintext of an encrypted stream, each chunk checked before it is returned.

    `read` raises BackupDecryptionError on a wrong passphrase or any change to the stream,
    including one cut short (its last chunk is then missing).
    """

    def __init__(self, source: Source, passphrase: str) -> None:
        header = source.read(HEADER_SIZE)
        if len(header) != HEADER_SIZE or not header.startswith(MAGIC):
            raise BackupDecryptionError("this is not a certfed backup (or not this version)")
        offset = len(MAGIC)
        salt = header[offset : offset + SALT_SIZE]
        log2_n, r, p = header[offset + SALT_SIZE : offset + SALT_SIZE + 3]
        if not (10 <= log2_n <= MAX_LOG2_N and 1 <= r <= 32 and 1 <= p <= 16):
            raise BackupDecryptionError("the backup asks for scrypt parameters out of bounds")
        self._header = header
        self._prefix = header[-NONCE_PREFIX_SIZE:]
        self._aead = _key(passphrase, salt, log2_n, r, p)
        self._source = source
        self._next_block = source.read(CHUNK + TAG_SIZE)
        self._counter = 0
        self._plain = b""
        self._done = False

    def read(self, size: int = -1, /) -> bytes:
        while not self._done and (size < 0 or len(self._plain) < size):
            self._open_next()
        if size < 0:
            data, self._plain = self._plain, b""
        else:
            data, self._plain = self._plain[:size], self._plain[size:]
        return data

    def _open_next(self) -> None:
        block = self._next_block
        self._next_block = self._source.read(CHUNK + TAG_SIZE) if block else b""
        last = not self._next_block
        try:
            plaintext = self._aead.decrypt(
                _nonce(self._prefix, self._counter, last), block, self._header
            )
        except InvalidTag:
            raise BackupDecryptionError(
                "the backup does not open with this passphrase: the passphrase is wrong, or the "
                f"backup was changed or cut short (chunk {self._counter})"
            ) from None
        self._counter += 1
        self._plain += plaintext
        self._done = last
