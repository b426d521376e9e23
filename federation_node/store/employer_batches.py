"""Employers' batch lists and their rows; the only code that writes `employer_batch` and
`employer_batch_row` (offices/employer_batch.py decides what a batch does)."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, select

from federation.errors import NotFoundError, PreconditionError
from federation_node.ids import new_id
from federation_node.store.db import count_of, keyset_page
from federation_node.store.models import EmployerBatch, EmployerBatchRow, EmployerBatchState


def add(
    session: Session,
    *,
    unit: str,
    file_name: str,
    file_sha256: str,
    uploaded_by: str,
    rows: list[tuple[int, str, datetime]],
    now: datetime,
) -> EmployerBatch:
    """A pending batch of `rows` (line, beneficiary id, observed at)."""
    batch = EmployerBatch(
        batch_id=new_id(),
        unit=unit,
        file_name=file_name,
        file_sha256=file_sha256,
        state=EmployerBatchState.PENDING,
        uploaded_by=uploaded_by,
        uploaded_at=now,
        reason="",
        issued=0,
        skipped=0,
    )
    session.add(batch)
    session.flush()
    for line, beneficiary_id, observed_at in rows:
        session.add(
            EmployerBatchRow(
                row_id=new_id(),
                batch_id=batch.batch_id,
                line=line,
                beneficiary_id=beneficiary_id,
                observed_at=observed_at,
                skipped_reason="",
            )
        )
    return batch


def pending(session: Session, batch_id: str) -> EmployerBatch:
    """The batch awaiting a decision, locked for the deciding transaction."""
    batch = session.exec(
        select(EmployerBatch).where(EmployerBatch.batch_id == batch_id).with_for_update()
    ).first()
    if batch is None:
        raise NotFoundError(f"no employer batch {batch_id} at this node")
    if batch.state is not EmployerBatchState.PENDING:
        raise PreconditionError(
            f"batch {batch_id} was {batch.state.value} by {batch.decided_by}; "
            "it cannot be decided again"
        )
    return batch


def get(session: Session, batch_id: str) -> EmployerBatch:
    batch = session.get(EmployerBatch, batch_id)
    if batch is None:
        raise NotFoundError(f"no employer batch {batch_id} at this node")
    return batch


def rows_page(
    session: Session, batch_id: str, page_size: int, page_token: str
) -> tuple[list[EmployerBatchRow], str]:
    """A page of the batch's rows in file order (row ids are UUIDv7, made in line order)."""
    return keyset_page(
        session,
        select(EmployerBatchRow).where(EmployerBatchRow.batch_id == batch_id),
        key=col(EmployerBatchRow.row_id),
        key_of=lambda row: row.row_id,
        page_size=page_size,
        page_token=page_token,
    )


def rows_of(session: Session, batch_id: str) -> list[EmployerBatchRow]:
    return list(
        session.exec(
            select(EmployerBatchRow)
            .where(EmployerBatchRow.batch_id == batch_id)
            .order_by(col(EmployerBatchRow.line), col(EmployerBatchRow.row_id))
        )
    )


def row_count(session: Session, batch_id: str) -> int:
    return count_of(session, select(EmployerBatchRow).where(EmployerBatchRow.batch_id == batch_id))


def decide(
    session: Session,
    batch: EmployerBatch,
    state: EmployerBatchState,
    reviewer: str,
    reason: str,
    now: datetime,
) -> None:
    batch.state = state
    batch.decided_by = reviewer
    batch.decided_at = now
    batch.reason = reason
    session.add(batch)


def page(
    session: Session, state: EmployerBatchState | None, page_size: int, page_token: str
) -> tuple[list[EmployerBatch], str]:
    """Batches oldest first (ids are UUIDv7), optionally of one state."""
    statement = select(EmployerBatch)
    if state is not None:
        statement = statement.where(EmployerBatch.state == state)
    return keyset_page(
        session,
        statement,
        key=col(EmployerBatch.batch_id),
        key_of=lambda row: row.batch_id,
        page_size=page_size,
        page_token=page_token,
    )
