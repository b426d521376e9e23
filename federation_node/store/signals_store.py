"""Data signals as recorded: one row per (source, source_record_id), whatever came of it.

The pair is unique in the database, so a feed imported twice, or by two replicas at once,
records each signal once; `known` lets a batch find the ones it already holds in one query.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlmodel import Session, col, select

from federation_node.ids import new_id
from federation_node.store import tally
from federation_node.store.models import DataSignal, SignalOutcome

SignalKey = tuple[str, str]


def known(session: Session, keys: Sequence[SignalKey]) -> dict[SignalKey, DataSignal]:
    """The signals among `keys` recorded before."""
    found: dict[SignalKey, DataSignal] = {}
    wanted = set(keys)
    sources = sorted({source for source, _ in wanted})
    record_ids = sorted({record_id for _, record_id in wanted})
    for start in range(0, len(record_ids), 500):
        rows = session.exec(
            select(DataSignal).where(
                col(DataSignal.source).in_(sources),
                col(DataSignal.source_record_id).in_(record_ids[start : start + 500]),
            )
        )
        for row in rows:
            key = (row.source, row.source_record_id)
            if key in wanted:
                found[key] = row
    return found


def add(
    session: Session,
    *,
    source: str,
    source_record_id: str,
    kind: int,
    beneficiary_id: str | None,
    observed_at: datetime,
    outcome: SignalOutcome,
    attestation_id: str | None,
    recorded_by: str,
    now: datetime,
) -> DataSignal:
    signal = DataSignal(
        signal_id=new_id(),
        source=source,
        source_record_id=source_record_id,
        kind=kind,
        beneficiary_id=beneficiary_id,
        observed_at=observed_at,
        outcome=outcome,
        attestation_id=attestation_id,
        recorded_by=recorded_by,
        recorded_at=now,
    )
    session.add(signal)
    tally.add(session, tally.FEED_ROWS, {SignalOutcome(outcome).value: 1})
    return signal


def negative_recorders(session: Session, beneficiary_id: str, kinds: Sequence[int]) -> set[str]:
    """Operators who recorded an applied negative signal for the beneficiary."""
    rows = session.exec(
        select(DataSignal.recorded_by).where(
            DataSignal.beneficiary_id == beneficiary_id,
            col(DataSignal.kind).in_(list(kinds)),
            DataSignal.outcome == SignalOutcome.APPLIED,
        )
    )
    return set(rows)
