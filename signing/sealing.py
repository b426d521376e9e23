"""HPKE sealing of personal data to one node, bound to the context it is meant for.

RFC 9180 base mode with DHKEM(X25519, HKDF-SHA256), HKDF-SHA256 and ChaCha20-Poly1305, via
`cryptography.hazmat.primitives.hpke`. Promises: only the holder of the recipient's X25519
private key can open a sealed value, and only with the same `info`; the info functions below
bind a sealed value to one assistance request, one node's locator key or one stored record,
so a ciphertext moved to another context does not open. Any failure to open is UnsealError.

`seal_many` keeps the same promises for many values at once (an office's roll of a million
people) with one HPKE encapsulation instead of one X25519 key agreement per value: a fresh data
key is HPKE-sealed to the recipient once, and each value is encrypted under it with
ChaCha20-Poly1305 (RFC 8439), a random 96-bit nonce and the value's own `info` as associated
data. `open_sealed` opens both forms.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from signing.errors import InvalidKeyError, UnsealError
from signing.keys import HpkeKey

SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)
# RFC 9180 7.1 (Nenc for DHKEM(X25519)) and 7.3 (Nt for ChaCha20-Poly1305).
_ENC_SIZE = hpke.KEM.X25519.enc_length()
_TAG_SIZE = 16
# A value sealed by `seal_many`: prefix || HPKE-sealed data key || nonce || AEAD ciphertext.
BATCH_PREFIX = b"CFB1"
_DATA_KEY_SIZE = 32
_NONCE_SIZE = 12
_SEALED_KEY_SIZE = _ENC_SIZE + _DATA_KEY_SIZE + _TAG_SIZE
_BATCH_HEAD_SIZE = len(BATCH_PREFIX) + _SEALED_KEY_SIZE
# Random 96-bit nonces under one key: far below the birthday bound at this many values.
MAX_BATCH = 1 << 20


def seal(plaintext: bytes, recipient_public_raw: bytes, info: bytes) -> bytes:
    """Encrypt to a raw X25519 public key; returns enc || ciphertext (RFC 9180 single-shot)."""
    try:
        public_key = X25519PublicKey.from_public_bytes(recipient_public_raw)
        return SUITE.encrypt(plaintext, public_key, info=info)
    except ValueError:
        # Wrong length, or a low-order point whose shared secret is all zeros (RFC 9180 7.1.4).
        raise InvalidKeyError("recipient public key is not a usable X25519 key") from None


def seal_many(items: Sequence[tuple[bytes, bytes]], recipient_public_raw: bytes) -> list[bytes]:
    """Seal each (plaintext, info) pair to one recipient with a single HPKE encapsulation."""
    if len(items) > MAX_BATCH:
        raise ValueError(f"seal at most {MAX_BATCH} values with one data key")
    data_key = ChaCha20Poly1305.generate_key()
    head = BATCH_PREFIX + seal(data_key, recipient_public_raw, _batch_key_info())
    aead = ChaCha20Poly1305(data_key)
    sealed = []
    for plaintext, info in items:
        nonce = os.urandom(_NONCE_SIZE)
        sealed.append(head + nonce + aead.encrypt(nonce, plaintext, info))
    return sealed


def open_sealed(
    sealed: bytes,
    recipient: HpkeKey,
    info: bytes,
    *,
    data_keys: MutableMapping[bytes, bytes] | None = None,
) -> bytes:
    """Open a value `seal` or `seal_many` sealed with `info`.

    `data_keys` caches the data keys of `seal_many` batches already opened, so that opening
    many values of one batch costs one HPKE decryption; only keys that opened are cached.
    """
    if (
        sealed.startswith(BATCH_PREFIX)
        and len(sealed) >= _BATCH_HEAD_SIZE + _NONCE_SIZE + _TAG_SIZE
    ):
        try:
            return _open_batch_member(sealed, recipient, info, data_keys)
        except UnsealError:
            # A single-shot value whose encapsulated key happens to begin with the prefix.
            pass
    return _open_single(sealed, recipient, info)


def _open_batch_member(
    sealed: bytes,
    recipient: HpkeKey,
    info: bytes,
    data_keys: MutableMapping[bytes, bytes] | None,
) -> bytes:
    sealed_key = sealed[len(BATCH_PREFIX) : _BATCH_HEAD_SIZE]
    data_key = data_keys.get(sealed_key) if data_keys is not None else None
    if data_key is None:
        data_key = _open_single(sealed_key, recipient, _batch_key_info())
        if data_keys is not None:
            data_keys[sealed_key] = data_key
    nonce = sealed[_BATCH_HEAD_SIZE : _BATCH_HEAD_SIZE + _NONCE_SIZE]
    try:
        return ChaCha20Poly1305(data_key).decrypt(
            nonce, sealed[_BATCH_HEAD_SIZE + _NONCE_SIZE :], info
        )
    except (InvalidTag, ValueError):
        raise UnsealError(
            "sealed data does not open: wrong recipient key, wrong context, or altered"
        ) from None


def _open_single(sealed: bytes, recipient: HpkeKey, info: bytes) -> bytes:
    if len(sealed) < _ENC_SIZE + _TAG_SIZE:
        raise UnsealError(f"sealed data is {len(sealed)} bytes, shorter than any HPKE output")
    try:
        return SUITE.decrypt(sealed, recipient.private_key, info=info)
    except (InvalidTag, ValueError):
        raise UnsealError(
            "sealed data does not open: wrong recipient key, wrong context, or altered"
        ) from None


def _info(label: bytes, context: str) -> bytes:
    if not context:
        raise ValueError("an HPKE context id must not be empty")
    # The label is fixed and ends in NUL, so label and context can never run into each other.
    return label + b"\x00" + context.encode("utf-8")


def request_info(request_id: str) -> bytes:
    """Info binding a sealed identity bundle to one assistance request."""
    return _info(b"certfed/v1 identity-bundle", request_id)


def locator_key_info(node_id: str) -> bytes:
    """Info binding the federation locator key, sealed to one node, to that node."""
    return _info(b"certfed/v1 locator-key", node_id)


def at_rest_info(record_id: str) -> bytes:
    """Info binding data sealed for storage to the record that holds it."""
    return _info(b"certfed/v1 at-rest", record_id)


def _batch_key_info() -> bytes:
    """Info of the data key `seal_many` shares among the values of one batch."""
    return _info(b"certfed/v1 batch-data-key", "chacha20-poly1305")
