"""Received attestations whose signing key has been revoked since: found, recorded, listed.

A revocation reaches a node as a new directory listing a key with a `revoked_at`. From then on
`federation_node.tlog.attestation` refuses anything signed with that key at or after that time. What
the node received and applied before cannot be refused any more, and must not silently count as
valid nor silently disappear: after every directory that lists revoked keys, `review_revocations`
records each received attestation signed by one of them as

* `refused-after-revocation` when its issued_at is at or after the key's revocation time (the
  key was no longer trustworthy when it signed: a reviewer must undo what it decided), or
* `signed-by-since-revoked-key` when it was signed before (still valid, but a reviewer looks at
  it again, since a compromise is often found late),

with an audit record, once per attestation; an attestation that arrives after the revocation,
signed before it, is recorded as it is stored (`flag_if_revoked`). Reviewers see the list at the
desk (ListRevocationReviews, `certfed desk ... review-list`). The only code that writes
`revocation_review`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import structlog
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from certfed.v1 import attestation_pb2
from federation.directory import TrustedDirectory
from federation.timestamps import to_datetime
from federation_node.store import attestations_store, audit
from federation_node.store.db import session_scope
from federation_node.store.models import (
    Attestation,
    AttestationDirection,
    RevocationFinding,
    RevocationReview,
)
from signing import dsse

log = structlog.get_logger("certfed.revocation")


@dataclass(frozen=True)
class RevokedKey:
    node_id: str
    revoked_at: datetime
    reason: str


def revoked_keys(directory: TrustedDirectory) -> dict[str, RevokedKey]:
    """Every signing key the directory lists as revoked, by key id."""
    return {
        key.key_id: RevokedKey(node.node_id, to_datetime(key.revoked_at), key.revocation_reason)
        for node in directory.directory.nodes
        for key in node.signing_keys
        if key.HasField("revoked_at")
    }


def _issued_at(attestation: Attestation) -> datetime:
    envelope = dsse.Envelope.from_json(
        attestation.envelope_json, max_bytes=len(attestation.envelope_json)
    )
    payload = attestation_pb2.CertificationAttestation.FromString(envelope.payload)
    return to_datetime(payload.issued_at, "issued_at")


def review_revocations(engine: Engine, directory: TrustedDirectory, now: datetime) -> int:
    """Record every received attestation signed by a revoked key not yet recorded; how many."""
    revoked = revoked_keys(directory)
    if not revoked:
        return 0
    flagged: list[RevocationFinding] = []
    with session_scope(engine) as session:
        candidates = session.exec(
            select(Attestation).where(
                Attestation.direction == AttestationDirection.RECEIVED,
                col(Attestation.signing_key_id).in_(list(revoked)),
            )
        ).all()
        for attestation in candidates:
            finding = _flag(session, attestation, revoked, directory.version, now)
            if finding is not None:
                flagged.append(finding)
    for finding in set(flagged):
        # Loud on purpose: each of these needs a person.
        log.warning(
            "attestation.revocation_review",
            finding=finding.value,
            count=flagged.count(finding),
            directory_version=directory.version,
        )
    return len(flagged)


def flag_if_revoked(
    session: Session, attestation: Attestation, directory: TrustedDirectory, now: datetime
) -> RevocationFinding | None:
    """At receipt, in the receiving transaction: an attestation signed, before its revocation
    time, by a key revoked since (verification refuses the others) goes on the list at once."""
    finding = _flag(session, attestation, revoked_keys(directory), directory.version, now)
    if finding is not None:
        log.warning(
            "attestation.revocation_review",
            finding=finding.value,
            count=1,
            directory_version=directory.version,
        )
    return finding


def _flag(
    session: Session,
    attestation: Attestation,
    revoked: dict[str, RevokedKey],
    directory_version: int,
    now: datetime,
) -> RevocationFinding | None:
    key = revoked.get(attestation.signing_key_id)
    if key is None:
        # The common case, decided without reading the list.
        return None
    listed = session.get(
        RevocationReview, (attestation.attestation_id, attestation.issuing_node_id)
    )
    if listed is not None:
        return None
    issued_at = _issued_at(attestation)
    finding = (
        RevocationFinding.REFUSED_AFTER_REVOCATION
        if issued_at >= key.revoked_at
        else RevocationFinding.SIGNED_BY_SINCE_REVOKED_KEY
    )
    session.add(
        RevocationReview(
            attestation_id=attestation.attestation_id,
            issuing_node_id=attestation.issuing_node_id,
            signing_key_id=attestation.signing_key_id,
            finding=finding,
            issued_at=issued_at,
            key_revoked_at=key.revoked_at,
            revocation_reason=key.reason,
            directory_version=directory_version,
            flagged_at=now,
        )
    )
    audit.append(
        session,
        actor="node:registry",
        action="attestation.revocation_review",
        subject_type="attestation",
        subject_id=attestation.attestation_id,
        details={
            "finding": finding.value,
            "signing_key_id": attestation.signing_key_id,
            "directory_version": directory_version,
        },
        now=now,
    )
    return finding


def page(session: Session, page_size: int, page_token: str) -> tuple[list[RevocationReview], str]:
    """Reviews in attestation id order (oldest attestation first)."""
    return attestations_store.page_by_attestation_id(
        session,
        select(RevocationReview),
        attestation_id=col(RevocationReview.attestation_id),
        issuing_node_id=col(RevocationReview.issuing_node_id),
        id_of=lambda row: row.attestation_id,
        page_size=page_size,
        page_token=page_token,
    )


def beneficiary_of(session: Session, review: RevocationReview) -> str:
    attestation = session.get(Attestation, (review.attestation_id, review.issuing_node_id))
    return (attestation.beneficiary_id or "") if attestation is not None else ""
