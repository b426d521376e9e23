"""Release from prison and reappearance after a declaration of missing, at the paying office:
the ended entitlement restored by the region's rule (rules/restoration.py).

The person returning is certified like anyone else: seen alive at this office's counter (a clerk
records it with the release certificate or the court's revocation as evidence, another reviewer
approves) or by a peer, whose certification this office's reviewer applies (a peer's alive
attestation about such a person is held, attestation_review.py, `restores-entitlement`). Applying
the alive attestation (`PayingOffice.apply_attestation`) calls `restore` first: the beneficiary
is active again, payment resumes from the month the policy gives, with the back pay it gives,
and the audit trail records it; then validity moves as for any certification. An amount to
recover from the months paid after the imprisonment or disappearance stays to recover.
"""

from __future__ import annotations

from datetime import datetime

import structlog
from sqlmodel import Session

from federation_node.offices import lifecycle
from federation_node.rules.entitlement import (
    EntitlementState,
    month_label,
    month_start,
    parse_month,
)
from federation_node.rules.policy import Policy
from federation_node.rules.restoration import Return, restoration
from federation_node.store import audit, beneficiaries, payments_store
from federation_node.store.models import (
    Beneficiary,
    BeneficiaryState,
    Entitlement,
    PaymentAction,
)

log = structlog.get_logger("certfed.lifecycle")

# The ends of entitlement a person comes back from, and what their coming back is called.
RETURNS: dict[BeneficiaryState, Return] = {
    BeneficiaryState.IMPRISONED: Return.RELEASE,
    BeneficiaryState.DECLARED_MISSING: Return.REAPPEARANCE,
}


def restore(
    session: Session,
    policy: Policy,
    beneficiary: Beneficiary,
    entitlement: Entitlement,
    returned_at: datetime,
    now: datetime,
) -> bool:
    """Restore an entitlement ended by imprisonment or disappearance, in the caller's
    transaction, when the person was seen alive after it ended; whether it was restored."""
    kind = RETURNS.get(beneficiary.status)
    if kind is None or entitlement.state is not EntitlementState.TERMINATED:
        return False
    ended_at = beneficiary.status_effective_at
    if ended_at is not None and returned_at <= ended_at:
        return False
    stopped = entitlement.withheld_from_month or payments_store.latest_termination_month(
        session, beneficiary.beneficiary_id
    )
    restored = restoration(
        kind,
        returned_at.date(),
        parse_month(stopped) if stopped is not None else month_start(now.date()),
        entitlement.monthly_amount_fen,
        policy,
        not_before=lifecycle.first_open(session),
    )
    payments_store.add(
        session,
        beneficiary_id=beneficiary.beneficiary_id,
        action=PaymentAction.RESUME,
        effective_month=month_label(restored.effective_month),
        back_pay_fen=restored.back_pay_fen,
        back_pay_months=restored.back_pay_months,
        now=now,
    )
    entitlement.withheld_from_month = None
    entitlement.state = EntitlementState.ACTIVE
    entitlement.state_since = returned_at
    lifecycle.entitlement_updated(session, entitlement, now)
    beneficiaries.set_status(session, beneficiary, BeneficiaryState.ACTIVE, None, now)
    audit.append(
        session,
        actor="policy:restoration",
        action="entitlement.restored",
        subject_type="beneficiary",
        subject_id=beneficiary.beneficiary_id,
        details={
            "return": kind.value,
            "effective_month": month_label(restored.effective_month),
            "back_pay_months": restored.back_pay_months,
            "back_pay_fen": restored.back_pay_fen,
        },
        now=now,
    )
    log.info("entitlement.restored", beneficiary_id=beneficiary.beneficiary_id, kind=kind.value)
    return True
