"""Entitlements, payment instructions, reminders, amount changes and roll rows as the messages
the desk sees."""

from __future__ import annotations

from certfed.v1 import desk_pb2
from federation.timestamps import to_timestamp
from federation_node.offices.roll import RowOutcome, UpsertedRow
from federation_node.rules.entitlement import EntitlementState, ReminderKind
from federation_node.service.views import beneficiary_view
from federation_node.store.models import (
    AmountChange,
    AmountChangeState,
    Beneficiary,
    Entitlement,
    PaymentAction,
    PaymentInstruction,
)
from federation_node.store.reminders_store import WaitingReminder

ENTITLEMENT_STATES = {
    EntitlementState.ACTIVE: desk_pb2.ENTITLEMENT_STATE_ACTIVE,
    EntitlementState.DUE: desk_pb2.ENTITLEMENT_STATE_DUE,
    EntitlementState.WARNING: desk_pb2.ENTITLEMENT_STATE_WARNING,
    EntitlementState.SUSPENDED: desk_pb2.ENTITLEMENT_STATE_SUSPENDED,
    EntitlementState.TERMINATED: desk_pb2.ENTITLEMENT_STATE_TERMINATED,
}
STATE_FILTERS = {value: state for state, value in ENTITLEMENT_STATES.items()}
PAYMENT_ACTIONS = {
    PaymentAction.SUSPEND: desk_pb2.PAYMENT_ACTION_SUSPEND,
    PaymentAction.RESUME: desk_pb2.PAYMENT_ACTION_RESUME,
    PaymentAction.TERMINATE: desk_pb2.PAYMENT_ACTION_TERMINATE,
}
AMOUNT_CHANGE_STATES = {
    AmountChangeState.PROPOSED: desk_pb2.AMOUNT_CHANGE_STATUS_PROPOSED,
    AmountChangeState.APPROVED: desk_pb2.AMOUNT_CHANGE_STATUS_APPROVED,
    AmountChangeState.REJECTED: desk_pb2.AMOUNT_CHANGE_STATUS_REJECTED,
    AmountChangeState.SUPERSEDED: desk_pb2.AMOUNT_CHANGE_STATUS_SUPERSEDED,
}
AMOUNT_CHANGE_FILTERS = {value: state for state, value in AMOUNT_CHANGE_STATES.items()}
UPSERT_OUTCOMES = {
    RowOutcome.CREATED: desk_pb2.UPSERT_OUTCOME_CREATED,
    RowOutcome.UPDATED: desk_pb2.UPSERT_OUTCOME_UPDATED,
    RowOutcome.UNCHANGED: desk_pb2.UPSERT_OUTCOME_UNCHANGED,
}
REMINDER_KINDS = {
    ReminderKind.DUE: desk_pb2.REMINDER_KIND_DUE,
    ReminderKind.WARNING: desk_pb2.REMINDER_KIND_WARNING,
    ReminderKind.OVERDUE: desk_pb2.REMINDER_KIND_OVERDUE,
}


def entitlement_view(entitlement: Entitlement, beneficiary: Beneficiary) -> desk_pb2.Entitlement:
    view = desk_pb2.Entitlement(
        beneficiary=beneficiary_view(beneficiary),
        state=ENTITLEMENT_STATES[entitlement.state],
        state_since=to_timestamp(entitlement.state_since),
        monthly_amount_fen=entitlement.monthly_amount_fen,
        termination_pending_review=entitlement.termination_pending_review,
        overpayment_fen=entitlement.overpayment_fen,
    )
    if entitlement.termination_pending_review and entitlement.pending_effective_at is not None:
        view.pending_effective_at.CopyFrom(to_timestamp(entitlement.pending_effective_at))
    return view


def instruction_view(
    instruction: PaymentInstruction, beneficiary: Beneficiary
) -> desk_pb2.PaymentInstruction:
    return desk_pb2.PaymentInstruction(
        instruction_id=instruction.instruction_id,
        beneficiary_id=instruction.beneficiary_id,
        masked_identity_number=beneficiary.masked_identity_number,
        action=PAYMENT_ACTIONS[instruction.action],
        effective_month=instruction.effective_month,
        back_pay_fen=instruction.back_pay_fen,
        back_pay_months=instruction.back_pay_months,
        overpayment_fen=instruction.overpayment_fen,
    )


def reminder_view(reminder: WaitingReminder, phone: str) -> desk_pb2.Reminder:
    return desk_pb2.Reminder(
        reminder_id=reminder.reminder_id,
        beneficiary_id=reminder.beneficiary_id,
        kind=REMINDER_KINDS[reminder.kind],
        created_at=to_timestamp(reminder.created_at),
        phone=phone,
        valid_until=to_timestamp(reminder.expires_at),
    )


def amount_change_view(change: AmountChange) -> desk_pb2.AmountChange:
    view = desk_pb2.AmountChange(
        change_id=change.change_id,
        beneficiary_id=change.beneficiary_id,
        status=AMOUNT_CHANGE_STATES[change.state],
        previous_amount_fen=change.previous_amount_fen,
        proposed_amount_fen=change.proposed_amount_fen,
        reason=change.reason,
        proposed_by=change.proposed_by,
        proposed_at=to_timestamp(change.proposed_at),
        reviewed_by=change.reviewed_by or "",
        review_reason=change.review_reason or "",
    )
    if change.reviewed_at is not None:
        view.reviewed_at.CopyFrom(to_timestamp(change.reviewed_at))
    return view


def upsert_result_view(row: UpsertedRow) -> desk_pb2.UpsertResult:
    return desk_pb2.UpsertResult(
        outcome=UPSERT_OUTCOMES[row.outcome],
        beneficiary_id=row.beneficiary_id,
        changed_fields=list(row.changed_fields),
        amount_change_id=row.amount_change_id,
    )
