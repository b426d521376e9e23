"""Corrections: an attestation superseded by a correcting one, and what the paying office
re-applies.

A correction is a new attestation of the same issuer naming the one it supersedes
(`corrects_attestation_id`), recorded by a clerk and approved by another reviewer like any
certification (certifying.py), signed, logged and delivered like any attestation (issuing.py).
The superseded attestation stays as it was signed, in the store and in the log: nothing is edited
in place, and the audit trail shows both. Each attestation is corrected at most once; a correction
that is itself wrong is corrected in turn.

At the paying office a correction takes the one apply path (`PayingOffice.apply_attestation`):
a peer's correction is held for this office's reviewer (attestation_review.py, `correction`),
one issued here is applied on approval. Applying it first undoes what the superseded attestation
did, then applies the correction's own outcome:

* a death, imprisonment or disappearance it reported is reversed when the entitlement still
  shows it (the termination awaiting review, or the ended entitlement, with that status and
  date): the termination proposal is withdrawn, or the beneficiary is active again, the amount to
  recover is cleared, and payment resumes with back pay for every month withheld since (at once
  when validity still runs; with the certification that follows when it has lapsed);
* an alive certification is not taken back: validity never moves backwards, and a negative
  correction ends entitlement through the usual review anyway.
"""

from __future__ import annotations

from datetime import datetime

import structlog
from sqlmodel import Session

from certfed.v1 import attestation_pb2
from federation.errors import AlreadyExistsError, PreconditionError
from federation_node.offices import lifecycle
from federation_node.rules.entitlement import EntitlementState, phases
from federation_node.rules.policy import Policy
from federation_node.store import (
    attestations_store,
    audit,
    beneficiaries,
    payments_store,
    recoveries,
)
from federation_node.store.models import (
    Attestation,
    AttestationDirection,
    Beneficiary,
    BeneficiaryState,
    Entitlement,
)

log = structlog.get_logger("certfed.lifecycle")


def require_not_corrected(session: Session, corrected: Attestation, *, correction_id: str) -> None:
    """Refuse a second correction of the same attestation (ALREADY_EXISTS)."""
    later = [
        one
        for one in attestations_store.corrections_of(
            session, corrected.attestation_id, corrected.issuing_node_id
        )
        if one.attestation_id != correction_id
    ]
    if later:
        raise AlreadyExistsError(
            f"attestation {corrected.attestation_id} was corrected already by "
            f"{later[0].attestation_id}; correct that one instead"
        )


def correctable_here(session: Session, node_id: str, attestation_id: str) -> Attestation:
    """The attestation this node issued that a clerk's correction names: issued here and not
    corrected yet."""
    corrected = attestations_store.get(session, attestation_id, node_id)
    if corrected.direction is not AttestationDirection.ISSUED:
        raise PreconditionError(
            f"attestation {attestation_id} was not issued by this node; only its issuer corrects it"
        )
    require_not_corrected(session, corrected, correction_id="")
    return corrected


def corrected_by(
    session: Session, correction: attestation_pb2.CertificationAttestation, beneficiary_id: str
) -> Attestation:
    """At the paying office: the attestation `correction` supersedes, which this office holds
    from the same issuer about the same person (FAILED_PRECONDITION, retried, while it has not
    arrived yet)."""
    corrected = session.get(
        Attestation, (correction.corrects_attestation_id, correction.issuing_node_id)
    )
    if corrected is None or corrected.beneficiary_id != beneficiary_id:
        raise PreconditionError(
            f"attestation {correction.attestation_id} corrects attestation "
            f"{correction.corrects_attestation_id}, which this office does not hold from node "
            f"{correction.issuing_node_id} about the same person"
        )
    require_not_corrected(session, corrected, correction_id=correction.attestation_id)
    return corrected


def reverse(
    session: Session,
    policy: Policy,
    beneficiary: Beneficiary,
    entitlement: Entitlement,
    corrected: Attestation,
    status: BeneficiaryState | None,
    correction_id: str,
    now: datetime,
) -> bool:
    """Undo the end of entitlement the corrected attestation reported (`status`, None for an
    alive one), in the caller's transaction; whether anything changed (module docstring)."""
    if status is None:
        return False
    proposed = (
        entitlement.termination_pending_review
        and entitlement.pending_status is status
        and entitlement.pending_effective_at == corrected.observed_at
    )
    ended = (
        entitlement.state is EntitlementState.TERMINATED
        and beneficiary.status is status
        and beneficiary.status_effective_at == corrected.observed_at
    )
    if not (proposed or ended):
        return False
    if entitlement.withheld_from_month is None:
        entitlement.withheld_from_month = payments_store.latest_termination_month(
            session, beneficiary.beneficiary_id
        )
    entitlement.termination_pending_review = False
    entitlement.pending_status = None
    entitlement.pending_effective_at = None
    overpayment_cleared = entitlement.overpayment_fen
    entitlement.overpayment_fen = 0
    if beneficiary.status is not BeneficiaryState.ACTIVE:
        beneficiaries.set_status(session, beneficiary, BeneficiaryState.ACTIVE, None, now)
    phase = phases(lifecycle.expiry_of(beneficiary), policy).on(now)
    if phase is not EntitlementState.SUSPENDED:
        lifecycle.resume(session, policy, entitlement, now.date(), now)
    entitlement.state = phase
    entitlement.state_since = now
    lifecycle.entitlement_updated(session, entitlement, now)
    audit.append(
        session,
        actor=f"node:{corrected.issuing_node_id}",
        action="entitlement.correction_reversed",
        subject_type="beneficiary",
        subject_id=beneficiary.beneficiary_id,
        details={
            "corrected_attestation_id": corrected.attestation_id,
            "correcting_attestation_id": correction_id,
            "reversed": status.value,
            "was": "ended" if ended else "proposed",
            "overpayment_cleared_fen": overpayment_cleared,
            # Recovered already beyond what is still due: to be refunded (offices/recovery.py).
            "refund_due_fen": max(0, -recoveries.debts(session, [entitlement])[0].balance_fen),
            "state": phase.value,
        },
        now=now,
    )
    log.info(
        "entitlement.correction_reversed",
        beneficiary_id=beneficiary.beneficiary_id,
        corrected_attestation_id=corrected.attestation_id,
    )
    return True
