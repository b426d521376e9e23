"""Attestations this node issued or received, kept as the DSSE JSON exactly as signed.

Attestations are never edited: a correction is a new attestation. Receiving is idempotent on the
attestation id, so a peer's redelivery is recognised (same payload digest) and a different
attestation under a used id is refused.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from federation.errors import AlreadyExistsError, UnknownAttestationError
from federation_node.store.bulk_insert import insert_rows
from federation_node.store.db import keyset_page
from federation_node.store.models import Attestation, AttestationDirection


@dataclass(frozen=True)
class AttestationFacts:
    """What is kept of an attestation besides its envelope: the fields lists and checks read."""

    attestation_id: str
    envelope_json: bytes
    issuing_node_id: str
    paying_node_id: str
    subject_locator: bytes
    beneficiary_id: str | None
    request_id: str | None
    method: int
    outcome: int
    observed_at: datetime
    valid_until: datetime
    signing_key_id: str
    payload_sha256: str


def _row(facts: AttestationFacts, direction: AttestationDirection, now: datetime) -> Attestation:
    return Attestation(**dataclasses.asdict(facts), direction=direction, stored_at=now)


def store_issued(session: Session, facts: AttestationFacts, now: datetime) -> Attestation:
    """Keep an attestation this node has just signed."""
    if session.get(Attestation, facts.attestation_id) is not None:
        raise AlreadyExistsError(f"attestation {facts.attestation_id} is already stored")
    attestation = _row(facts, AttestationDirection.ISSUED, now)
    session.add(attestation)
    session.flush()
    return attestation


def store_issued_many(session: Session, facts: Sequence[AttestationFacts], now: datetime) -> int:
    """Keep attestations this node has just signed, in one bulk insert (fresh ids: a reused
    one fails the primary key)."""
    names = tuple(field.name for field in dataclasses.fields(AttestationFacts))
    values = attrgetter(*names)
    return insert_rows(
        session,
        Attestation.__table__,  # type: ignore[attr-defined]
        (*names, "direction", "stored_at"),
        ((*values(one), AttestationDirection.ISSUED, now) for one in facts),
    )


def store_received(
    session: Session, facts: AttestationFacts, now: datetime
) -> tuple[Attestation, bool]:
    """Keep an attestation delivered by a peer. Returns it and whether it was a redelivery."""
    attestation_id, payload_sha256 = facts.attestation_id, facts.payload_sha256
    existing = session.get(Attestation, attestation_id)
    if existing is not None:
        return _redelivered(existing, payload_sha256), True
    attestation = _row(facts, AttestationDirection.RECEIVED, now)
    try:
        # A savepoint: a retry racing the original delivery must find the winner afterwards.
        with session.begin_nested():
            session.add(attestation)
    except IntegrityError:
        winner = session.get(Attestation, attestation_id)
        if winner is None:
            raise
        return _redelivered(winner, payload_sha256), True
    return attestation, False


def _redelivered(existing: Attestation, payload_sha256: str) -> Attestation:
    if existing.payload_sha256 != payload_sha256:
        raise AlreadyExistsError("attestation id reused with different content")
    return existing


def get(session: Session, attestation_id: str) -> Attestation:
    attestation = session.get(Attestation, attestation_id)
    if attestation is None:
        raise UnknownAttestationError(f"no attestation {attestation_id} at this node")
    return attestation


def page(
    session: Session,
    direction: AttestationDirection | None,
    page_size: int,
    page_token: str,
) -> tuple[list[Attestation], str]:
    """Attestations oldest first (ids are UUIDv7), optionally of one direction."""
    statement = select(Attestation)
    if direction is not None:
        statement = statement.where(Attestation.direction == direction)
    return keyset_page(
        session,
        statement,
        key=col(Attestation.attestation_id),
        key_of=lambda row: row.attestation_id,
        page_size=page_size,
        page_token=page_token,
    )


def for_locator(session: Session, subject_locator: bytes) -> list[Attestation]:
    """Every attestation about one person, oldest first."""
    return list(
        session.exec(
            select(Attestation)
            .where(Attestation.subject_locator == subject_locator)
            .order_by(col(Attestation.attestation_id))
        )
    )


def issued_by_method(session: Session) -> dict[int, int]:
    """How many attestations this node has issued, by certification method (for monitoring)."""
    rows = session.exec(
        select(Attestation.method, func.count())
        .where(Attestation.direction == AttestationDirection.ISSUED)
        .group_by(col(Attestation.method))
    ).all()
    return {int(method): int(count) for method, count in rows}
