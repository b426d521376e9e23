"""Key fingerprints an administrator compares over the phone before approving an enrolment.

A fingerprint is the SHA-256 of a public key: for the attestation signing key, of its 32 raw
Ed25519 bytes (the same digest as its key id); for the TLS key, of the DER SubjectPublicKeyInfo
in the certificate request. It is written as 16 groups of 4 upper-case hex digits
(`3F2A 9C01 ...`), which can be read aloud group by group. `parse_fingerprint` accepts what an
administrator types: any case, with or without spaces or colons. Pure: bytes in, text out.
"""

from __future__ import annotations

import hashlib
import hmac
import string
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from google.protobuf.message import DecodeError

from certfed.v1 import directory_pb2
from federation.errors import InvalidInputError, PreconditionError
from signing import dsse

DIGEST_HEX_LENGTH = 64
GROUP = 4


class FingerprintMismatchError(PreconditionError):
    """The fingerprint an administrator confirmed is not the one of the key received."""


def format_fingerprint(digest_hex: str) -> str:
    upper = digest_hex.upper()
    return " ".join(upper[i : i + GROUP] for i in range(0, len(upper), GROUP))


def parse_fingerprint(text: str, field_name: str) -> str:
    """The 64 lower-case hex digits of a typed fingerprint; separators and case are ignored."""
    digits = "".join(character for character in text if character not in " :-\t").lower()
    if len(digits) != DIGEST_HEX_LENGTH or any(c not in string.hexdigits for c in digits):
        raise InvalidInputError(
            field_name,
            "a key fingerprint is 64 hex digits (16 groups of 4, as `certfed node enrol` "
            "printed them at the applying office)",
        )
    return digits


def signing_key_fingerprint(raw_public_key: bytes) -> str:
    return format_fingerprint(hashlib.sha256(raw_public_key).hexdigest())


def tls_key_fingerprint(csr_pem: bytes) -> str:
    """Fingerprint of the public key a PEM certificate request asks to have certified."""
    public_key = x509.load_pem_x509_csr(csr_pem).public_key()
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return format_fingerprint(hashlib.sha256(der).hexdigest())


@dataclass(frozen=True)
class KeyFingerprints:
    """The two keys an applicant asks the federation to trust, as fingerprints."""

    signing_key: str
    tls_key: str

    @classmethod
    def of_keys(cls, signing_public_key: bytes, tls_csr_pem: bytes) -> KeyFingerprints:
        return cls(signing_key_fingerprint(signing_public_key), tls_key_fingerprint(tls_csr_pem))

    @classmethod
    def of_application(cls, envelope: dsse.Envelope) -> KeyFingerprints:
        """The fingerprints of the keys in a (signed) enrolment application."""
        application = directory_pb2.NodeApplication()
        try:
            application.ParseFromString(envelope.payload)
        except DecodeError:
            raise InvalidInputError(
                "application.payload", "is not a serialised NodeApplication"
            ) from None
        return cls.of_keys(application.signing_public_key, application.tls_csr_pem)

    def confirm(self, signing_key: str, tls_key: str, node_id: str) -> None:
        """Raise FingerprintMismatchError unless both typed fingerprints match these."""
        for what, expected, typed, field_name in (
            ("signing key", self.signing_key, signing_key, "signing_key_fingerprint"),
            ("TLS key", self.tls_key, tls_key, "tls_key_fingerprint"),
        ):
            given = parse_fingerprint(typed, field_name)
            received = parse_fingerprint(expected, field_name)
            if not hmac.compare_digest(given, received):
                raise FingerprintMismatchError(
                    f"the {what} fingerprint you confirmed is not the one of the {what} the "
                    f"registry received in node {node_id!r}'s application; do not approve: "
                    "check the fingerprints the office sent you out of band (by phone or "
                    "letter, not by e-mail from the applicant) against `certfed registry list`"
                )
