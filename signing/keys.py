"""Node keys: Ed25519 for signing, X25519 for HPKE, and their private key files.

Promises: a `VerifyKey` always holds a valid, non-small-order Ed25519 point; a key id is the
lowercase hex SHA-256 of the raw 32-byte public key; private keys are written atomically to
files created with mode 0600 (never readable by anyone else, not even for a moment), and a
private key file that group or others can read or write is refused on load. The only file I/O
in the package is here, in the explicit save/load functions.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pysodium  # type: ignore[import-untyped]
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from signing.errors import InvalidKeyError, InvalidSignatureError, KeyFileError

PUBLIC_KEY_SIZE = 32
PRIVATE_FILE_MODE = 0o600

# RFC 8032 5.1: edwards25519 field prime and curve constant d.
_P = 2**255 - 19
_D = (-121665 * pow(121666, _P - 2, _P)) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)


def key_id(raw_public_key: bytes) -> str:
    """Lowercase hex SHA-256 of the raw 32-byte public key."""
    if len(raw_public_key) != PUBLIC_KEY_SIZE:
        raise InvalidKeyError(
            f"a raw public key has {PUBLIC_KEY_SIZE} bytes, this one has {len(raw_public_key)}"
        )
    return hashlib.sha256(raw_public_key).hexdigest()


def _decode_edwards_point(raw: bytes) -> tuple[int, int]:
    # RFC 8032 5.1.3: decoding. OpenSSL accepts any 32 bytes as a public key, so a key taken
    # from the directory is checked here once rather than trusted.
    y = int.from_bytes(raw, "little") & ((1 << 255) - 1)
    x_sign = raw[31] >> 7
    if y >= _P:
        raise InvalidKeyError("public key is not a canonical Ed25519 point encoding")
    u = (y * y - 1) % _P
    v = (_D * y * y + 1) % _P
    x = (u * pow(v, 3, _P) * pow(u * pow(v, 7, _P), (_P - 5) // 8, _P)) % _P
    if (v * x * x - u) % _P != 0:
        if (v * x * x + u) % _P != 0:
            raise InvalidKeyError("public key is not a point on Ed25519")
        x = (x * _SQRT_M1) % _P
    if x == 0 and x_sign == 1:
        raise InvalidKeyError("public key is not a canonical Ed25519 point encoding")
    if x % 2 != x_sign:
        x = _P - x
    return x, y


def _double(point: tuple[int, int]) -> tuple[int, int]:
    # Affine doubling on -x^2 + y^2 = 1 + d x^2 y^2; the formula is complete on this curve.
    x, y = point
    xx, yy = x * x % _P, y * y % _P
    x3 = 2 * x * y * pow((yy - xx) % _P, _P - 2, _P) % _P
    y3 = (yy + xx) * pow((2 + xx - yy) % _P, _P - 2, _P) % _P
    return x3, y3


# A directory lists the same few keys for months and every verification checks one of them: the
# outcome of the (pure-Python) point check depends on the bytes alone, so it is remembered.
@functools.lru_cache(maxsize=4096)
def _check_ed25519_public_key(raw: bytes) -> None:
    if len(raw) != PUBLIC_KEY_SIZE:
        raise InvalidKeyError(f"an Ed25519 public key has {PUBLIC_KEY_SIZE} bytes, not {len(raw)}")
    point = _decode_edwards_point(raw)
    # A key of small order (its multiple by the cofactor 8 is the identity) makes signatures that
    # verify for many messages, so it binds nothing and is refused.
    if _double(_double(_double(point))) == (0, 1):
        raise InvalidKeyError("public key is a small-order Ed25519 point")


@dataclass(frozen=True)
class VerifyKey:
    """An Ed25519 public key, checked to be a usable point when constructed."""

    raw: bytes
    _key: Ed25519PublicKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_ed25519_public_key(self.raw)
        object.__setattr__(self, "_key", Ed25519PublicKey.from_public_bytes(self.raw))

    @classmethod
    def from_raw(cls, raw: bytes) -> VerifyKey:
        """Check and wrap a raw 32-byte public key; raises InvalidKeyError (a SigningError)."""
        return cls(bytes(raw))

    @functools.cached_property
    def key_id(self) -> str:
        return key_id(self.raw)

    def verify(self, signature: bytes, message: bytes) -> None:
        try:
            self._key.verify(signature, message)
        except InvalidSignature:
            raise InvalidSignatureError(
                f"signature does not verify with key {self.key_id}"
            ) from None


@dataclass(frozen=True, eq=False)
class SigningKey:
    """An Ed25519 private key. Equality is identity: secrets are not compared by value."""

    private_key: Ed25519PrivateKey = field(repr=False)

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())

    @functools.cached_property
    def public_key(self) -> VerifyKey:
        return VerifyKey(
            self.private_key.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
        )

    @property
    def key_id(self) -> str:
        return self.public_key.key_id

    def sign(self, message: bytes) -> bytes:
        """The Ed25519 signature of `message` (RFC 8032). Ed25519 signatures are deterministic,
        so libsodium, which signs in about two thirds of OpenSSL's time, makes the very bytes
        OpenSSL would; a bulk issue spends a fifth of its CPU here."""
        signature: bytes = pysodium.crypto_sign_detached(message, self._sodium_secret)
        return signature

    @functools.cached_property
    def _sodium_secret(self) -> bytes:
        # libsodium's form of the key: the 32-byte seed and the public key. Made once, kept
        # out of the repr (not a field) like the key object it comes from.
        seed = self.private_key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        return seed + self.public_key.raw

    def to_pem(self) -> bytes:
        """PKCS#8 PEM, unencrypted: protection comes from the file mode, see `save`."""
        return _private_pem(self.private_key)

    @classmethod
    def from_pem(cls, data: bytes) -> SigningKey:
        key = _load_private_pem(data)
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFileError("the key is not an Ed25519 private key")
        return cls(key)

    def save(self, path: Path) -> None:
        write_private_file(path, self.to_pem())

    @classmethod
    def load(cls, path: Path) -> SigningKey:
        return cls.from_pem(read_private_file(path))


