"""Face-recognition results kept at the paying office; the only code that writes
`face_recognition` (offices/face_recognition.py decides what each result does)."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, select

from federation_node.ids import new_id
from federation_node.store.db import keyset_page
from federation_node.store.models import (
    Beneficiary,
    BeneficiaryState,
    FaceRecognitionOutcome,
    FaceRecognitionRecord,
)


def recorded(
    session: Session, provider: str, provider_reference: str
) -> FaceRecognitionRecord | None:
    """The result kept under this key, if any (a replay of it is a duplicate)."""
    return session.exec(
        select(FaceRecognitionRecord).where(
            FaceRecognitionRecord.provider == provider,
            FaceRecognitionRecord.provider_reference == provider_reference,
        )
    ).first()


def add(
    session: Session,
    *,
    provider: str,
    provider_reference: str,
    beneficiary: Beneficiary,
    observed_at: datetime,
    liveness_score: float,
    match_score: float,
    helper_relation: str,
    outcome: FaceRecognitionOutcome,
    attestation_id: str | None,
    recorded_by: str,
    now: datetime,
) -> FaceRecognitionRecord:
    record = FaceRecognitionRecord(
        face_recognition_id=new_id(),
        provider=provider,
        provider_reference=provider_reference,
        beneficiary_id=beneficiary.beneficiary_id,
        observed_at=observed_at,
        liveness_score=liveness_score,
        match_score=match_score,
        helper_relation=helper_relation,
        outcome=outcome,
        attestation_id=attestation_id,
        valid_until_then=beneficiary.valid_until,
        recorded_by=recorded_by,
        recorded_at=now,
    )
    session.add(record)
    return record


def follow_ups(
    session: Session, page_size: int, page_token: str
) -> tuple[list[FaceRecognitionRecord], str]:
    """Results below the thresholds whose person is still paid and has not been certified by
    any channel since (their validity is what it was then), oldest first (ids are UUIDv7)."""
    statement = (
        select(FaceRecognitionRecord)
        .join(
            Beneficiary,
            col(Beneficiary.beneficiary_id) == col(FaceRecognitionRecord.beneficiary_id),
        )
        .where(
            FaceRecognitionRecord.outcome == FaceRecognitionOutcome.BELOW_THRESHOLD,
            Beneficiary.status == BeneficiaryState.ACTIVE,
            col(Beneficiary.valid_until).is_not_distinct_from(
                col(FaceRecognitionRecord.valid_until_then)
            ),
        )
    )
    return keyset_page(
        session,
        statement,
        key=col(FaceRecognitionRecord.face_recognition_id),
        key_of=lambda row: row.face_recognition_id,
        page_size=page_size,
        page_token=page_token,
    )
