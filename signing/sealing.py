"""HPKE sealing of personal data to one node, bound to the context it is meant for.

RFC 9180 base mode with DHKEM(X25519, HKDF-SHA256), HKDF-SHA256 and ChaCha20-Poly1305, via
`cryptography.hazmat.primitives.hpke`. Promises: only the holder of the recipient's X25519
private key can open a sealed value, and only with the same `info`; the info functions below
bind a sealed value to one assistance request, one node's locator key or one stored record,
so a ciphertext moved to another context does not open. Any failure to open is UnsealError.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from signing.errors import InvalidKeyError, UnsealError
from signing.keys import HpkeKey

SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)
# RFC 9180 7.1 (Nenc for DHKEM(X25519)) and 7.3 (Nt for ChaCha20-Poly1305).
_ENC_SIZE = hpke.KEM.X25519.enc_length()
_TAG_SIZE = 16


def seal(plaintext: bytes, recipient_public_raw: bytes, info: bytes) -> bytes:
    """Encrypt to a raw X25519 public key; returns enc || ciphertext (RFC 9180 single-shot)."""
    try:
        public_key = X25519PublicKey.from_public_bytes(recipient_public_raw)
        return SUITE.encrypt(plaintext, public_key, info=info)
    except ValueError:
        # Wrong length, or a low-order point whose shared secret is all zeros (RFC 9180 7.1.4).
        raise InvalidKeyError("recipient public key is not a usable X25519 key") from None


def open_sealed(sealed: bytes, recipient: HpkeKey, info: bytes) -> bytes:
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
