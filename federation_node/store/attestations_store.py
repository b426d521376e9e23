"""Attestations this node issued or received, kept as the DSSE JSON exactly as signed.

Attestations are never edited: a correction is a new attestation. An attestation id is its
issuer's: everything is keyed by (issuing node, attestation id), so a member delivering its own
attestation under an id it saw in another node's log stores a second attestation beside the
genuine one and never touches it. Receiving is idempotent per issuer: a redelivery is
recognised (same payload digest), and a different attestation under an id its issuer already
used is refused (`AttestationIdReusedError`) and the first one kept.

A lookup by id alone (the desk's export, a reviewer's decision) names the issuer when several
used the id, and is refused until it does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from federation.errors import (
    AlreadyExistsError,
    InvalidInputError,
    PreconditionError,
    UnknownAttestationError,
)
from federation_node.store import tally
from federation_node.store.bulk_insert import insert_rows
from federation_node.store.db import decode_page_token, encode_page_token
from federation_node.store.models import Attestation, AttestationDirection

T = TypeVar("T")


class AttestationIdReusedError(AlreadyExistsError):
    """An issuer delivered a different attestation under an id it had already used here."""

    def __init__(self, kept: Attestation, refused_sha256: str) -> None:
        super().__init__(
            f"node {kept.issuing_node_id} already delivered a different attestation with id "
            f"{kept.attestation_id}; the first one is kept and this one was not stored. An "
            "issuer must give every attestation a new id"
        )
        self.issuing_node_id = kept.issuing_node_id
        self.attestation_id = kept.attestation_id
        self.kept_sha256 = kept.payload_sha256
        self.refused_sha256 = refused_sha256


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
    # The attestation of the same issuer this one corrects, if any.
    corrects_attestation_id: str | None = None


def _row(facts: AttestationFacts, direction: AttestationDirection, now: datetime) -> Attestation:
    return Attestation(**dataclasses.asdict(facts), direction=direction, stored_at=now)


def store_issued(session: Session, facts: AttestationFacts, now: datetime) -> Attestation:
    """Keep an attestation this node has just signed."""
    if session.get(Attestation, (facts.attestation_id, facts.issuing_node_id)) is not None:
        raise AlreadyExistsError(f"attestation {facts.attestation_id} is already stored")
    attestation = _row(facts, AttestationDirection.ISSUED, now)
    session.add(attestation)
    session.flush()
    tally.add(session, tally.ATTESTATIONS_ISSUED, {str(facts.method): 1})
    return attestation


# An attestation this node has just signed, as the bulk path stores it: what AttestationFacts
# holds but the issuer and signing key, which a batch shares, in this order.
ISSUED_COLUMNS = (
    "attestation_id",
    "envelope_json",
    "paying_node_id",
    "subject_locator",
    "beneficiary_id",
    "request_id",
    "method",
    "outcome",
    "observed_at",
    "valid_until",
    "payload_sha256",
    "corrects_attestation_id",
)
_METHOD = ISSUED_COLUMNS.index("method")
IssuedRow = tuple[
    str, bytes, str, bytes, str | None, str | None, int, int, datetime, datetime, str, str | None
]


def store_issued_many(
    session: Session,
    rows: Iterable[IssuedRow],
    *,
    issuing_node_id: str,
    signing_key_id: str,
    now: datetime,
) -> int:
    """Keep attestations this node has just signed with one key, in one bulk insert (fresh
    ids: one this node reused fails the primary key); rows in ISSUED_COLUMNS order."""
    return insert_rows(
        session,
        Attestation.__table__,  # type: ignore[attr-defined]
        ISSUED_COLUMNS,
        tally.counted(session, tally.ATTESTATIONS_ISSUED, rows, lambda row: str(row[_METHOD])),
        same={
            "issuing_node_id": issuing_node_id,
            "signing_key_id": signing_key_id,
            "direction": AttestationDirection.ISSUED,
            "stored_at": now,
        },
    )


def store_received(
    session: Session, facts: AttestationFacts, now: datetime
) -> tuple[Attestation, bool]:
    """Keep an attestation delivered by a peer. Returns it and whether it was a redelivery;
    raises `AttestationIdReusedError` when its issuer used the id for another attestation."""
    key = (facts.attestation_id, facts.issuing_node_id)
    existing = session.get(Attestation, key)
    if existing is not None:
        return _redelivered(existing, facts), True
    attestation = _row(facts, AttestationDirection.RECEIVED, now)
    try:
        # A savepoint: a retry racing the original delivery must find the winner afterwards.
        with session.begin_nested():
            session.add(attestation)
    except IntegrityError:
        winner = session.get(Attestation, key)
        if winner is None:
            raise
        return _redelivered(winner, facts), True
    return attestation, False


def _redelivered(existing: Attestation, facts: AttestationFacts) -> Attestation:
    if existing.payload_sha256 != facts.payload_sha256:
        raise AttestationIdReusedError(existing, facts.payload_sha256)
    return existing


def get(session: Session, attestation_id: str, issuing_node_id: str = "") -> Attestation:
    """The attestation with this id, from `issuing_node_id` when given. Without an issuer, an
    id several issuers used is refused (FAILED_PRECONDITION) naming them, never one picked."""
    if issuing_node_id:
        attestation = session.get(Attestation, (attestation_id, issuing_node_id))
        if attestation is None:
            raise UnknownAttestationError(
                f"no attestation {attestation_id} from node {issuing_node_id} at this node"
            )
        return attestation
    found = list(
        session.exec(
            select(Attestation)
            .where(Attestation.attestation_id == attestation_id)
            .order_by(col(Attestation.issuing_node_id))
        )
    )
    if not found:
        raise UnknownAttestationError(f"no attestation {attestation_id} at this node")
    if len(found) > 1:
        raise PreconditionError(
            f"attestation id {attestation_id} was used by several nodes "
            f"({', '.join(a.issuing_node_id for a in found)}); name the issuing node"
        )
    return found[0]


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
    return page_by_attestation_id(
        session,
        statement,
        attestation_id=col(Attestation.attestation_id),
        issuing_node_id=col(Attestation.issuing_node_id),
        id_of=lambda row: row.attestation_id,
        page_size=page_size,
        page_token=page_token,
    )


def page_by_attestation_id(
    session: Session,
    statement: SelectOfScalar[T],
    *,
    attestation_id: Mapped[str],
    issuing_node_id: Mapped[str],
    id_of: Callable[[T], str],
    page_size: int,
    page_token: str,
) -> tuple[list[T], str]:
    """One page of rows keyed by (attestation id, issuer), in id order, and the next page's
    token (store/db.py's keyset pagination, by id).

    An id is not unique across issuers, so a page never ends inside a run of one id: it takes
    the rest of the run (one row per issuer that used it), and the next page starts after it.
    """
    if page_size < 1:
        raise InvalidInputError("page_size", "must be at least 1")
    after = decode_page_token(page_token)
    resumed = statement if after is None else statement.where(attestation_id > after)
    ordered = resumed.order_by(attestation_id, issuing_node_id)
    rows = list(session.exec(ordered.limit(page_size + 1)))
    if len(rows) <= page_size:
        return rows, ""
    last = id_of(rows[page_size - 1])
    if id_of(rows[page_size]) != last:
        return rows[:page_size], encode_page_token(last)
    run = session.exec(statement.where(attestation_id == last).order_by(issuing_node_id))
    head = [row for row in rows[:page_size] if id_of(row) != last]
    return [*head, *run], encode_page_token(last)


def for_locator(session: Session, subject_locator: bytes) -> list[Attestation]:
    """Every attestation about one person, oldest first."""
    return list(
        session.exec(
            select(Attestation)
            .where(Attestation.subject_locator == subject_locator)
            .order_by(col(Attestation.attestation_id), col(Attestation.issuing_node_id))
        )
    )


def corrections_of(
    session: Session, attestation_id: str, issuing_node_id: str
) -> list[Attestation]:
    """The attestations of the same issuer that correct (supersede) this one, oldest first."""
    return list(
        session.exec(
            select(Attestation)
            .where(
                Attestation.corrects_attestation_id == attestation_id,
                Attestation.issuing_node_id == issuing_node_id,
            )
            .order_by(col(Attestation.attestation_id))
        )
    )


def end_reporters(session: Session, beneficiary_id: str, outcomes: Sequence[int]) -> set[str]:
    """The nodes that delivered an attestation about the person with one of `outcomes` (a
    death, imprisonment or disappearance) to this node."""
    rows = session.exec(
        select(Attestation.issuing_node_id).where(
            Attestation.beneficiary_id == beneficiary_id,
            Attestation.direction == AttestationDirection.RECEIVED,
            col(Attestation.outcome).in_(list(outcomes)),
        )
    )
    return set(rows)
