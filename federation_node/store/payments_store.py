"""Payment instructions for the bank: suspend, resume with back pay, terminate; and the months
closed to them.

One instruction per beneficiary, month and action (unique in the database), so whatever runs
twice, a cycle, a redelivered attestation or a second replica, writes it once. A month is
closed once its bank file was exported (`close_month`); which month an instruction may still go
into is the lifecycle's rule (offices/lifecycle.py, `open_month`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from federation_node.ids import new_id
from federation_node.store import beneficiaries
from federation_node.store.db import count_of, keyset_page
from federation_node.store.models import (
    Beneficiary,
    ClosedMonth,
    PaymentAction,
    PaymentInstruction,
)


def add(
    session: Session,
    *,
    beneficiary_id: str,
    action: PaymentAction,
    effective_month: str,
    now: datetime,
    back_pay_fen: int = 0,
    back_pay_months: int = 0,
    overpayment_fen: int = 0,
) -> PaymentInstruction:
    """Write the instruction, or return the one already written for that month and action."""
    existing = session.exec(
        select(PaymentInstruction).where(
            PaymentInstruction.beneficiary_id == beneficiary_id,
            PaymentInstruction.effective_month == effective_month,
            PaymentInstruction.action == action,
        )
    ).first()
    if existing is not None:
        return existing
    instruction = PaymentInstruction(
        instruction_id=new_id(),
        beneficiary_id=beneficiary_id,
        action=action,
        effective_month=effective_month,
        back_pay_fen=back_pay_fen,
        back_pay_months=back_pay_months,
        overpayment_fen=overpayment_fen,
        created_at=now,
    )
    session.add(instruction)
    session.flush()
    return instruction


def for_month(session: Session, month: str) -> list[tuple[PaymentInstruction, Beneficiary]]:
    """The month's instructions in the order they were written, with their beneficiaries."""
    statement = (
        select(PaymentInstruction, Beneficiary)
        .join(
            Beneficiary,
            col(Beneficiary.beneficiary_id) == col(PaymentInstruction.beneficiary_id),
        )
        .where(PaymentInstruction.effective_month == month)
        .order_by(col(PaymentInstruction.instruction_id))
    )
    return [(instruction, person) for instruction, person in session.exec(statement)]


def _of_month(month: str) -> SelectOfScalar[PaymentInstruction]:
    return select(PaymentInstruction).where(PaymentInstruction.effective_month == month)


def count_for_month(session: Session, month: str) -> int:
    return count_of(session, _of_month(month))


def page_for_month(
    session: Session, month: str, page_size: int, page_token: str
) -> tuple[list[tuple[PaymentInstruction, Beneficiary]], str]:
    """One page of the month's instructions in the order they were written."""
    rows, token = keyset_page(
        session,
        _of_month(month),
        key=col(PaymentInstruction.instruction_id),
        key_of=lambda row: row.instruction_id,
        page_size=page_size,
        page_token=page_token,
    )
    people = beneficiaries.by_ids(session, (row.beneficiary_id for row in rows))
    return [(row, people[row.beneficiary_id]) for row in rows], token


def close_month(session: Session, month: str, actor: str, now: datetime) -> bool:
    """Close `month` ("YYYY-MM"); returns False when it was closed already."""
    if session.get(ClosedMonth, month) is not None:
        return False
    try:
        with session.begin_nested():
            session.add(ClosedMonth(month=month, closed_by=actor, closed_at=now))
    except IntegrityError:
        return False
    return True


def latest_closed_month(session: Session) -> str | None:
    """The latest month closed, "YYYY-MM"; None when none is."""
    latest: str | None = session.exec(select(func.max(ClosedMonth.month))).one()
    return latest


def for_beneficiary(session: Session, beneficiary_id: str) -> list[PaymentInstruction]:
    return list(
        session.exec(
            select(PaymentInstruction)
            .where(PaymentInstruction.beneficiary_id == beneficiary_id)
            .order_by(col(PaymentInstruction.effective_month), col(PaymentInstruction.action))
        )
    )
