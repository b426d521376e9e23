"""Alive signals a person entered at the desk, held until a second person approves them. The only
code that writes `pending_signal`.

A feed account (role `feed`) is a service bound to named sources; its alive signals apply as
they arrive (data_signals.py). The same signal typed in by a clerk would, alone, extend a
person's validity and resume their payment with back pay: one person deciding where the rule is
two (docs/domain.md, separation of duties). So a person's alive signal about a beneficiary of
this office is kept here and changes nothing; a reviewer who is not the operator who entered it
applies it (`DataSignals.decide_pending`, through the same apply path as a feed's signal, the
attestation naming both) or rejects it. Its (source, source_record_id) is taken from the moment
it is held, so a rerun of the same entry is a duplicate, not a second hold.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlmodel import Session, col, select

from federation.errors import NotFoundError, PreconditionError
from federation_node.ids import new_id
from federation_node.store import audit
from federation_node.store.db import keyset_page
from federation_node.store.models import PendingSignal, PendingSignalDecision


def hold(
    session: Session,
    *,
    source: str,
    source_record_id: str,
    kind: int,
    beneficiary_id: str,
    observed_at: datetime,
    entered_by: str,
    now: datetime,
) -> PendingSignal:
    held = PendingSignal(
        pending_signal_id=new_id(),
        source=source,
        source_record_id=source_record_id,
        kind=kind,
        beneficiary_id=beneficiary_id,
        observed_at=observed_at,
        entered_by=entered_by,
        entered_at=now,
        decision=PendingSignalDecision.PENDING,
        decision_reason="",
    )
    session.add(held)
    return held


def taken(session: Session, keys: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which of these (source, source_record_id) pairs a held signal has taken."""
    wanted = set(keys)
    # Only the sources some held signal uses: a feed's have none (a person may not enter signals
    # under a feed account's source), so a feed batch costs this one indexed read, not a lookup
    # of each of its record ids.
    sources = session.exec(
        select(PendingSignal.source)
        .where(col(PendingSignal.source).in_(sorted({source for source, _ in wanted})))
        .distinct()
    ).all()
    record_ids = sorted({record_id for source, record_id in wanted if source in sources})
    found: set[tuple[str, str]] = set()
    for start in range(0, len(record_ids), 500):
        rows = session.exec(
            select(PendingSignal.source, PendingSignal.source_record_id).where(
                col(PendingSignal.source).in_(sources),
                col(PendingSignal.source_record_id).in_(record_ids[start : start + 500]),
            )
        )
        found.update(key for key in rows if key in wanted)
    return found


def pending(session: Session, pending_signal_id: str) -> PendingSignal:
    """The held signal awaiting a decision, locked for the deciding transaction."""
    held = session.exec(
        select(PendingSignal)
        .where(PendingSignal.pending_signal_id == pending_signal_id)
        .with_for_update()
    ).first()
    if held is None:
        raise NotFoundError(f"no signal {pending_signal_id} awaits approval at this node")
    if held.decision is not PendingSignalDecision.PENDING:
        raise PreconditionError(
            f"signal {pending_signal_id} was {held.decision.value} by {held.decided_by}; "
            "it cannot be decided again"
        )
    return held


def decide(
    session: Session,
    held: PendingSignal,
    decision: PendingSignalDecision,
    reviewer: str,
    reason: str,
    now: datetime,
    details: dict[str, str | int | bool | list[str] | None],
) -> None:
    held.decision = decision
    held.decided_by = reviewer
    held.decided_at = now
    held.decision_reason = reason
    session.add(held)
    audit.append(
        session,
        actor=f"operator:{reviewer}",
        action=f"signal.{decision.value}",
        subject_type="pending_signal",
        subject_id=held.pending_signal_id,
        details={"beneficiary_id": held.beneficiary_id, "entered_by": held.entered_by} | details,
        now=now,
    )


def page(
    session: Session, page_size: int, page_token: str, *, pending_only: bool
) -> tuple[list[PendingSignal], str]:
    """Held signals, oldest first (ids are UUIDv7)."""
    statement = select(PendingSignal)
    if pending_only:
        statement = statement.where(PendingSignal.decision == PendingSignalDecision.PENDING)
    return keyset_page(
        session,
        statement,
        key=col(PendingSignal.pending_signal_id),
        key_of=lambda row: row.pending_signal_id,
        page_size=page_size,
        page_token=page_token,
    )