@dataclass(frozen=True, eq=False)
class HpkeKey:
    """An X25519 private key that opens HPKE-sealed data addressed to this node."""

    private_key: X25519PrivateKey = field(repr=False)

    @classmethod
    def generate(cls) -> HpkeKey:
        return cls(X25519PrivateKey.generate())

    @property
    def public_raw(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    def to_pem(self) -> bytes:
        """PKCS#8 PEM, unencrypted: protection comes from the file mode, see `save`."""
        return _private_pem(self.private_key)

    @classmethod
    def from_pem(cls, data: bytes) -> HpkeKey:
        key = _load_private_pem(data)
        if not isinstance(key, X25519PrivateKey):
            raise KeyFileError("the key is not an X25519 private key")
        return cls(key)

    def save(self, path: Path) -> None:
        write_private_file(path, self.to_pem())

    @classmethod
    def load(cls, path: Path) -> HpkeKey:
        return cls.from_pem(read_private_file(path))


def _private_pem(key: Ed25519PrivateKey | X25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _load_private_pem(data: bytes) -> object:
    try:
        return serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        # The library's message may quote the input; ours says only what kind of failure it was.
        raise KeyFileError("the data is not an unencrypted PKCS#8 PEM private key") from None


def write_private_file(path: Path, data: bytes) -> None:
    """Atomically replace `path` with `data`, readable and writable by the owner only.

    The temporary file is created by mkstemp with mode 0600 in the same directory, so the key
    is never visible with a wider mode and os.replace stays a same-filesystem rename; both the
    file and the directory entry are fsynced so a crash leaves either the old key or the new.
    """
    directory = path.parent
    fd, temp_name = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp already uses 0600; set it explicitly so an unusual umask cannot change it.
        os.fchmod(fd, PRIVATE_FILE_MODE)
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_private_file(path: Path) -> bytes:
    """Read a private key file, refusing one that group or others may read or write.

    The mode is checked on the open descriptor, not the path, so the file checked is the file
    read. Symbolic links are followed, as orchestrators mount secrets through them.
    """
    try:
        # O_NONBLOCK so that a FIFO at the path is refused below rather than hanging the reader.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as error:
        raise KeyFileError(f"cannot open key file {path}: {error.strerror}") from None
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise KeyFileError(f"key file {path} is not a regular file")
        if status.st_mode & 0o077:
            raise KeyFileError(
                f"key file {path} has mode {stat.S_IMODE(status.st_mode):04o}; "
                "a private key must be accessible to its owner only (chmod 600)"
            )
        with os.fdopen(fd, "rb", closefd=False) as file:
            return file.read()
    except OSError as error:
        raise KeyFileError(f"cannot read key file {path}: {error.strerror}") from None
    finally:
        os.close(fd)
