"""Deleting personal data whose retention period has passed, and erasing one person.

Every function works inside the caller's transaction and leaves alone what work still in
progress needs: an open assistance request, a certification awaiting review, a termination
awaiting review, an overpayment still to recover. What the transparency log and the audit chain
are built from (log entries, checkpoints, attestations, audit records) is never touched; where a
row carries both a personal payload and a hash, the payload goes and the hash stays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import delete, func, or_, update
from sqlalchemy.engine import CursorResult
from sqlmodel import Session, col, select

from federation_node.rules.entitlement import EntitlementState
from federation_node.store import recoveries
from federation_node.store.models import (
    OPEN_ASSISTANCE_STATES,
    AssistanceRequest,
    AssistanceState,
    AttestationReview,
    Beneficiary,
    Certification,
    CertificationState,
    DataSignal,
    DeliveryState,
    Entitlement,
    Evidence,
    HoldDecision,
    OutboxMessage,
    PendingSignal,
    PendingSignalDecision,
    Reminder,
    RequestDirection,
)

CLOSED_ASSISTANCE_STATES = [
    state for state in AssistanceState if state not in OPEN_ASSISTANCE_STATES
]
# Written over an erased person's masked identity number: the row stays for the payments and
# attestations that name it.
ERASED_MARK = ""


@dataclass(frozen=True)
class PersonErased:
    """What erasing one person removed, by kind (counts only)."""

    signals: int
    reminders: int
    request_identities: int
    messages: int
    evidence: int


def _count(result: Any) -> int:
    return int(cast(CursorResult[Any], result).rowcount)


def _under_review_requests(session: Session) -> set[str]:
    rows = session.exec(
        select(Certification.request_id).where(
            Certification.status == CertificationState.AWAITING_REVIEW,
            col(Certification.request_id).is_not(None),
        )
    )
    return {request_id for request_id in rows if request_id is not None}


def _digests_under_review(session: Session) -> set[str]:
    rows = session.exec(
        select(Certification.evidence_digests).where(
            Certification.status == CertificationState.AWAITING_REVIEW
        )
    )
    return {digest for digests in rows for digest in digests}


def erase_closed_request_identities(session: Session, closed_before: datetime) -> int:
    """Drop the sealed identity of inbound requests closed (declined or completed) before
    `closed_before`, unless a certification for them awaits review; the payload's hash stays.
    Returns how many."""
    statement = update(AssistanceRequest).where(
        col(AssistanceRequest.direction) == RequestDirection.INBOUND,
        col(AssistanceRequest.status).in_(CLOSED_ASSISTANCE_STATES),
        col(AssistanceRequest.updated_at) < closed_before,
        col(AssistanceRequest.sealed_identity).is_not(None),
    )
    kept = _under_review_requests(session)
    if kept:
        statement = statement.where(col(AssistanceRequest.request_id).not_in(sorted(kept)))
    return _count(
        session.execute(
            statement.values(sealed_identity=None).execution_options(synchronize_session=False)
        )
    )


def _pending_terminations(session: Session) -> list[str]:
    return list(
        session.exec(
            select(Entitlement.beneficiary_id).where(
                col(Entitlement.termination_pending_review).is_(True)
            )
        )
    )


def delete_signals(
    session: Session, *, recorded_before: datetime, unmatched_before: datetime
) -> int:
    """Delete data signals recorded before `recorded_before`, and those that matched nobody of
    this office recorded before `unmatched_before`; those of a person whose termination awaits
    review stay (the reviewer must not be who recorded them). Returns how many."""
    statement = delete(DataSignal).where(
        or_(
            col(DataSignal.recorded_at) < recorded_before,
            (col(DataSignal.beneficiary_id).is_(None))
            & (col(DataSignal.recorded_at) < unmatched_before),
        )
    )
    pending = _pending_terminations(session)
    if pending:
        statement = statement.where(
            or_(
                col(DataSignal.beneficiary_id).is_(None),
                col(DataSignal.beneficiary_id).not_in(pending),
            )
        )
    return _count(session.execute(statement.execution_options(synchronize_session=False)))


def delete_decided_pending_signals(session: Session, decided_before: datetime) -> int:
    """Delete the alive signals entered at the desk that a reviewer applied or rejected before
    `decided_before` (the audit records who decided keep the decision); those still awaiting a
    decision stay. Returns how many."""
    return _count(
        session.execute(
            delete(PendingSignal)
            .where(
                col(PendingSignal.decision) != PendingSignalDecision.PENDING,
                col(PendingSignal.decided_at) < decided_before,
            )
            .execution_options(synchronize_session=False)
        )
    )


def delete_delivered_messages(
    session: Session, delivered_before: datetime, subject_ids: Sequence[str] | None = None
) -> int:
    """Delete messages delivered before `delivered_before` (about `subject_ids` only, when
    given); pending and dead ones stay for the dispatcher and the administrator."""
    statement = delete(OutboxMessage).where(
        col(OutboxMessage.state) == DeliveryState.DELIVERED,
        col(OutboxMessage.delivered_at) < delivered_before,
    )
    if subject_ids is not None:
        if not subject_ids:
            return 0
        statement = statement.where(col(OutboxMessage.subject_id).in_(sorted(set(subject_ids))))
    return _count(session.execute(statement.execution_options(synchronize_session=False)))


def delete_evidence(
    session: Session, retained_before: datetime, digests: Sequence[str] | None = None
) -> list[str]:
    """Delete evidence files whose retention started before `retained_before` (among `digests`
    only, when given), except files a certification awaiting review names; returns their
    digests."""
    if digests is not None and not digests:
        return []
    statement = select(Evidence.sha256).where(col(Evidence.retained_from) < retained_before)
    if digests is not None:
        statement = statement.where(col(Evidence.sha256).in_(sorted(set(digests))))
    kept = _digests_under_review(session)
    expired = [
        digest
        for digest in session.exec(statement.order_by(col(Evidence.sha256)).with_for_update())
        if digest not in kept
    ]
    if expired:
        session.execute(delete(Evidence).where(col(Evidence.sha256).in_(expired)))
    return expired


def former_beneficiaries(session: Session, ended_before: datetime) -> list[str]:
    """People whose entitlement ended (terminated, reviewed, nothing left to recover) before
    `ended_before` and whose identity this office still holds."""
    return list(
        session.exec(
            select(Beneficiary.beneficiary_id)
            .join(Entitlement, col(Entitlement.beneficiary_id) == col(Beneficiary.beneficiary_id))
            .where(
                Entitlement.state == EntitlementState.TERMINATED,
                col(Entitlement.updated_at) < ended_before,
                col(Entitlement.termination_pending_review).is_(False),
                recoveries.balance_of_entitlement() == 0,
                func.length(col(Beneficiary.sealed_identity)) > 0,
            )
            .order_by(col(Beneficiary.beneficiary_id))
        )
    )


def erasure_blockers(session: Session, beneficiary: Beneficiary) -> list[str]:
    """Why this person's data may not be erased yet (empty when it may): the reasons name work
    still in progress, never the person."""
    reasons: list[str] = []
    entitlement = session.get(Entitlement, beneficiary.beneficiary_id)
    if entitlement is None or entitlement.state is not EntitlementState.TERMINATED:
        reasons.append("the office still pays this person: their entitlement has not ended")
    if entitlement is not None and entitlement.termination_pending_review:
        reasons.append("their termination awaits review")
    if entitlement is not None:
        [debt] = recoveries.debts(session, [entitlement])
        if debt.balance_fen > 0:
            reasons.append("an overpayment remains to be recovered")
        elif debt.balance_fen < 0:
            reasons.append("more was recovered than is due: the difference is to be refunded")
    open_request = session.exec(
        select(AssistanceRequest.request_id).where(
            col(AssistanceRequest.status).in_(sorted(OPEN_ASSISTANCE_STATES)),
            or_(
                col(AssistanceRequest.beneficiary_id) == beneficiary.beneficiary_id,
                col(AssistanceRequest.subject_locator) == beneficiary.subject_locator,
            ),
        )
    ).first()
    if open_request is not None:
        reasons.append(f"assistance request {open_request} is open")
    under_review = session.exec(
        select(Certification.certification_id).where(
            Certification.status == CertificationState.AWAITING_REVIEW,
            Certification.subject_locator == beneficiary.subject_locator,
        )
    ).first()
    if under_review is not None:
        reasons.append(f"certification {under_review} awaits review")
    held = session.exec(
        select(AttestationReview.review_id).where(
            AttestationReview.beneficiary_id == beneficiary.beneficiary_id,
            AttestationReview.decision == HoldDecision.PENDING,
        )
    ).first()
    if held is not None:
        reasons.append(f"held attestation {held} awaits review")
    return reasons


def erase_person(session: Session, beneficiary: Beneficiary, now: datetime) -> PersonErased:
    """Remove what this office holds about one person beyond the pseudonymous record payments
    and attestations name: the sealed identity, masked number and roll key, data signals (also
    those held for a second person's approval), reminders, the identities peers sent about them,
    delivered messages about them and the evidence files of their certifications. The caller
    checks `erasure_blockers` first."""
    beneficiary_id = beneficiary.beneficiary_id
    locator = beneficiary.subject_locator
    session.execute(
        update(Beneficiary)
        .where(col(Beneficiary.beneficiary_id) == beneficiary_id)
        .values(
            sealed_identity=b"", masked_identity_number=ERASED_MARK, roll_key=None, updated_at=now
        )
        .execution_options(synchronize_session="fetch")
    )
    signals = _count(
        session.execute(
            delete(DataSignal)
            .where(col(DataSignal.beneficiary_id) == beneficiary_id)
            .execution_options(synchronize_session=False)
        )
    ) + _count(
        session.execute(
            delete(PendingSignal)
            .where(col(PendingSignal.beneficiary_id) == beneficiary_id)
            .execution_options(synchronize_session=False)
        )
    )
    reminders = _count(
        session.execute(
            delete(Reminder)
            .where(col(Reminder.beneficiary_id) == beneficiary_id)
            .execution_options(synchronize_session=False)
        )
    )
    request_ids = list(
        session.exec(
            select(AssistanceRequest.request_id).where(
                or_(
                    col(AssistanceRequest.beneficiary_id) == beneficiary_id,
                    col(AssistanceRequest.subject_locator) == locator,
                )
            )
        )
    )
    request_identities = _count(
        session.execute(
            update(AssistanceRequest)
            .where(
                col(AssistanceRequest.subject_locator) == locator,
                col(AssistanceRequest.sealed_identity).is_not(None),
                col(AssistanceRequest.status).in_(CLOSED_ASSISTANCE_STATES),
            )
            .values(sealed_identity=None)
            .execution_options(synchronize_session=False)
        )
    )
    messages = delete_delivered_messages(session, now, [beneficiary_id, *request_ids])
    digests = [
        digest
        for digests in session.exec(
            select(Certification.evidence_digests).where(Certification.subject_locator == locator)
        )
        for digest in digests
    ]
    evidence = len(delete_evidence(session, now, digests))
    return PersonErased(
        signals=signals,
        reminders=reminders,
        request_identities=request_identities,
        messages=messages,
        evidence=evidence,
    )
