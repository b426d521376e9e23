"""Overpayment recovery: what each person owes the office, and what was recovered.

A person owes the overpayment their entitlement carries (pension paid for months after a death,
imprisonment or disappearance; lifecycle.terminate counts it, and a correction that reverses
the end clears it, corrections.reverse), plus every fraud finding: the amount obtained and the
policy's fine on it (`recovery.fraud_fine_multiple`). A reviewer records a fraud finding, a clerk
a recovery (amount, date received, method, reference); each is a line that is never edited, and
each is audited with its amounts, never a name or an identity number.

A recovery is at least 1 fen and at most the balance still due, decided under the entitlement's
row lock so two clerks recording at once cannot overshoot it. The balance goes negative only when
a correction clears an overpayment that was partly recovered already: the office then owes that
much back, and the debt list shows it.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from federation.errors import InvalidInputError, PreconditionError
from federation.roles import PAYING_ROLE_NAMES
from federation_node.ids import new_id
from federation_node.offices.context import Actor, NodeContext
from federation_node.rules.recovery import MAX_AMOUNT_FEN, fraud_fine, recoverable
from federation_node.rules.validation import (
    EARLIEST_RECORD_DATE,
    page_size,
    require_id,
    require_past,
    require_text,
)
from federation_node.store import audit, entitlements_store, recoveries
from federation_node.store.db import session_scope
from federation_node.store.models import DebtEntry, DebtEntryKind, RecoveryMethod
from federation_node.store.recoveries import Debt

# The longest reference kept (a bank's, receipt's or case file's).
MAX_REFERENCE_LENGTH = 64


class Recoveries:
    """The paying office's debts: list, read, record a recovery, record a fraud finding."""

    def __init__(self, context: NodeContext) -> None:
        self._context = context

    def list_debts(self, requested_size: int, page_token: str) -> tuple[list[Debt], str]:
        size = page_size(requested_size, self._context.config.limits)
        with self._context.session() as session:
            return recoveries.page(session, size, page_token)

    def debt(self, beneficiary_id: str) -> tuple[Debt, list[DebtEntry]]:
        require_id(beneficiary_id, "beneficiary_id")
        with self._context.session() as session:
            entitlement = entitlements_store.get(session, beneficiary_id)
            [debt] = recoveries.debts(session, [entitlement])
            return debt, recoveries.entries(session, beneficiary_id)

    def record_recovery(
        self,
        actor: Actor,
        beneficiary_id: str,
        amount_fen: int,
        received_at: datetime | None,
        method: RecoveryMethod,
        reference: str,
    ) -> tuple[DebtEntry, Debt]:
        now = self._context.now()
        self._checked(beneficiary_id, amount_fen, "amount_fen", received_at, "received_at", now)
        self._checked_reference(reference)
        assert received_at is not None
        with session_scope(self._context.engine) as session:
            before = self._locked_debt(session, beneficiary_id)
            if not recoverable(amount_fen, before.balance_fen):
                raise PreconditionError(
                    f"a recovery of {amount_fen} fen exceeds the {max(0, before.balance_fen)} fen "
                    f"beneficiary {beneficiary_id} still owes; record at most that much"
                )
            entry = self._add(
                session,
                actor,
                beneficiary_id,
                DebtEntryKind.RECOVERY,
                amount_fen,
                0,
                method,
                received_at,
                reference,
                now,
            )
            after = recoveries.debts(session, [entitlements_store.get(session, beneficiary_id)])[0]
            audit.append(
                session,
                actor=actor.label,
                action="debt.recovery_recorded",
                subject_type="beneficiary",
                subject_id=beneficiary_id,
                details={
                    "entry_id": entry.entry_id,
                    "amount_fen": amount_fen,
                    "method": method.value,
                    "balance_fen": after.balance_fen,
                },
                now=now,
            )
        return entry, after

    def record_fraud(
        self,
        actor: Actor,
        beneficiary_id: str,
        obtained_fen: int,
        found_at: datetime | None,
        reference: str,
    ) -> tuple[DebtEntry, Debt]:
        now = self._context.now()
        self._checked(beneficiary_id, obtained_fen, "obtained_fen", found_at, "found_at", now)
        self._checked_reference(reference)
        assert found_at is not None
        fine = fraud_fine(obtained_fen, self._context.policy.fraud_fine_multiple)
        with session_scope(self._context.engine) as session:
            self._locked_debt(session, beneficiary_id)
            entry = self._add(
                session,
                actor,
                beneficiary_id,
                DebtEntryKind.FRAUD,
                obtained_fen,
                fine,
                None,
                found_at,
                reference,
                now,
            )
            after = recoveries.debts(session, [entitlements_store.get(session, beneficiary_id)])[0]
            audit.append(
                session,
                actor=actor.label,
                action="debt.fraud_recorded",
                subject_type="beneficiary",
                subject_id=beneficiary_id,
                details={
                    "entry_id": entry.entry_id,
                    "obtained_fen": obtained_fen,
                    "fine_fen": fine,
                    "fine_multiple": self._context.policy.fraud_fine_multiple,
                    "balance_fen": after.balance_fen,
                },
                now=now,
            )
        return entry, after

    def _checked(
        self,
        beneficiary_id: str,
        amount_fen: int,
        amount_field: str,
        when: datetime | None,
        when_field: str,
        now: datetime,
    ) -> None:
        self._context.require_role(PAYING_ROLE_NAMES, "pay pensions")
        require_id(beneficiary_id, "beneficiary_id")
        if not 1 <= amount_fen <= MAX_AMOUNT_FEN:
            raise InvalidInputError(
                amount_field, f"must be between 1 and {MAX_AMOUNT_FEN} fen (an amount in fen)"
            )
        if when is None:
            raise InvalidInputError(when_field, "is required")
        if when < EARLIEST_RECORD_DATE:
            raise InvalidInputError(when_field, f"is before {EARLIEST_RECORD_DATE:%Y-%m-%d}")
        require_past(when, when_field, now, self._context.config.limits)

    def _checked_reference(self, reference: str) -> None:
        require_text(reference, "reference", self._context.config.limits, required=True)
        if len(reference) > MAX_REFERENCE_LENGTH:
            raise InvalidInputError(
                "reference", f"is longer than {MAX_REFERENCE_LENGTH} characters"
            )

    @staticmethod
    def _locked_debt(session: Session, beneficiary_id: str) -> Debt:
        entitlement = entitlements_store.get(session, beneficiary_id, for_update=True)
        return recoveries.debts(session, [entitlement])[0]

    @staticmethod
    def _add(
        session: Session,
        actor: Actor,
        beneficiary_id: str,
        kind: DebtEntryKind,
        amount_fen: int,
        fine_fen: int,
        method: RecoveryMethod | None,
        occurred_at: datetime,
        reference: str,
        now: datetime,
    ) -> DebtEntry:
        entry = DebtEntry(
            entry_id=new_id(),
            beneficiary_id=beneficiary_id,
            kind=kind,
            amount_fen=amount_fen,
            fine_fen=fine_fen,
            method=method,
            occurred_at=occurred_at,
            reference=reference.strip(),
            recorded_by=actor.label,
            recorded_at=now,
        )
        recoveries.add(session, entry)
        session.flush()
        return entry
