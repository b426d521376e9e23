"""Verifying a certification attestation against a directory: the one check every receiver, the
offline `certfed verify`, and the demo use.

An attestation counts only if its envelope is signed, over the bytes as received, by a key that
the directory lists for the issuing node and that was inside its validity window (and not yet
revoked) at the attestation's issued_at; the issuer must be active and hold a certifying role.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from google.protobuf.message import DecodeError

from certfed.v1 import attestation_pb2
from registry.directory import CERTIFYING_ROLES, TrustedDirectory
from registry.errors import AttestationRefusedError, InvalidInputError
from registry.timestamps import to_datetime
from signing import dsse


def verify_attestation_envelope(
    envelope: dsse.Envelope,
    directory: TrustedDirectory,
    *,
    now: datetime,
    max_clock_skew: timedelta,
) -> tuple[attestation_pb2.CertificationAttestation, str]:
    """Return the attestation and the id of the key that signed it, or raise saying why not."""
    if envelope.payload_type != dsse.ATTESTATION_PAYLOAD_TYPE:
        raise InvalidInputError("envelope.payload_type", "is not a certfed attestation")
    attestation = attestation_pb2.CertificationAttestation()
    try:
        attestation.ParseFromString(envelope.payload)
    except DecodeError as error:
        raise InvalidInputError("envelope.payload", "is not a certfed attestation") from error
    issuer = attestation.issuing_node_id
    if not issuer:
        raise InvalidInputError("issuing_node_id", "is required")
    issuer_node = directory.active_node(issuer)
    if not CERTIFYING_ROLES.intersection(issuer_node.roles):
        raise AttestationRefusedError(f"node {issuer} is not allowed to certify residents")
    if not attestation.HasField("issued_at"):
        raise InvalidInputError("issued_at", "is required")
    issued_at = to_datetime(attestation.issued_at, "issued_at")
    if issued_at > now + max_clock_skew:
        raise InvalidInputError("issued_at", "is in the future")
    keys = directory.signing_keys(issuer, issued_at)
    if not keys:
        raise AttestationRefusedError(
            f"node {issuer} had no valid signing key at {issued_at.isoformat()}"
        )
    verified = dsse.verify(envelope, keys, dsse.ATTESTATION_PAYLOAD_TYPE)
    return attestation, verified.key_id
