"""Entitlements, payment instructions and reminders as the messages the desk sees."""

from __future__ import annotations

from certfed.v1 import desk_pb2
from federation.timestamps import to_timestamp
from federation_node.rules.entitlement import EntitlementState, ReminderKind
from federation_node.service.views import beneficiary_view
from federation_node.store.models import Beneficiary, Entitlement, PaymentAction, PaymentInstruction
from federation_node.store.models import Reminder as StoredReminder

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
REMINDER_KINDS = {
    ReminderKind.DUE: desk_pb2.REMINDER_KIND_DUE,
    ReminderKind.WARNING: desk_pb2.REMINDER_KIND_WARNING,
    ReminderKind.OVERDUE: desk_pb2.REMINDER_KIND_OVERDUE,
}


def entitlement_view(entitlement: Entitlement, beneficiary: Beneficiary) -> desk_pb2.Entitlement:
    return desk_pb2.Entitlement(
        beneficiary=beneficiary_view(beneficiary),
        state=ENTITLEMENT_STATES[entitlement.state],
        state_since=to_timestamp(entitlement.state_since),
        monthly_amount_fen=entitlement.monthly_amount_fen,
        termination_pending_review=entitlement.termination_pending_review,
        overpayment_fen=entitlement.overpayment_fen,
    )


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


def reminder_view(reminder: StoredReminder, phone: str) -> desk_pb2.Reminder:
    return desk_pb2.Reminder(
        reminder_id=reminder.reminder_id,
        beneficiary_id=reminder.beneficiary_id,
        kind=REMINDER_KINDS[reminder.kind],
        created_at=to_timestamp(reminder.created_at),
        phone=phone,
        valid_until=to_timestamp(reminder.expires_at),
    )
