"""The paying office's year: data signals, termination review and the daily cycle, on the store.

The rules are federation_node/rules/entitlement.py's pure functions with the region's Policy; this
module applies them in one transaction per operation, writing the entitlement, the payment
instruction and the audit record together.

Decisions where the issue is silent (docs/policy.md says the same to operators):

* An alive data signal that moves validity forward becomes a data-match attestation through
  `Node.issue_attestations`, the path every attestation this node issues takes (signed,
  stored, appended to the transparency log; a batch in one log append). Its clerk is the
  operator who ran the import; its reviewer is `policy:data-match`, because no person reviews a
  data match: the policy file that says which feeds count is what was reviewed. A signal that
  would not move validity forward is recorded and issues nothing.
* A negative signal suspends payment at once (a SUSPEND instruction for the month it is
  recorded in) and waits for a reviewer, who must not be the operator who recorded it
  (separation of duties, DOMAIN.md).
* Alive signals for a beneficiary whose termination awaits review are recorded and ignored:
  the reviewer decides, and an overturn restores what validity gives.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING

import structlog
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from certfed.v1 import attestation_pb2, common_pb2, desk_pb2
from federation.errors import (
    CertfedError,
    InvalidInputError,
    PermissionDeniedError,
    PreconditionError,
)
from federation.timestamps import to_datetime, to_timestamp
from federation_node.ids import new_id
from federation_node.rules.entitlement import (
    EntitlementState,
    Overpayment,
    advance,
    extended_validity,
    month_label,
    month_start,
    overpayment,
    parse_month,
    phases,
    reminder_kind,
    reminder_offset,
    reported_late,
    resumption,
)
from federation_node.rules.policy import Policy
from federation_node.rules.validation import identity_kind, require_id, require_past, require_text
from federation_node.store import (
    assistance,
    audit,
    beneficiaries,
    cycles_store,
    entitlements_store,
    payments_store,
    reminders_store,
    signals_store,
)
from federation_node.store.db import session_scope
from federation_node.store.models import (
    Beneficiary,
    BeneficiaryState,
    Entitlement,
    PaymentAction,
    SignalOutcome,
)
from signing.errors import InvalidIdentityNumberError
from signing.identity import validate_identity_number
from signing.locator import subject_locator

if TYPE_CHECKING:
    from federation_node.offices.node import Actor, Node

log = structlog.get_logger("certfed.lifecycle")

# The reviewer named in a data-match attestation: the policy, not a person (module docstring).
POLICY_REVIEWER = "policy:data-match"
MAX_SOURCE_LENGTH = 64
MAX_SOURCE_RECORD_ID_LENGTH = 128

NEGATIVE_STATUSES: dict[int, BeneficiaryState] = {
    desk_pb2.SIGNAL_KIND_DEATH_REGISTRATION: BeneficiaryState.DECEASED,
    desk_pb2.SIGNAL_KIND_CREMATION: BeneficiaryState.DECEASED,
    desk_pb2.SIGNAL_KIND_COURT_DECLARATION_OF_DEATH: BeneficiaryState.DECEASED,
    desk_pb2.SIGNAL_KIND_COURT_DECLARATION_MISSING: BeneficiaryState.DECLARED_MISSING,
    desk_pb2.SIGNAL_KIND_CRIMINAL_SENTENCE: BeneficiaryState.IMPRISONED,
}
OUTCOMES = {
    SignalOutcome.APPLIED: desk_pb2.SIGNAL_OUTCOME_APPLIED,
    SignalOutcome.UNKNOWN_PERSON: desk_pb2.SIGNAL_OUTCOME_UNKNOWN_PERSON,
    SignalOutcome.IGNORED: desk_pb2.SIGNAL_OUTCOME_IGNORED,
}


def signal_kind_name(kind: int) -> str:
    """ "hospital_admission" for SIGNAL_KIND_HOSPITAL_ADMISSION: the name the policy file uses."""
    return (
        desk_pb2.SignalKind.Name(desk_pb2.SignalKind.ValueType(kind))
        .removeprefix("SIGNAL_KIND_")
        .lower()
    )


def is_alive_kind(kind: int) -> bool:
    return 0 < kind < min(NEGATIVE_STATUSES)


def start_of_day(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def expiry_of(beneficiary: Beneficiary) -> datetime:
    """The end of validity; a beneficiary never certified is treated as expiring on the day
    they were registered (docs/policy.md)."""
    return beneficiary.valid_until or beneficiary.created_at


# Transitions, inside the caller's transaction. Node applies received attestations with them.


def withhold(session: Session, entitlement: Entitlement, month: date, now: datetime) -> bool:
    """Suspend payment from `month` unless a suspension is already in effect."""
    if entitlement.withheld_from_month is not None:
        return False
    payments_store.add(
        session,
        beneficiary_id=entitlement.beneficiary_id,
        action=PaymentAction.SUSPEND,
        effective_month=month_label(month),
        now=now,
    )
    entitlement.withheld_from_month = month_label(month)
    return True


def resume(
    session: Session, policy: Policy, entitlement: Entitlement, certified_on: date, now: datetime
) -> None:
    """End a suspension: payment resumes with back pay for the withheld months."""
    if entitlement.withheld_from_month is None:
        return
    resumed = resumption(
        parse_month(entitlement.withheld_from_month),
        certified_on,
        entitlement.monthly_amount_fen,
        policy,
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
    stopped_from = (
        parse_month(entitlement.withheld_from_month)
        if entitlement.withheld_from_month is not None
        else month_start(now.date())
    )
    owed = overpayment(effective_at.date(), stopped_from, entitlement.monthly_amount_fen)
    payments_store.add(
        session,
        beneficiary_id=entitlement.beneficiary_id,
        action=PaymentAction.TERMINATE,
        effective_month=month_label(month_start(now.date())),
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


@dataclass(frozen=True)
class CycleOutcome:
    ran: bool
    became_due: int = 0
    requests_sent: int = 0
    reminders_queued: int = 0
    warned: int = 0
    suspended: int = 0


@dataclass(frozen=True)
class _CheckedSignal:
    source: str
    source_record_id: str
    kind: int
    locator: bytes
    observed_at: datetime


class Lifecycle:
    """The lifecycle operations of one node."""

    def __init__(self, node: Node) -> None:
        self._node = node

    @property
    def policy(self) -> Policy:
        return self._node.policy

    # Data signals.

    def record_signals(
        self, actor: Actor, signals: Sequence[desk_pb2.DataSignal]
    ) -> list[desk_pb2.SignalResult]:
        limits = self._node.config.limits
        if not signals:
            raise InvalidInputError("signals", "give at least one signal")
        if len(signals) > limits.max_repeated:
            raise InvalidInputError(
                "signals", f"has {len(signals)} items; the limit is {limits.max_repeated}"
            )
        now = self._node.now()
        checked = [self._check_signal(index, signal, now) for index, signal in enumerate(signals)]
        try:
            return self._record_checked(actor, checked, now)
        except IntegrityError:
            # Another import recorded some of these signals between our read and our commit;
            # run again: this time they are found and reported as duplicates.
            log.info("signals.concurrent_import_retried", count=len(checked))
            return self._record_checked(actor, checked, now)

    def _check_signal(
        self, index: int, signal: desk_pb2.DataSignal, now: datetime
    ) -> _CheckedSignal:
        name = f"signals[{index}]"
        limits = self._node.config.limits
        source = require_text(signal.source, f"{name}.source", limits, required=True)
        if len(source) > MAX_SOURCE_LENGTH:
            raise InvalidInputError(f"{name}.source", f"is longer than {MAX_SOURCE_LENGTH}")
        record_id = require_text(
            signal.source_record_id, f"{name}.source_record_id", limits, required=True
        )
        if len(record_id) > MAX_SOURCE_RECORD_ID_LENGTH:
            raise InvalidInputError(
                f"{name}.source_record_id", f"is longer than {MAX_SOURCE_RECORD_ID_LENGTH}"
            )
        if not (is_alive_kind(signal.kind) or signal.kind in NEGATIVE_STATUSES):
            raise InvalidInputError(f"{name}.kind", "is missing or not a known signal kind")
        bundle = attestation_pb2.IdentityBundle(
            identity_type=signal.identity_type, identity_number=signal.identity_number
        )
        kind = identity_kind(bundle, name)
        try:
            number = validate_identity_number(kind, signal.identity_number)
        except InvalidIdentityNumberError as error:
            raise InvalidInputError(f"{name}.identity_number", str(error)) from None
        if not signal.HasField("observed_at"):
            raise InvalidInputError(f"{name}.observed_at", "is required")
        observed_at = require_past(
            to_datetime(signal.observed_at), f"{name}.observed_at", now, limits
        )
        return _CheckedSignal(
            source,
            record_id,
            signal.kind,
            subject_locator(self._node.keys.locator_key, kind, number),
            observed_at,
        )

    def _record_checked(
        self, actor: Actor, checked: list[_CheckedSignal], now: datetime
    ) -> list[desk_pb2.SignalResult]:
        results: list[desk_pb2.SignalResult] = []
        issued: list[tuple[attestation_pb2.CertificationAttestation, str | None]] = []
        with session_scope(self._node.engine) as session:
            known = signals_store.known(
                session, [(signal.source, signal.source_record_id) for signal in checked]
            )
            people = entitlements_store.by_locators(
                session, sorted({signal.locator for signal in checked})
            )
            seen: set[tuple[str, str]] = set()
            for signal in checked:
                key = (signal.source, signal.source_record_id)
                earlier = known.get(key)
                if earlier is not None or key in seen:
                    results.append(
                        desk_pb2.SignalResult(
                            outcome=desk_pb2.SIGNAL_OUTCOME_DUPLICATE,
                            beneficiary_id=(earlier.beneficiary_id or "") if earlier else "",
                            attestation_id=(earlier.attestation_id or "") if earlier else "",
                            message="recorded before; nothing changed",
                        )
                    )
                    continue
                seen.add(key)
                person = people.get(signal.locator)
                outcome, attestation, message = (
                    (SignalOutcome.UNKNOWN_PERSON, None, "no beneficiary of this office")
                    if person is None
                    else self._apply_signal(session, actor, signal, *person, now)
                )
                attestation_id = attestation.attestation_id if attestation else None
                if attestation is not None and person is not None:
                    issued.append((attestation, person[0].beneficiary_id))
                signals_store.add(
                    session,
                    source=signal.source,
                    source_record_id=signal.source_record_id,
                    kind=signal.kind,
                    beneficiary_id=person[0].beneficiary_id if person else None,
                    observed_at=signal.observed_at,
                    outcome=outcome,
                    attestation_id=attestation_id,
                    recorded_by=actor.name,
                    now=now,
                )
                results.append(
                    desk_pb2.SignalResult(
                        outcome=OUTCOMES[outcome],
                        beneficiary_id=person[0].beneficiary_id if person else "",
                        attestation_id=attestation_id or "",
                        message=message,
                    )
                )
            counts = Counter(
                desk_pb2.SignalOutcome.Name(result.outcome).removeprefix("SIGNAL_OUTCOME_").lower()
                for result in results
            )
            audit.append(
                session,
                actor=actor.label,
                action="signals.record",
                subject_type="signal_batch",
                subject_id=new_id(),
                details={**dict(sorted(counts.items())), "attestations": len(issued)},
                now=now,
            )
            # Last, and all at once: one append to the log for the batch (Node docstring).
            self._node.issue_attestations(session, issued, now=now)
        if issued:
            self._node.attestations_issued()
        return results

    def _apply_signal(
        self,
        session: Session,
        actor: Actor,
        signal: _CheckedSignal,
        beneficiary: Beneficiary,
        entitlement: Entitlement,
        now: datetime,
    ) -> tuple[SignalOutcome, attestation_pb2.CertificationAttestation | None, str]:
        if entitlement.state is EntitlementState.TERMINATED:
            return SignalOutcome.IGNORED, None, "entitlement has ended"
        if entitlement.termination_pending_review:
            return SignalOutcome.IGNORED, None, "a termination awaits review"
        if signal.kind in NEGATIVE_STATUSES:
            entitlement.state = EntitlementState.SUSPENDED
            entitlement.state_since = now
            entitlement.termination_pending_review = True
            entitlement.pending_status = NEGATIVE_STATUSES[signal.kind]
            entitlement.pending_effective_at = signal.observed_at
            withhold(session, entitlement, month_start(now.date()), now)
            entitlement_updated(session, entitlement, now)
            return SignalOutcome.APPLIED, None, "payment suspended; termination awaits review"
        kind = signal_kind_name(signal.kind)
        if kind not in self.policy.extending_signal_kinds:
            return SignalOutcome.IGNORED, None, f"this office's policy does not count {kind}"
        valid_until = extended_validity(beneficiary.valid_until, signal.observed_at, self.policy)
        if valid_until is None:
            return SignalOutcome.IGNORED, None, "validity already runs past this signal's reach"
        attestation = self._data_match(actor, signal, beneficiary, valid_until, now)
        beneficiaries.extend_validity(session, beneficiary, valid_until, now)
        certified(session, self.policy, entitlement, signal.observed_at, now)
        return SignalOutcome.APPLIED, attestation, "validity extended"

    def _data_match(
        self,
        actor: Actor,
        signal: _CheckedSignal,
        beneficiary: Beneficiary,
        valid_until: datetime,
        now: datetime,
    ) -> attestation_pb2.CertificationAttestation:
        config = self._node.config
        # The evidence is the feed record, named by its source and id (kept in data_signal).
        evidence = hashlib.sha256(
            f"{signal.source}\n{signal.source_record_id}\n{signal.kind}".encode()
        ).digest()
        return attestation_pb2.CertificationAttestation(
            attestation_id=new_id(),
            subject_locator=beneficiary.subject_locator,
            paying_region=beneficiary.paying_region,
            paying_node_id=self._node.node_id,
            issuing_node_id=self._node.node_id,
            certifying_region=beneficiary.paying_region,
            certifying_agency=config.certifying_agency or config.display_name,
            method=common_pb2.CERTIFICATION_METHOD_DATA_MATCH,
            outcome=common_pb2.CERTIFICATION_OUTCOME_ALIVE,
            observed_at=to_timestamp(signal.observed_at),
            valid_until=to_timestamp(valid_until),
            evidence_digests=[evidence],
            clerk_id=actor.name,
            reviewer_id=POLICY_REVIEWER,
            issued_at=to_timestamp(now),
        )

    # Review of a proposed termination.

    def review_termination(
        self, actor: Actor, beneficiary_id: str, confirm: bool, reason: str
    ) -> tuple[Entitlement, Beneficiary]:
        require_id(beneficiary_id, "beneficiary_id")
        limits = self._node.config.limits
        require_text(reason, "reason", limits, required=not confirm)
        now = self._node.now()
        with session_scope(self._node.engine) as session:
            entitlement = entitlements_store.get(session, beneficiary_id, for_update=True)
            if not entitlement.termination_pending_review:
                raise PreconditionError(
                    f"no termination awaits review for beneficiary {beneficiary_id}"
                )
            recorders = signals_store.negative_recorders(
                session, beneficiary_id, list(NEGATIVE_STATUSES)
            )
            if actor.name in recorders:
                raise PermissionDeniedError(
                    "the operator who recorded the signal may not review it; "
                    "another reviewer must decide (separation of duties)"
                )
            beneficiary = beneficiaries.get(session, beneficiary_id)
            details: dict[str, str | int | bool | list[str] | None] = {"reason_given": bool(reason)}
            if confirm:
                status = entitlement.pending_status or BeneficiaryState.DECEASED
                ended_at = entitlement.pending_effective_at or entitlement.state_since
                reported_on = entitlement.state_since.date()
                owed = terminate(session, beneficiary, entitlement, status, ended_at, now)
                details |= {
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
        return entitlement, beneficiary

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

    # The daily cycle.

    def run_cycle(self, actor: Actor, day: date | None) -> CycleOutcome:
        now = self._node.now()
        today = now.date()
        day = day or today
        if day > today:
            raise InvalidInputError(
                "day", f"{day.isoformat()} is in the future; run the cycle for today or earlier"
            )
        policy = self.policy
        moment = start_of_day(day)
        reach = max([policy.assistance_lead_days, *(-d for d in policy.reminder_days)])
        requests = 0
        with session_scope(self._node.engine) as session:
            run = cycles_store.claim(session, day, actor.label, now)
            if run is None:
                return CycleOutcome(ran=False)
            rows = entitlements_store.in_cycle_scope(session, moment + timedelta(days=reach))
            queued = reminders_store.queued_for(session, [row[1].beneficiary_id for row in rows])
            counts: Counter[str] = Counter()
            for entitlement, beneficiary in rows:
                expiry = expiry_of(beneficiary)
                timeline = phases(expiry, policy)
                moved_to = advance(entitlement.state, timeline.on(moment))
                if moved_to is not None:
                    if entitlement.state is EntitlementState.ACTIVE and moved_to in (
                        EntitlementState.DUE,
                        EntitlementState.WARNING,
                    ):
                        requests += self._ask_residence_region(
                            session, actor, beneficiary, expiry, now
                        )
                    counts[moved_to.value] += 1
                    entitlement.state = moved_to
                    entitlement.state_since = timeline.start_of(moved_to) or moment
                    if moved_to is EntitlementState.SUSPENDED:
                        withhold(session, entitlement, month_start(day), now)
                    entitlement_updated(session, entitlement, now)
                offset = reminder_offset(day, expiry.date(), policy.reminder_days)
                key = (beneficiary.beneficiary_id, expiry, offset)
                if offset is not None and key not in queued:
                    reminders_store.queue(
                        session,
                        beneficiary_id=beneficiary.beneficiary_id,
                        kind=reminder_kind(offset, expiry, policy),
                        expires_at=expiry,
                        offset_days=offset,
                        now=now,
                    )
                    counts["reminders"] += 1
            run.became_due = counts[EntitlementState.DUE.value]
            run.warned = counts[EntitlementState.WARNING.value]
            run.suspended = counts[EntitlementState.SUSPENDED.value]
            run.reminders_queued = counts["reminders"]
            run.requests_sent = requests
            session.add(run)
            outcome = CycleOutcome(
                ran=True,
                became_due=run.became_due,
                requests_sent=requests,
                reminders_queued=run.reminders_queued,
                warned=run.warned,
                suspended=run.suspended,
            )
            audit.append(
                session,
                actor=actor.label,
                action="cycle.run",
                subject_type="cycle",
                subject_id=day.isoformat(),
                details={
                    "became_due": outcome.became_due,
                    "requests_sent": outcome.requests_sent,
                    "reminders_queued": outcome.reminders_queued,
                    "warned": outcome.warned,
                    "suspended": outcome.suspended,
                },
                now=now,
            )
        log.info("cycle.ran", day=day.isoformat(), **counts)
        if requests:
            self._node.on_enqueued()
        return outcome

    def _ask_residence_region(
        self,
        session: Session,
        actor: Actor,
        beneficiary: Beneficiary,
        expiry: datetime,
        now: datetime,
    ) -> int:
        """Send an assistance request for a beneficiary living in a region another node serves,
        unless one is open; returns how many were sent (0 or 1)."""
        if beneficiary.status is not BeneficiaryState.ACTIVE:
            return 0
        try:
            target = self._node.directory.current().route(beneficiary.residence_region)
        except CertfedError as error:
            log.warning("cycle.no_residence_node", reason=type(error).__name__)
            return 0
        if target.node_id == self._node.node_id:
            return 0
        if assistance.open_for_beneficiary(session, beneficiary.beneficiary_id) is not None:
            return 0
        deadline = max(expiry, now + timedelta(days=self.policy.assistance_min_deadline_days))
        self._node.queue_assistance_request(
            session,
            actor,
            beneficiary,
            target,
            deadline=deadline,
            methods=[],
            note="",
            now=now,
        )
        return 1
