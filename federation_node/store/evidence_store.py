"""Files kept as evidence of certifications, content-addressed by their SHA-256.

The store keeps what the caller sealed (offices/evidence.py seals every file to the node's key
before it gets here), never a file in clear. One file is one row whatever the number of uploads:
storing the same bytes again, or attaching them to a certification, only moves `retained_from`,
from which the retention period counts. Every function works inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from federation.errors import UnknownEvidenceError
from federation_node.store.models import Evidence


def store(
    session: Session,
    *,
    sha256: str,
    media_type: str,
    sealed_content: bytes,
    size_bytes: int,
    now: datetime,
) -> tuple[Evidence, bool]:
    """Keep a sealed file under its digest; returns the row and whether it was kept before."""
    existing = session.get(Evidence, sha256, with_for_update=True)
    if existing is not None:
        _retain(session, existing, now)
        return existing, True
    evidence = Evidence(
        sha256=sha256,
        media_type=media_type,
        size_bytes=size_bytes,
        sealed_content=sealed_content,
        uploaded_at=now,
        retained_from=now,
    )
    try:
        # A savepoint: two clerks uploading the same file at once keep one row.
        with session.begin_nested():
            session.add(evidence)
    except IntegrityError:
        winner = session.get(Evidence, sha256, with_for_update=True)
        if winner is None:
            raise
        _retain(session, winner, now)
        return winner, True
    return evidence, False


def get(session: Session, sha256: str) -> Evidence:
    evidence = session.get(Evidence, sha256)
    if evidence is None:
        raise UnknownEvidenceError(
            f"no evidence {sha256} at this node: it was never uploaded here, or was deleted "
            "after the retention period"
        )
    return evidence


def retain(session: Session, sha256s: Sequence[str], now: datetime) -> list[str]:
    """Restart the retention period of files a certification refers to; returns the digests
    this node does not keep (in the order given)."""
    if not sha256s:
        return []
    found = {
        row.sha256: row
        for row in session.exec(
            select(Evidence).where(col(Evidence.sha256).in_(sorted(set(sha256s))))
        )
    }
    for row in found.values():
        _retain(session, row, now)
    return [digest for digest in sha256s if digest not in found]


def _retain(session: Session, evidence: Evidence, now: datetime) -> None:
    if now > evidence.retained_from:
        evidence.retained_from = now
        session.add(evidence)
        session.flush()


def delete_retained_before(session: Session, before: datetime) -> list[str]:
    """Delete every file whose retention started before `before`; returns their digests."""
    expired = list(
        session.exec(
            select(Evidence.sha256)
            .where(Evidence.retained_from < before)
            .order_by(col(Evidence.sha256))
            .with_for_update()
        )
    )
    if expired:
        session.execute(delete(Evidence).where(col(Evidence.sha256).in_(expired)))
    return expired
