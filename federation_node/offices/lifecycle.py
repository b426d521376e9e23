"""The entitlement lifecycle of the paying office: the transitions an entitlement goes through
(payment withheld and resumed, certified, terminated) and the review of a proposed termination.

The rules are federation_node/rules/entitlement.py's pure functions with the region's Policy; this
module applies them to the store inside the caller's transaction, writing the entitlement, the
payment instruction and the audit record together. The operations that cause transitions use
them: a received attestation (paying_office.py), a data signal (data_signals.py), the daily cycle
(daily_cycle.py) and a reviewer's decision (`Lifecycle.review_termination`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

from sqlmodel import Session

from certfed.v1 import attestation_pb2, desk_pb2
from federation.errors import InvalidInputError, PermissionDeniedError, PreconditionError
from federation_node.ids import new_ids
from federation_node.offices import attestation_review
from federation_node.offices.context import Actor, NodeContext
from federation_node.offices.issuing import Issuer
from federation_node.offices.life_events import LifeEvents, OtherOffices, announced_to
from federation_node.rules.entitlement import (
    EntitlementState,
    Overpayment,
    first_open_month,
    month_label,
    month_start,
    overpayment,
    parse_month,
    phases,
    reported_late,
    resumption,
)
from federation_node.rules.policy import Policy
from federation_node.rules.validation import require_id, require_text
from federation_node.store import (
    audit,
    beneficiaries,
    cycles_store,
    entitlements_store,
    payments_store,
    signals_store,
)
from federation_node.store.db import session_scope
from federation_node.store.models import (
    Beneficiary,
    BeneficiaryState,
    Entitlement,
    PaymentAction,
)

# Negative data-signal kinds and the status a confirmed termination gives the beneficiary.
NEGATIVE_STATUSES: dict[int, BeneficiaryState] = {
    desk_pb2.SIGNAL_KIND_DEATH_REGISTRATION: BeneficiaryState.DECEASED,
    desk_pb2.SIGNAL_KIND_CREMATION: BeneficiaryState.DECEASED,
    desk_pb2.SIGNAL_KIND_COURT_DECLARATION_OF_DEATH: BeneficiaryState.DECEASED,
    desk_pb2.SIGNAL_KIND_COURT_DECLARATION_MISSING: BeneficiaryState.DECLARED_MISSING,
    desk_pb2.SIGNAL_KIND_CRIMINAL_SENTENCE: BeneficiaryState.IMPRISONED,
}


def expiry_of(beneficiary: Beneficiary) -> datetime:
    """The end of validity; a beneficiary never certified is treated as expiring on the day
    they were registered (docs/policy.md)."""
    return beneficiary.valid_until or beneficiary.created_at


def first_open(session: Session) -> date | None:
    """The first month whose payment instructions may still change (rules.first_open_month)."""
    closed = payments_store.latest_closed_month(session)
    return first_open_month(
        cycles_store.latest_day(session), parse_month(closed) if closed is not None else None
    )


def open_month(session: Session, month: date) -> date:
    """`month` while it is open, else the first open month: a closed month is never rewritten."""
    earliest = first_open(session)
    return month if earliest is None else max(month_start(month), earliest)


# Transitions, inside the caller's transaction.


def withhold(session: Session, entitlement: Entitlement, month: date, now: datetime) -> bool:
    """Suspend payment from `month` (or the first open month, if `month` is closed) unless a
    suspension is already in effect."""
    if entitlement.withheld_from_month is not None:
        return False
    month = open_month(session, month)
    payments_store.add(
        session,
        beneficiary_id=entitlement.beneficiary_id,
        action=PaymentAction.SUSPEND,
        effective_month=month_label(month),
        now=now,
    )
    entitlement.withheld_from_month = month_label(month)
    return True


def advance_many(
    session: Session, moves: Sequence[entitlements_store.Move], month: date, now: datetime
) -> list[tuple[str, EntitlementState]]:
    """The daily cycle's moves in one statement each; a move to suspended withholds payment as
    `withhold` does (from `month`, or the first open month), with one instruction each where no
    suspension was in effect. Returns (id, new state) of the entitlements moved."""
    if not moves:
        return []
    label = month_label(open_month(session, month))
    moved = entitlements_store.advance_many(session, moves, label, now)
    unwithheld = {m.beneficiary_id for m in moves if m.withheld_before is None}
    suspended = [
        beneficiary_id
        for beneficiary_id, state in moved
        if state is EntitlementState.SUSPENDED and beneficiary_id in unwithheld
    ]
    payments_store.suspend_many(
        session, list(zip(suspended, new_ids(len(suspended)), strict=True)), label, now
    )
    return moved


def resume(
    session: Session, policy: Policy, entitlement: Entitlement, certified_on: date, now: datetime
) -> None:
    """End a suspension: payment resumes with back pay for the withheld months, at the
    earliest in the first open month."""
    if entitlement.withheld_from_month is None:
        return
    resumed = resumption(
        parse_month(entitlement.withheld_from_month),
        certified_on,
        entitlement.monthly_amount_fen,
        policy,
        not_before=first_open(session),
    )
    payments_store.add(
        session,
        beneficiary_id=entitlement.beneficiary_id,
        action=PaymentAction.RESUME,
        effective_month=month_label(resumed.effective_month),
        back_pay_fen=resumed.back_pay_fen,
        back_pay_months=resumed.back_pay_months,
        now=now,
    )
    entitlement.withheld_from_month = None


def certified(
    session: Session, policy: Policy, entitlement: Entitlement, observed_at: datetime, now: datetime
) -> None:
    """An alive certification moved validity forward: active again, payment resumed if it was
    suspended. Nothing changes for an ended entitlement or one whose termination is in review."""
    if entitlement.state is EntitlementState.TERMINATED or entitlement.termination_pending_review:
        return
    resume(session, policy, entitlement, observed_at.date(), now)
    entitlement.state = EntitlementState.ACTIVE
    entitlement.state_since = observed_at
    entitlement_updated(session, entitlement, now)


def terminate(
    session: Session,
    beneficiary: Beneficiary,
    entitlement: Entitlement,
    status: BeneficiaryState,
    effective_at: datetime,
    now: datetime,
) -> Overpayment:
    """End entitlement at `effective_at`: what was paid for later months is to be recovered."""
    if entitlement.state is EntitlementState.TERMINATED:
        return Overpayment(0, 0)
    month = open_month(session, month_start(now.date()))
    stopped_from = (
        parse_month(entitlement.withheld_from_month)
        if entitlement.withheld_from_month is not None
        else month
    )
    owed = overpayment(effective_at.date(), stopped_from, entitlement.monthly_amount_fen)
    payments_store.add(
        session,
        beneficiary_id=entitlement.beneficiary_id,
        action=PaymentAction.TERMINATE,
        effective_month=month_label(month),
        overpayment_fen=owed.amount_fen,
        now=now,
    )
    entitlement.state = EntitlementState.TERMINATED
    entitlement.state_since = effective_at
    entitlement.termination_pending_review = False
    entitlement.pending_status = None
    entitlement.pending_effective_at = None
    entitlement.overpayment_fen = owed.amount_fen
    entitlement_updated(session, entitlement, now)
    beneficiaries.set_status(session, beneficiary, status, effective_at, now)
    return owed


def entitlement_updated(session: Session, entitlement: Entitlement, now: datetime) -> None:
    entitlements_store.save(session, entitlement, now)


class Lifecycle:
    """The lifecycle decision a reviewer takes: confirm or overturn a proposed termination.
    A confirmed one is announced to the other offices paying the person (life_events.py)."""

    def __init__(self, context: NodeContext, issuer: Issuer, life_events: LifeEvents) -> None:
        self._context = context
        self._issuer = issuer
        self._life_events = life_events

    @property
    def policy(self) -> Policy:
        return self._context.policy

    def review_termination(
        self, actor: Actor, beneficiary_id: str, confirm: bool, reason: str
    ) -> tuple[Entitlement, Beneficiary]:
        require_id(beneficiary_id, "beneficiary_id")
        limits = self._context.config.limits
        require_text(reason, "reason", limits, required=not confirm)
        others = OtherOffices({})
        if confirm:
            # Asked before the transaction: no lock waits on the registry.
            with self._context.session() as session:
                locator = beneficiaries.get(session, beneficiary_id).subject_locator
            others = self._life_events.other_offices(locator)
        now = self._context.now()
        announcement: list[tuple[attestation_pb2.CertificationAttestation, str | None]] = []
        with session_scope(self._context.engine) as session:
            entitlement = entitlements_store.get(session, beneficiary_id, for_update=True)
            if not entitlement.termination_pending_review:
                raise PreconditionError(
                    f"no termination awaits review for beneficiary {beneficiary_id}"
                )
            recorders = signals_store.negative_recorders(
                session, beneficiary_id, list(NEGATIVE_STATUSES)
            ) | attestation_review.appliers(session, beneficiary_id)
            if actor.name in recorders:
                raise PermissionDeniedError(
                    "the operator who recorded the signal (or applied the held attestation) "
                    "may not review it; "
                    "another reviewer must decide (separation of duties)"
                )
            beneficiary = beneficiaries.get(session, beneficiary_id)
            details: dict[str, str | int | bool | list[str] | None] = {"reason_given": bool(reason)}
            if confirm:
                status = entitlement.pending_status or BeneficiaryState.DECEASED
                ended_at = entitlement.pending_effective_at or entitlement.state_since
                reported_on = entitlement.state_since.date()
                owed = terminate(session, beneficiary, entitlement, status, ended_at, now)
                announcement = self._life_events.announce(
                    session,
                    self._issuer,
                    beneficiary,
                    status,
                    ended_at,
                    others,
                    clerk_id=min(recorders, default=actor.name),
                    reviewer_id=actor.name,
                    now=now,
                )
                details |= {
                    "announced_to": announced_to(announcement, self._context.node_id),
                    "announce_failed": others.failure or None,
                    "status": status.value,
                    "overpayment_fen": owed.amount_fen,
                    "overpayment_months": owed.months,
                    "late_for_family": reported_late(
                        ended_at.date(), reported_on, self.policy.family_report_days
                    ),
                    "late_for_unit": reported_late(
                        ended_at.date(), reported_on, self.policy.unit_report_days
                    ),
                }
                action = "entitlement.terminate"
            else:
                self._overturn(session, beneficiary, entitlement, now)
                details["state"] = entitlement.state.value
                action = "entitlement.termination_overturned"
            audit.append(
                session,
                actor=actor.label,
                action=action,
                subject_type="beneficiary",
                subject_id=beneficiary_id,
                details=details,
                now=now,
            )
            # Last: the log head stays locked only until the commit (Issuer.issue).
            self._issuer.issue(session, announcement, now=now)
        if announcement:
            self._issuer.issued()
        return entitlement, beneficiary

    def close_payment_month(self, actor: Actor, month: str) -> tuple[bool, date]:
        """Close `month` before its bank file is exported: its instructions never change
        again. Returns whether it was open until now, and the first month still open."""
        try:
            closing = parse_month(month)
        except ValueError:
            raise InvalidInputError(
                "month", "must be a month written YYYY-MM, e.g. 2025-07"
            ) from None
        now = self._context.now()
        if closing > month_start(now.date()):
            raise InvalidInputError(
                "month", "has not begun; a month's payments are closed once it is under way"
            )
        with session_scope(self._context.engine) as session:
            newly = payments_store.close_month(session, month, actor.label, now)
            if newly:
                audit.append(
                    session,
                    actor=actor.label,
                    action="payments.close_month",
                    subject_type="payment_month",
                    subject_id=month,
                    details={},
                    now=now,
                )
            earliest = first_open(session)
        assert earliest is not None
        return newly, earliest

    def _overturn(
        self, session: Session, beneficiary: Beneficiary, entitlement: Entitlement, now: datetime
    ) -> None:
        """The negative signal was wrong: back to what validity gives, payment resumed unless
        validity itself has lapsed past the warning period."""
        entitlement.termination_pending_review = False
        entitlement.pending_status = None
        entitlement.pending_effective_at = None
        timeline = phases(expiry_of(beneficiary), self.policy)
        phase = timeline.on(now)
        if phase is not EntitlementState.SUSPENDED:
            resume(session, self.policy, entitlement, now.date(), now)
        entitlement.state = phase
        entitlement.state_since = now
        entitlement_updated(session, entitlement, now)
