"""Verifying a certification attestation against a directory: the one check every receiver, the
offline `certfed verify`, and the demo use.

An attestation counts only if its envelope is signed, over the bytes as received, by a key that
the directory lists for the issuing node and that was inside its validity window (and not yet
revoked) at the attestation's issued_at; the issuer must be active and hold a certifying role,
or be the paying office the attestation names: an office certifies the people it pays itself (at
its counter, or by data match), and such an attestation concerns no other office. A paying office
may also tell another office paying the same person of a death, imprisonment or disappearance it
confirmed, or correct what it told it (offices/life_events.py); the receiver holds those for its
reviewer.
"""

from __future__ import annotations

from collections.abc import KeysView
from datetime import datetime, timedelta

from google.protobuf.message import DecodeError

from certfed.v1 import attestation_pb2, common_pb2, directory_pb2
from federation.directory import CERTIFYING_ROLES, PAYING_ROLES, TrustedDirectory
from federation.errors import AttestationRefusedError, InvalidInputError, UnknownSigningKeyError
from federation.timestamps import to_datetime
from federation_node.tlog.bundle import Bundle
from federation_node.tlog.checkpoints import verify_checkpoint
from signing import dsse, merkle
from signing.errors import InclusionProofError
from signing.note import Checkpoint, NoteVerifier

# Outcomes that end entitlement: what one paying office tells another.
END_OUTCOMES = frozenset(
    {
        common_pb2.CERTIFICATION_OUTCOME_DECEASED,
        common_pb2.CERTIFICATION_OUTCOME_IMPRISONED,
        common_pb2.CERTIFICATION_OUTCOME_DECLARED_MISSING,
    }
)


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
    paying = bool(PAYING_ROLES.intersection(issuer_node.roles))
    pays_the_person = attestation.paying_node_id == issuer and paying
    announces_an_end = paying and (
        attestation.outcome in END_OUTCOMES or bool(attestation.corrects_attestation_id)
    )
    if not (
        CERTIFYING_ROLES.intersection(issuer_node.roles) or pays_the_person or announces_an_end
    ):
        raise AttestationRefusedError(
            f"node {issuer} is not allowed to certify residents other offices pay"
        )
    if not attestation.HasField("issued_at"):
        raise InvalidInputError("issued_at", "is required")
    issued_at = to_datetime(attestation.issued_at, "issued_at")
    if issued_at > now + max_clock_skew:
        raise InvalidInputError("issued_at", "is in the future")
    keys = directory.signing_keys(issuer, issued_at)
    _refuse_unusable_key(envelope, issuer_node, keys.keys(), issued_at)
    if not keys:
        raise AttestationRefusedError(
            f"node {issuer} had no valid signing key at {issued_at.isoformat()}"
        )
    verified = dsse.verify(envelope, keys, dsse.ATTESTATION_PAYLOAD_TYPE)
    return attestation, verified.key_id


def _refuse_unusable_key(
    envelope: dsse.Envelope,
    issuer: directory_pb2.DirectoryNode,
    usable: KeysView[str],
    issued_at: datetime,
) -> None:
    """Say precisely why, when the envelope is signed only by keys of the issuer that the
    directory does not let sign at issued_at (revoked, retired, or not valid yet)."""
    named = {signature.keyid for signature in envelope.signatures if signature.keyid}
    if not named or named & set(usable):
        return
    for key in issuer.signing_keys:
        if key.key_id not in named:
            continue
        short = f"key {key.key_id[:16]} of node {issuer.node_id}"
        if key.HasField("revoked_at") and issued_at >= to_datetime(key.revoked_at):
            reason = f" ({key.revocation_reason})" if key.revocation_reason else ""
            raise AttestationRefusedError(
                f"signed with {short}, revoked from {to_datetime(key.revoked_at).isoformat()}"
                f"{reason}; an attestation signed with it since then is not trusted"
            )
        if key.HasField("valid_until") and issued_at >= to_datetime(key.valid_until):
            raise AttestationRefusedError(
                f"signed with {short}, retired at {to_datetime(key.valid_until).isoformat()}; "
                "the node signs with its new key since"
            )
        raise AttestationRefusedError(
            f"signed with {short}, which was not yet valid at {issued_at.isoformat()}"
        )
    raise UnknownSigningKeyError(
        f"signed with a key that this directory does not list for node {issuer.node_id}; "
        "if the node rotated its key recently, a newer directory will list it"
    )


def verify_bundle(
    bundle: Bundle,
    directory: TrustedDirectory,
    witness: NoteVerifier,
    *,
    now: datetime,
    max_clock_skew: timedelta,
) -> tuple[attestation_pb2.CertificationAttestation, str, Checkpoint]:
    """Check an attestation bundle offline; return the attestation, its key id and checkpoint.

    The envelope must verify as above; the checkpoint must carry the issuer's signature and the
    registry witness's cosignature; and the inclusion proof must place the envelope, hashed as
    it is logged (RFC 9162 2.1.1), at `leaf_index` in that checkpoint's tree (RFC 9162 2.1.3.2).
    """
    envelope = dsse.Envelope.from_json(bundle.envelope_json)
    attestation, key_id = verify_attestation_envelope(
        envelope, directory, now=now, max_clock_skew=max_clock_skew
    )
    checkpoint = verify_checkpoint(
        bundle.checkpoint_note, attestation.issuing_node_id, directory, witness
    )
    if checkpoint.tree_size != bundle.tree_size:
        raise AttestationRefusedError(
            f"the bundle's proof is for a log of {bundle.tree_size} entries but its checkpoint "
            f"has {checkpoint.tree_size}"
        )
    try:
        merkle.verify_inclusion(
            merkle.leaf_hash(bundle.envelope_json),
            bundle.leaf_index,
            bundle.tree_size,
            bundle.inclusion_proof,
            checkpoint.root_hash,
        )
    except InclusionProofError as error:
        raise AttestationRefusedError(
            f"attestation {attestation.attestation_id} is not in the log that "
            f"{attestation.issuing_node_id} signed and the registry cosigned: {error}"
        ) from error
    return attestation, key_id, checkpoint
