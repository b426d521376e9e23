"""Received attestations kept for this office's reviewer instead of applied: which, why, and what
the reviewer decided. The only code that writes `attestation_review`.

A paying office applies a peer's attestation by itself only when it answers a request this
office sent to that peer about that person, or is an alive walk-in certified by a node whose role
and region allow it (paying_office.py). Anything else a member delivers (an attestation naming a
request that is not ours, a death or imprisonment nobody here asked about, a walk-in from a node
that does not certify in the region it names) is stored, verified as any other, and listed here
with its `HoldReason`; nothing about the person changes. A reviewer of this office then applies
it (through the paying office's one apply path: a negative outcome still only proposes a
termination, which another reviewer confirms) or dismisses it. Each decision is audited.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, exists, func, or_, select

from certfed.v1 import common_pb2
from federation.errors import NotFoundError, PreconditionError
from federation_node.ids import new_id
from federation_node.store import audit
from federation_node.store.db import keyset_page
from federation_node.store.models import (
    Attestation,
    AttestationReview,
    HoldDecision,
    HoldReason,
)


def hold(
    session: Session, attestation: Attestation, reason: HoldReason, actor: str, now: datetime
) -> AttestationReview:
    """Keep a just-stored received attestation for review, in the receiving transaction."""
    assert attestation.beneficiary_id is not None
    review = AttestationReview(
        review_id=new_id(),
        issuing_node_id=attestation.issuing_node_id,
        attestation_id=attestation.attestation_id,
        beneficiary_id=attestation.beneficiary_id,
        reason=reason,
        held_at=now,
        decision=HoldDecision.PENDING,
        decision_reason="",
    )
    session.add(review)
    audit.append(
        session,
        actor=actor,
        action="attestation.held_for_review",
        subject_type="attestation",
        subject_id=attestation.attestation_id,
        details={"beneficiary_id": attestation.beneficiary_id, "reason": reason.value},
        now=now,
    )
    return review


def pending(
    session: Session, attestation_id: str, issuing_node_id: str = ""
) -> tuple[AttestationReview, Attestation]:
    """The held attestation awaiting a decision, locked for the deciding transaction. Without
    `issuing_node_id`, an id held from several issuers is refused until the reviewer names one."""
    statement = select(AttestationReview).where(AttestationReview.attestation_id == attestation_id)
    if issuing_node_id:
        statement = statement.where(AttestationReview.issuing_node_id == issuing_node_id)
    reviews = list(
        session.exec(statement.order_by(col(AttestationReview.issuing_node_id)).with_for_update())
    )
    if not reviews:
        raise NotFoundError(f"attestation {attestation_id} is not kept for review at this node")
    if len(reviews) > 1:
        raise PreconditionError(
            f"attestation id {attestation_id} is kept for review from several nodes "
            f"({', '.join(r.issuing_node_id for r in reviews)}); name the issuing node"
        )
    [review] = reviews
    if review.decision is not HoldDecision.PENDING:
        raise PreconditionError(
            f"attestation {attestation_id} was {review.decision.value} by {review.decided_by}; "
            "it cannot be decided again"
        )
    attestation = session.get(Attestation, (attestation_id, review.issuing_node_id))
    if attestation is None:
        raise NotFoundError(f"attestation {attestation_id} is not kept at this node")
    return review, attestation


def decide(
    session: Session,
    review: AttestationReview,
    decision: HoldDecision,
    reviewer: str,
    reason: str,
    now: datetime,
) -> None:
    review.decision = decision
    review.decided_by = reviewer
    review.decided_at = now
    review.decision_reason = reason
    session.add(review)


def appliers(session: Session, beneficiary_id: str) -> set[str]:
    """Operators who applied a held attestation about the beneficiary: the one who let a held
    death report through may not also confirm the termination it proposed (four eyes)."""
    rows = session.exec(
        select(AttestationReview.decided_by).where(
            AttestationReview.beneficiary_id == beneficiary_id,
            AttestationReview.decision == HoldDecision.APPLIED,
        )
    )
    return {row for row in rows if row is not None}


def last_certified(
    session: Session, beneficiary_id: str, *, exclude: tuple[str, str] | None = None
) -> datetime | None:
    """When the person was last seen alive by a certification this office applied (issued here,
    or received and not held back), leaving out attestation `exclude` ((attestation id, issuing
    node), the one being judged): the earliest date a new certification may carry."""
    held_back = exists().where(
        col(AttestationReview.attestation_id) == col(Attestation.attestation_id),
        col(AttestationReview.issuing_node_id) == col(Attestation.issuing_node_id),
        col(AttestationReview.decision) != HoldDecision.APPLIED,
    )
    statement = select(func.max(Attestation.observed_at)).where(
        Attestation.beneficiary_id == beneficiary_id,
        Attestation.outcome == common_pb2.CERTIFICATION_OUTCOME_ALIVE,
        ~held_back,
    )
    if exclude is not None:
        attestation_id, issuing_node_id = exclude
        statement = statement.where(
            or_(
                Attestation.attestation_id != attestation_id,
                Attestation.issuing_node_id != issuing_node_id,
            )
        )
    latest: datetime | None = session.exec(statement).one()
    return latest


def page(
    session: Session, page_size: int, page_token: str, *, pending_only: bool
) -> tuple[list[AttestationReview], str]:
    """Held attestations, oldest hold first (review ids are UUIDv7)."""
    statement = select(AttestationReview)
    if pending_only:
        statement = statement.where(AttestationReview.decision == HoldDecision.PENDING)
    return keyset_page(
        session,
        statement,
        key=col(AttestationReview.review_id),
        key_of=lambda row: row.review_id,
        page_size=page_size,
        page_token=page_token,
    )
