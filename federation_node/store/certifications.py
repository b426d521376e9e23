"""Certifications: a clerk records the outcome of a check, a different operator reviews it.

Separation of duties (处理权与审核权分离) is enforced here, at the point of knowledge: the operator
who recorded a certification can neither approve nor reject it. A certification answering an
assistance request is refused once the request is closed or already has a certification that is
awaiting review or approved, so one request yields at most one attestation.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlmodel import Session, col, select

from federation.errors import (
    InvalidInputError,
    PreconditionError,
    SeparationOfDutiesError,
    UnknownCertificationError,
    UnknownRequestError,
)
from federation_node.ids import new_id
from federation_node.store.db import keyset_page
from federation_node.store.models import (
    OPEN_ASSISTANCE_STATES,
    AssistanceRequest,
    Certification,
    CertificationState,
    RequestDirection,
)

_DIGEST_HEX_LENGTH = 64


def paying_node_ids(certification: Certification) -> list[str]:
    """Every office the certification's attestation goes to, the recorded paying office first."""
    return [certification.paying_node_id, *sorted(certification.also_paying or {})]


def record(
    session: Session,
    *,
    request_id: str | None,
    subject_locator: bytes,
    paying_node_id: str,
    paying_region: str,
    certifying_region: str,
    method: int,
    outcome: int,
    observed_at: datetime,
    evidence_digests: Sequence[bytes | str],
    note: str,
    clerk_id: str,
    now: datetime,
    also_paying: dict[str, str] | None = None,
    corrects_attestation_id: str | None = None,
) -> Certification:
    """Record a check, awaiting review. `request_id` is None for a walk-in retiree;
    `also_paying` names the other offices (node id to paying region) of a walk-in several claim;
    `corrects_attestation_id` the attestation of this node a correction supersedes.

    Evidence digests are SHA-256 values, as bytes or lowercase hex; they are stored as hex.
    """
    if request_id is not None:
        _check_request_open_for_certification(session, request_id)
    certification = Certification(
        certification_id=new_id(),
        status=CertificationState.AWAITING_REVIEW,
        request_id=request_id,
        subject_locator=subject_locator,
        paying_node_id=paying_node_id,
        paying_region=paying_region,
        certifying_region=certifying_region,
        method=method,
        outcome=outcome,
        observed_at=observed_at,
        evidence_digests=[_digest_hex(digest) for digest in evidence_digests],
        note=note,
        clerk_id=clerk_id,
        reviewer_id=None,
        recorded_at=now,
        reviewed_at=None,
        rejection_reason="",
        attestation_id=None,
        also_paying=also_paying,
        corrects_attestation_id=corrects_attestation_id,
    )
    session.add(certification)
    session.flush()
    return certification


def _check_request_open_for_certification(session: Session, request_id: str) -> None:
    # The row lock serialises two clerks recording for one request at the same time.
    request = session.get(
        AssistanceRequest, request_id, with_for_update=True, populate_existing=True
    )
    if request is None or request.direction is not RequestDirection.INBOUND:
        raise UnknownRequestError(f"no inbound assistance request {request_id} at this node")
    if request.status not in OPEN_ASSISTANCE_STATES:
        raise PreconditionError(
            f"request {request_id} is {request.status.value}; "
            "no certification can be recorded for it"
        )
    pending = session.exec(
        select(Certification).where(
            Certification.request_id == request_id,
            col(Certification.status).in_(
                [CertificationState.AWAITING_REVIEW, CertificationState.APPROVED]
            ),
        )
    ).first()
    if pending is None:
        return
    if pending.status is CertificationState.AWAITING_REVIEW:
        raise PreconditionError(
            f"request {request_id} already has certification {pending.certification_id} "
            "awaiting review; a reviewer must reject it before another is recorded"
        )
    raise PreconditionError(
        f"request {request_id} already has approved certification {pending.certification_id}"
    )


def _digest_hex(digest: bytes | str) -> str:
    text = digest.hex() if isinstance(digest, bytes) else digest
    try:
        bytes.fromhex(text)
    except ValueError as error:
        raise InvalidInputError("evidence_digests", "is not a SHA-256 digest") from error
    if len(text) != _DIGEST_HEX_LENGTH:
        raise InvalidInputError("evidence_digests", "is not a SHA-256 digest")
    return text.lower()


def get(session: Session, certification_id: str, *, for_update: bool = False) -> Certification:
    certification = session.get(
        Certification,
        certification_id,
        with_for_update=for_update or None,
        populate_existing=for_update,
    )
    if certification is None:
        raise UnknownCertificationError(f"no certification {certification_id} at this node")
    return certification


def page(
    session: Session, status: CertificationState | None, page_size: int, page_token: str
) -> tuple[list[Certification], str]:
    """Certifications oldest first, optionally of one status."""
    statement = select(Certification)
    if status is not None:
        statement = statement.where(Certification.status == status)
    return keyset_page(
        session,
        statement,
        key=col(Certification.certification_id),
        key_of=lambda row: row.certification_id,
        page_size=page_size,
        page_token=page_token,
    )


def for_request(session: Session, request_id: str) -> list[Certification]:
    """Every certification recorded for one assistance request, oldest first."""
    return list(
        session.exec(
            select(Certification)
            .where(Certification.request_id == request_id)
            .order_by(col(Certification.certification_id))
        )
    )


def approve(
    session: Session,
    certification: Certification,
    reviewer_id: str,
    attestation_id: str,
    now: datetime,
) -> None:
    """Approve as `reviewer_id`, naming the attestation the node signed for it. `certification`
    was read in this transaction with `get(..., for_update=True)`, or recorded in it: under its
    row lock two reviewers acting at once cannot both decide (and sign twice)."""
    _check_reviewable(certification, reviewer_id, "approve")
    certification.status = CertificationState.APPROVED
    certification.reviewer_id = reviewer_id
    certification.reviewed_at = now
    certification.attestation_id = attestation_id
    session.add(certification)
    session.flush()


def reject(
    session: Session, certification: Certification, reviewer_id: str, reason: str, now: datetime
) -> None:
    """Reject as `reviewer_id`; the clerk may then record the check again. `certification` was
    read as `approve` says."""
    _check_reviewable(certification, reviewer_id, "reject")
    certification.status = CertificationState.REJECTED
    certification.reviewer_id = reviewer_id
    certification.reviewed_at = now
    certification.rejection_reason = reason
    session.add(certification)
    session.flush()


def _check_reviewable(certification: Certification, reviewer_id: str, verb: str) -> None:
    if reviewer_id == certification.clerk_id:
        raise SeparationOfDutiesError(
            f"you recorded this certification; a different reviewer must {verb} it"
        )
    if certification.status is not CertificationState.AWAITING_REVIEW:
        raise PreconditionError(
            f"certification {certification.certification_id} is already "
            f"{certification.status.value}; only one awaiting review can be {verb}d"
        )
