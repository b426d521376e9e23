"""Storage of peers' attestations waiting to be proven in their issuer's witnessed log.

Promises: the only code that writes `inclusion_wait`. Every function works inside the caller's
session; nothing here commits. A row is added when a peer's attestation is received and would be
applied; it stays until the attestation is proven (`proven_at`, with the checkpoint), and is
never deleted by this module: the stored attestation it names is kept whatever happens.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import Session, col, func, select

from federation_node.store.models import InclusionWait

# The first attempt is at once, then every FIRST_RETRY for QUICK_ATTEMPTS attempts (about a
# second: the issuer's sequencing pool), then each failed one doubles the wait, up to MAX_RETRY.
FIRST_RETRY = timedelta(milliseconds=100)
QUICK_ATTEMPTS = 10
MAX_RETRY = timedelta(seconds=30)
MAX_ERROR_LENGTH = 500


def add(
    session: Session,
    issuing_node_id: str,
    attestation_id: str,
    now: datetime,
    *,
    proven: tuple[int, bytes] | None = None,
) -> None:
    """A received attestation waits to be proven; or, `proven` by the checkpoint its delivery
    carried (tree size, note), is recorded proven at once. One INSERT either way: the caller adds
    a wait only with the attestation's first receipt, so none exists yet."""
    tree_size, checkpoint_note = proven if proven is not None else (None, None)
    session.add(
        InclusionWait(
            issuing_node_id=issuing_node_id,
            attestation_id=attestation_id,
            received_at=now,
            attempts=0 if proven is None else 1,
            next_attempt_at=now,
            last_error="",
            proven_at=None if proven is None else now,
            proven_tree_size=tree_size,
            checkpoint_note=checkpoint_note,
        )
    )


def get(session: Session, issuing_node_id: str, attestation_id: str) -> InclusionWait | None:
    return session.get(InclusionWait, (issuing_node_id, attestation_id))


def due(session: Session, now: datetime, limit: int) -> list[InclusionWait]:
    """Waiting attestations whose next attempt is due, oldest first."""
    return list(
        session.exec(
            select(InclusionWait)
            .where(col(InclusionWait.proven_at).is_(None))
            .where(col(InclusionWait.next_attempt_at) <= now)
            .order_by(col(InclusionWait.next_attempt_at))
            .limit(limit)
        )
    )


def next_attempt(session: Session) -> datetime | None:
    """When the earliest waiting attestation is tried next; None when none waits."""
    return session.exec(
        select(func.min(InclusionWait.next_attempt_at)).where(
            col(InclusionWait.proven_at).is_(None)
        )
    ).one()


def waiting(session: Session) -> int:
    return int(
        session.exec(
            select(func.count())
            .select_from(InclusionWait)
            .where(col(InclusionWait.proven_at).is_(None))
        ).one()
    )


def record_failure(session: Session, row: InclusionWait, error: str, now: datetime) -> None:
    """Another attempt failed: say why, and when to try again (module constants)."""
    row.attempts += 1
    doublings = min(max(row.attempts - QUICK_ATTEMPTS, 0), 16)
    wait = min(FIRST_RETRY * (2**doublings), MAX_RETRY)
    row.next_attempt_at = now + wait
    row.last_error = error[:MAX_ERROR_LENGTH]
    session.add(row)


def record_proven(
    session: Session,
    row: InclusionWait,
    tree_size: int,
    checkpoint_note: bytes,
    now: datetime,
    *,
    outcome: str = "",
) -> None:
    """Proven against the checkpoint of `tree_size`; `outcome` says why it was then not
    applied, if it was not."""
    row.attempts += 1
    row.proven_at = now
    row.proven_tree_size = tree_size
    row.checkpoint_note = checkpoint_note
    row.last_error = outcome[:MAX_ERROR_LENGTH]
    session.add(row)
