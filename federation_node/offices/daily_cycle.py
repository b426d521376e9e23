"""The paying office's daily cycle: every entitlement moved to the phase its validity gives,
reminders queued, payment withheld at the end of the warning period, beneficiaries who live
in a region another node serves sent there as assistance requests when they come due, and
personal data past the policy's retention periods deleted, evidence files among it
(retention.py).

The cycle claims its day in the database, so running it twice for a day (or on two replicas)
does it once.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import structlog
from sqlmodel import Session

from federation.errors import CertfedError, InvalidInputError
from federation_node.offices import retention
from federation_node.offices.context import Actor, NodeContext
from federation_node.offices.evidence import EvidenceArchive
from federation_node.offices.lifecycle import entitlement_updated, expiry_of, withhold
from federation_node.offices.paying_office import PayingOffice
from federation_node.rules.entitlement import (
    EntitlementState,
    advance,
    month_start,
    phases,
    reminder_kind,
    reminder_offset,
)
from federation_node.store import (
    assistance,
    audit,
    cycles_store,
    entitlements_store,
    reminders_store,
)
from federation_node.store.db import session_scope
from federation_node.store.models import Beneficiary, BeneficiaryState

log = structlog.get_logger("certfed.lifecycle")


@dataclass(frozen=True)
class CycleOutcome:
    ran: bool
    became_due: int = 0
    requests_sent: int = 0
    reminders_queued: int = 0
    warned: int = 0
    suspended: int = 0
    # Beneficiaries whose dates could not be computed: left as they were and reported, so one
    # bad record never stops the cycle for everybody.
    skipped: tuple[str, ...] = ()


def start_of_day(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


class DailyCycle:
    """Runs a day of the paying office's year; asks residence regions for help through the
    paying office, the one path for every assistance request."""

    def __init__(
        self, context: NodeContext, paying_office: PayingOffice, evidence: EvidenceArchive
    ) -> None:
        self._context = context
        self._paying_office = paying_office
        self._evidence = evidence

    def run_cycle(self, actor: Actor, day: date | None) -> CycleOutcome:
        now = self._context.now()
        today = now.date()
        day = day or today
        if day > today:
            raise InvalidInputError(
                "day", f"{day.isoformat()} is in the future; run the cycle for today or earlier"
            )
        policy = self._context.policy
        moment = start_of_day(day)
        reach = max([policy.assistance_lead_days, *(-d for d in policy.reminder_days)])
        requests = 0
        with session_scope(self._context.engine) as session:
            run = cycles_store.claim(session, day, actor.label, now)
            if run is None:
                return CycleOutcome(ran=False)
            rows = entitlements_store.in_cycle_scope(session, moment + timedelta(days=reach))
            queued = reminders_store.queued_for(session, [row[1].beneficiary_id for row in rows])
            counts: Counter[str] = Counter()
            skipped: list[str] = []
            for entitlement, beneficiary in rows:
                try:
                    expiry = expiry_of(beneficiary)
                    timeline = phases(expiry, policy)
                    moved_to = advance(entitlement.state, timeline.on(moment))
                    offset = reminder_offset(day, expiry.date(), policy.reminder_days)
                except (OverflowError, ValueError) as error:
                    skipped.append(beneficiary.beneficiary_id)
                    log.error(
                        "cycle.record_skipped",
                        beneficiary_id=beneficiary.beneficiary_id,
                        error_type=type(error).__name__,
                    )
                    continue
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
            kept = retention.run(session, policy, actor.label, moment, now)
            evidence_deleted = kept.evidence_deleted
            outcome = CycleOutcome(
                ran=True,
                became_due=run.became_due,
                requests_sent=requests,
                reminders_queued=run.reminders_queued,
                warned=run.warned,
                suspended=run.suspended,
                skipped=tuple(skipped),
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
                    "evidence_deleted": evidence_deleted,
                    "skipped_beneficiary_ids": list(outcome.skipped),
                },
                now=now,
            )
        log.info("cycle.ran", day=day.isoformat(), **counts)
        if requests:
            self._context.on_enqueued()
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
            target = self._context.directory.current().route(
                beneficiary.residence_region, self._context.config.routing
            )
        except CertfedError as error:
            log.warning("cycle.no_residence_node", reason=type(error).__name__)
            return 0
        if target.node_id == self._context.node_id:
            return 0
        if assistance.open_for_beneficiary(session, beneficiary.beneficiary_id) is not None:
            return 0
        deadline = max(
            expiry, now + timedelta(days=self._context.policy.assistance_min_deadline_days)
        )
        self._paying_office.queue_assistance_request(
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
