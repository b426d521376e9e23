"""Payment instructions for the bank: suspend, resume with back pay, terminate.

One instruction per beneficiary, month and action (unique in the database), so whatever runs
twice, a cycle, a redelivered attestation or a second replica, writes it once.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, select

from federation_node.ids import new_id
from federation_node.store.models import Beneficiary, PaymentAction, PaymentInstruction


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


def for_beneficiary(session: Session, beneficiary_id: str) -> list[PaymentInstruction]:
    return list(
        session.exec(
            select(PaymentInstruction)
            .where(PaymentInstruction.beneficiary_id == beneficiary_id)
            .order_by(col(PaymentInstruction.effective_month), col(PaymentInstruction.action))
        )
    )
