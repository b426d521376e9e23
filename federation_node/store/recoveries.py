"""Overpayment recovery in the store: the debt lines (fraud findings, recoveries) and each
person's balance with the overpayment their entitlement carries. The only writer of debt_entry."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import case, func, or_
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col, select

from federation_node.store import beneficiaries
from federation_node.store.db import keyset_page
from federation_node.store.models import DebtEntry, DebtEntryKind, Entitlement


@dataclass(frozen=True)
class Debt:
    """What one person owes, in fen; a negative balance is owed back to them."""

    beneficiary_id: str
    masked_identity_number: str
    overpayment_fen: int
    fraud_fen: int
    recovered_fen: int

    @property
    def due_fen(self) -> int:
        return self.overpayment_fen + self.fraud_fen

    @property
    def balance_fen(self) -> int:
        return self.due_fen - self.recovered_fen


def add(session: Session, entry: DebtEntry) -> None:
    session.add(entry)


def entries(session: Session, beneficiary_id: str) -> list[DebtEntry]:
    """A person's lines, oldest first."""
    statement = (
        select(DebtEntry)
        .where(DebtEntry.beneficiary_id == beneficiary_id)
        .order_by(col(DebtEntry.recorded_at), col(DebtEntry.entry_id))
    )
    return list(session.exec(statement))


def debts(session: Session, people: Sequence[Entitlement]) -> list[Debt]:
    """The debt of each of `people` (entitlements), in their order."""
    ids = [entitlement.beneficiary_id for entitlement in people]
    sums: dict[tuple[str, DebtEntryKind], int] = {}
    if ids:
        statement = (
            select(
                col(DebtEntry.beneficiary_id),
                col(DebtEntry.kind),
                func.sum(col(DebtEntry.amount_fen) + col(DebtEntry.fine_fen)),
            )
            .where(col(DebtEntry.beneficiary_id).in_(ids))
            .group_by(col(DebtEntry.beneficiary_id), col(DebtEntry.kind))
        )
        sums = {(person, kind): int(total) for person, kind, total in session.exec(statement)}
    masked = beneficiaries.by_ids(session, ids)
    return [
        Debt(
            beneficiary_id=entitlement.beneficiary_id,
            masked_identity_number=masked[entitlement.beneficiary_id].masked_identity_number,
            overpayment_fen=entitlement.overpayment_fen,
            fraud_fen=sums.get((entitlement.beneficiary_id, DebtEntryKind.FRAUD), 0),
            recovered_fen=sums.get((entitlement.beneficiary_id, DebtEntryKind.RECOVERY), 0),
        )
        for entitlement in people
    ]


def page(session: Session, page_size: int, page_token: str) -> tuple[list[Debt], str]:
    """Everyone with an overpayment or a debt line, in beneficiary-id order."""
    with_lines = select(DebtEntry.beneficiary_id).distinct()
    statement = select(Entitlement).where(
        or_(
            col(Entitlement.overpayment_fen) > 0,
            col(Entitlement.beneficiary_id).in_(with_lines),
        )
    )
    rows, token = keyset_page(
        session,
        statement,
        key=col(Entitlement.beneficiary_id),
        key_of=lambda row: row.beneficiary_id,
        page_size=page_size,
        page_token=page_token,
    )
    return debts(session, rows), token


def balance_of_entitlement() -> ColumnElement[int]:
    """The balance as SQL, for a statement over `Entitlement`: its overpayment, plus fraud lines
    with their fines, less recoveries."""
    signed = case(
        (
            col(DebtEntry.kind) == DebtEntryKind.FRAUD,
            col(DebtEntry.amount_fen) + col(DebtEntry.fine_fen),
        ),
        else_=-col(DebtEntry.amount_fen),
    )
    lines = (
        select(func.coalesce(func.sum(signed), 0))
        .where(col(DebtEntry.beneficiary_id) == col(Entitlement.beneficiary_id))
        .scalar_subquery()
    )
    return col(Entitlement.overpayment_fen) + lines
