"""Payment instructions for the bank: suspend, resume with back pay, terminate; and the months
closed to them.

One instruction per beneficiary, month and action (unique in the database), so whatever runs
twice, a cycle, a redelivered attestation or a second replica, writes it once. A month is
closed once its bank file was exported (`close_month`); which month an instruction may still go
into is the lifecycle's rule (offices/lifecycle.py, `open_month`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Column, String, bindparam, func, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from federation_node.ids import new_id
from federation_node.store import beneficiaries
from federation_node.store.db import count_of, keyset_page
from federation_node.store.models import (
    ID_LENGTH,
    Beneficiary,
    ClosedMonth,
    PaymentAction,
    PaymentInstruction,
    UtcDateTime,
)
from federation_node.store.staging import fill, staging_table


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


_SUSPENSIONS = staging_table(
    "cycle_suspension",
    Column("beneficiary_id", String(ID_LENGTH)),
    Column("instruction_id", String(ID_LENGTH)),
)


def suspend_many(
    session: Session, suspensions: Sequence[tuple[str, str]], month: str, now: datetime
) -> int:
    """`add` of a SUSPEND instruction for `month` for many people at once, (beneficiary id, new
    instruction id) each; an instruction already written for that month and action stays the
    one. Returns how many were written."""
    if not suspensions:
        return 0
    fill(session, _SUSPENSIONS, suspensions)
    written = session.execute(
        text(
            "INSERT INTO payment_instruction (instruction_id, beneficiary_id, action, "
            "effective_month, back_pay_fen, back_pay_months, overpayment_fen, created_at) "
            "SELECT s.instruction_id, s.beneficiary_id, :action, :month, 0, 0, 0, :now "
            "FROM cycle_suspension AS s WHERE true ON CONFLICT DO NOTHING"
        ).bindparams(
            bindparam("now", now, type_=UtcDateTime()),
            action=PaymentAction.SUSPEND.value,
            month=month,
        )
    )
    return int(written.rowcount)  # type: ignore[attr-defined]


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


def latest_termination_month(session: Session, beneficiary_id: str) -> str | None:
    """The month the person's latest termination stopped payment from, if any."""
    latest: str | None = session.exec(
        select(func.max(PaymentInstruction.effective_month)).where(
            PaymentInstruction.beneficiary_id == beneficiary_id,
            PaymentInstruction.action == PaymentAction.TERMINATE,
        )
    ).one()
    return latest


def for_beneficiary(session: Session, beneficiary_id: str) -> list[PaymentInstruction]:
    return list(
        session.exec(
            select(PaymentInstruction)
            .where(PaymentInstruction.beneficiary_id == beneficiary_id)
            .order_by(col(PaymentInstruction.effective_month), col(PaymentInstruction.action))
        )
    )
