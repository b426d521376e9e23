"""The paying office's daily cycle: every entitlement moved to the phase its validity gives,
reminders queued, payment withheld at the end of the warning period, beneficiaries who live
in a region another node serves sent there as assistance requests when they come due, and
personal data past the policy's retention periods deleted, evidence files among it
(retention.py).

The cycle claims its day in the database, so running it twice for a day (or on two replicas)
does it once. It works through the roll in id order, `BATCH_SIZE` people at a time, each batch
its own transaction: the batch's people in the cycle's scope read as plain values, the rules
of rules/entitlement.py applied to each in memory, then one statement per kind of write (states
moved, payment withheld, reminders queued) and the run's place in the day moved past the batch
(store/cycles_store.py). A node killed midway loses nothing and repeats nothing: the run carries
on after its last committed batch when the cycle runs again, and a finished day changes
nothing. A person whose dates cannot be computed is left as they were and reported; the others
go on. `bulk_cycle = false` runs the whole day in one transaction, one ORM object per person:
the reference path the batched one must agree with, and the baseline `certfed bench cycle`
measures.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import NamedTuple

import structlog
from sqlmodel import Session

from certfed.v1 import directory_pb2
from federation.errors import CertfedError, InvalidInputError
from federation_node.ids import new_ids
from federation_node.offices import lifecycle, retention
from federation_node.offices.context import Actor, NodeContext
from federation_node.offices.evidence import EvidenceArchive
from federation_node.offices.lifecycle import entitlement_updated, expiry_of, withhold
from federation_node.offices.outbound_requests import OutboundRequests
from federation_node.rules.entitlement import (
    EntitlementState,
    Phases,
    ReminderKind,
    advance,
    month_start,
    phases,
    reminder_kind,
    reminder_offset,
)
from federation_node.rules.policy import Policy
from federation_node.store import (
    assistance,
    audit,
    beneficiaries,
    cycles_store,
    entitlements_store,
    reminders_store,
)
from federation_node.store.db import session_scope
from federation_node.store.models import Beneficiary, BeneficiaryState, CycleRun

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


# Ends of validity whose dates the rules compute under any policy: further from the calendar's
# ends than the longest lead time (24 months of 28 days), warning period (12 months) or reminder
# offset (366 days) a policy may set. A person outside is read every day, to be reported.
_COMPUTABLE = (datetime(3, 1, 1, tzinfo=UTC), datetime(9998, 1, 1, tzinfo=UTC))

# People of the roll per batch of the daily cycle, each batch its own transaction.
BATCH_SIZE = 20_000


def _horizon(day: date, policy: Policy) -> datetime:
    """How far ahead of `day` an end of validity brings an active person into the cycle: the
    lead days of an assistance request, or the earliest reminder before the end."""
    reach = max([policy.assistance_lead_days, *(-d for d in policy.reminder_days)])
    return start_of_day(day) + timedelta(days=reach)


def _outcome(run: CycleRun, skipped: list[str]) -> CycleOutcome:
    return CycleOutcome(
        ran=True,
        became_due=run.became_due,
        requests_sent=run.requests_sent,
        reminders_queued=run.reminders_queued,
        warned=run.warned,
        suspended=run.suspended,
        skipped=tuple(skipped),
    )


class _Step(NamedTuple):
    """What the day does for one person: the state they move to (and since when), and the
    reminder due (kind and offset), each None when there is none."""

    moved_to: EntitlementState | None
    since: datetime
    reminder: tuple[ReminderKind, int] | None


@dataclass(frozen=True)
class _BatchDone:
    moved: Counter[EntitlementState]
    reminders: int
    requests: int
    skipped: tuple[str, ...]


_NOTHING = _BatchDone(moved=Counter(), reminders=0, requests=0, skipped=())


class _DayRules:
    """The rules of rules/entitlement.py for one day, worked out once per calendar day on which
    validity ends: the calendar arithmetic is what costs, and a roll's people share few days.

    Exact, because every rule is blind to the time of day: moving an end of validity later
    within its day moves each phase boundary by as much (calendar months keep the time of day),
    and the reminder's offset and kind depend on the day alone."""

    def __init__(self, policy: Policy, day: date) -> None:
        self._policy = policy
        self.day = day
        self.moment = start_of_day(day)
        self._by_day: dict[date, tuple[datetime, Phases, tuple[ReminderKind, int] | None]] = {}

    def work(self) -> entitlements_store.CycleWork:
        """Who the day may act on, as bounds on the end of validity (each a superset)."""
        policy = self._policy
        one_day = timedelta(days=1)
        return entitlements_store.CycleWork(
            horizon=_horizon(self.day, policy),
            # Due people move once their validity has ended.
            due_before=self.moment + one_day,
            # People in warning move `warning_months` calendar months after it ended: never
            # sooner than 28 days a month.
            warning_before=self.moment - timedelta(days=28 * policy.warning_months) + one_day,
            # The latest offset reached today for an end of validity on day E is the largest
            # with E + offset <= today, that is an end before the day after today - offset.
            reminder_offsets=tuple(
                (start_of_day(self.day - timedelta(days=offset) + one_day), offset)
                for offset in sorted(set(policy.reminder_days), reverse=True)
            ),
            computable=_COMPUTABLE,
        )

    def step(self, state: EntitlementState, expiry: datetime) -> _Step:
        """Raises OverflowError or ValueError where the rules cannot compute a date."""
        ends_on = expiry.date()
        found = self._by_day.get(ends_on)
        if found is None:
            found = self._of_day(ends_on)
            self._by_day[ends_on] = found
        midnight, at_midnight, reminder = found
        shift = expiry - midnight
        # Phases.on and Phases.start_of of the end of validity's own timeline, inlined: this
        # runs for every person the day reads.
        moment = self.moment
        due_from = at_midnight.due_from + shift
        expires_at = at_midnight.expires_at + shift
        suspended_from = at_midnight.suspended_from + shift
        if moment < due_from:
            phase = EntitlementState.ACTIVE
        elif moment < expires_at:
            phase = EntitlementState.DUE
        elif moment < suspended_from:
            phase = EntitlementState.WARNING
        else:
            phase = EntitlementState.SUSPENDED
        moved_to = advance(state, phase)
        if moved_to is EntitlementState.DUE:
            return _Step(moved_to, due_from, reminder)
        if moved_to is EntitlementState.WARNING:
            return _Step(moved_to, expires_at, reminder)
        if moved_to is EntitlementState.SUSPENDED:
            return _Step(moved_to, suspended_from, reminder)
        return _Step(moved_to, moment, reminder)

    def _of_day(self, ends_on: date) -> tuple[datetime, Phases, tuple[ReminderKind, int] | None]:
        policy = self._policy
        midnight = start_of_day(ends_on)
        offset = reminder_offset(self.day, ends_on, policy.reminder_days)
        reminder = (reminder_kind(offset, midnight, policy), offset) if offset is not None else None
        return midnight, phases(midnight, policy), reminder


class DailyCycle:
    """Runs a day of the paying office's year; asks residence regions for help through the
    paying office, the one path for every assistance request."""

    def __init__(
        self, context: NodeContext, requests: OutboundRequests, evidence: EvidenceArchive
    ) -> None:
        self._context = context
        self._requests = requests
        self._evidence = evidence
        self.batch_size = BATCH_SIZE

    def claimed(self, day: date) -> bool:
        """Whether a run has claimed `day` (it is running, or ran)."""
        with self._context.session() as session:
            return cycles_store.get(session, day) is not None

    def run_cycle(self, actor: Actor, day: date | None) -> CycleOutcome:
        now = self._context.now()
        today = now.date()
        day = day or today
        if day > today:
            raise InvalidInputError(
                "day", f"{day.isoformat()} is in the future; run the cycle for today or earlier"
            )
        if not self._context.config.bulk_cycle:
            return self._run_row_by_row(actor, day, now)
        return self._run_in_batches(actor, day, now)

    def _run_in_batches(self, actor: Actor, day: date, now: datetime) -> CycleOutcome:
        """The day batch by batch, each batch its own transaction: one read of the batch's
        people, the rules applied to each in memory, and one statement per kind of write."""
        engine = self._context.engine
        with session_scope(engine) as session:
            if cycles_store.begin(session, day, actor.label, now) is None:
                return CycleOutcome(ran=False)
        rules = _DayRules(self._context.policy, day)
        work = rules.work()
        skipped: list[str] = []
        requests = 0
        while True:
            with session_scope(engine) as session:
                run = cycles_store.lock(session, day)
                if run.finished_at is not None:
                    break
                upto = entitlements_store.cycle_batch_end(
                    session, run.resume_after, self.batch_size
                )
                if upto is None:
                    break
                rows = entitlements_store.cycle_batch(session, work, run.resume_after, upto)
                done = self._batch(session, actor, rules, rows, now) if rows else _NOTHING
                run.became_due += done.moved[EntitlementState.DUE]
                run.warned += done.moved[EntitlementState.WARNING]
                run.suspended += done.moved[EntitlementState.SUSPENDED]
                run.reminders_queued += done.reminders
                run.requests_sent += done.requests
                run.resume_after = upto
                session.add(run)
                if done.skipped:
                    audit.append(
                        session,
                        actor=actor.label,
                        action="cycle.records_skipped",
                        subject_type="cycle",
                        subject_id=day.isoformat(),
                        details={"skipped_beneficiary_ids": list(done.skipped)},
                        now=now,
                    )
            skipped.extend(done.skipped)
            requests += done.requests
            if done.requests:
                self._context.on_enqueued()
        with session_scope(engine) as session:
            run = cycles_store.lock(session, day)
            if run.finished_at is not None:
                return _outcome(run, skipped)
            outcome = self._finish(session, actor, run, rules.moment, now, skipped)
        log.info(
            "cycle.ran",
            day=day.isoformat(),
            due=outcome.became_due,
            warning=outcome.warned,
            suspended=outcome.suspended,
            reminders=outcome.reminders_queued,
            requests=requests,
        )
        return outcome

    def _batch(
        self,
        session: Session,
        actor: Actor,
        rules: _DayRules,
        rows: list[entitlements_store.CycleRow],
        now: datetime,
    ) -> _BatchDone:
        moves: list[entitlements_store.Move] = []
        reminders: list[tuple[str, ReminderKind, datetime, int]] = []
        asking: dict[str, entitlements_store.CycleRow] = {}
        skipped: list[str] = []
        for row in rows:
            expiry = row.valid_until or row.created_at
            try:
                step = rules.step(row.state, expiry)
            except (OverflowError, ValueError) as error:
                skipped.append(row.beneficiary_id)
                log.error(
                    "cycle.record_skipped",
                    beneficiary_id=row.beneficiary_id,
                    error_type=type(error).__name__,
                )
                continue
            if step.moved_to is not None:
                moves.append(
                    entitlements_store.Move(
                        row.beneficiary_id,
                        row.state,
                        row.withheld_from_month,
                        step.moved_to,
                        step.since,
                    )
                )
                if row.state is EntitlementState.ACTIVE and step.moved_to in (
                    EntitlementState.DUE,
                    EntitlementState.WARNING,
                ):
                    asking[row.beneficiary_id] = row
            if step.reminder is not None:
                kind, offset = step.reminder
                # Most of a day's reminders were queued on an earlier day: not written again.
                if offset != row.reminded:
                    reminders.append((row.beneficiary_id, kind, expiry, offset))
        moved = lifecycle.advance_many(session, moves, month_start(rules.day), now)
        queued = reminders_store.queue_many(
            session,
            [
                (beneficiary_id, reminder_id, kind, expiry, offset)
                for (beneficiary_id, kind, expiry, offset), reminder_id in zip(
                    reminders, new_ids(len(reminders)), strict=True
                )
            ],
            now,
        )
        requests = self._ask_for_moved(
            session, actor, [asking[bid] for bid, _ in moved if bid in asking], now
        )
        return _BatchDone(
            moved=Counter(state for _, state in moved),
            reminders=queued,
            requests=requests,
            skipped=tuple(skipped),
        )

    def _ask_for_moved(
        self,
        session: Session,
        actor: Actor,
        rows: list[entitlements_store.CycleRow],
        now: datetime,
    ) -> int:
        """Assistance requests for people who just came due, where another node serves the
        region they live in; the directory is asked once per region."""
        targets: dict[str, directory_pb2.DirectoryNode | None] = {}
        asking: dict[str, directory_pb2.DirectoryNode] = {}
        for row in rows:
            if row.status is not BeneficiaryState.ACTIVE:
                continue
            region = row.residence_region
            if region not in targets:
                targets[region] = self._residence_node(region)
            target = targets[region]
            if target is not None:
                asking[row.beneficiary_id] = target
        if not asking:
            return 0
        people = beneficiaries.by_ids(session, asking)
        return sum(
            self._ask_residence_region(session, actor, person, expiry_of(person), now, target)
            for beneficiary_id, target in asking.items()
            if (person := people.get(beneficiary_id)) is not None
        )

    def _residence_node(self, region: str) -> directory_pb2.DirectoryNode | None:
        """The node that certifies residents of `region` when it is another one, else None."""
        try:
            target = self._context.directory.current().route(region, self._context.config.routing)
        except CertfedError as error:
            log.warning("cycle.no_residence_node", reason=type(error).__name__)
            return None
        return None if target.node_id == self._context.node_id else target

    def _finish(
        self,
        session: Session,
        actor: Actor,
        run: CycleRun,
        moment: datetime,
        now: datetime,
        skipped: list[str],
    ) -> CycleOutcome:
        """The day's last step, in its last transaction: personal data past its retention
        period deleted, the roll's running total recounted, the run audited and marked
        finished."""
        kept = retention.run(session, self._context.policy, actor.label, moment, now)
        beneficiaries.recount(session)
        run.finished_at = now
        session.add(run)
        outcome = _outcome(run, skipped)
        audit.append(
            session,
            actor=actor.label,
            action="cycle.run",
            subject_type="cycle",
            subject_id=run.day,
            details={
                "became_due": outcome.became_due,
                "requests_sent": outcome.requests_sent,
                "reminders_queued": outcome.reminders_queued,
                "warned": outcome.warned,
                "suspended": outcome.suspended,
                "evidence_deleted": kept.evidence_deleted,
                "skipped_beneficiary_ids": list(outcome.skipped),
            },
            now=now,
        )
        return outcome

    def _run_row_by_row(self, actor: Actor, day: date, now: datetime) -> CycleOutcome:
        """The whole day in one transaction, one ORM object per person: the reference the
        batched path must agree with (`bulk_cycle = false`)."""
        policy = self._context.policy
        moment = start_of_day(day)
        requests = 0
        with session_scope(self._context.engine) as session:
            run = cycles_store.claim(session, day, actor.label, now)
            if run is None:
                return CycleOutcome(ran=False)
            rows = entitlements_store.in_cycle_scope(session, _horizon(day, policy))
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
            run.finished_at = now
            session.add(run)
            outcome = self._finish(session, actor, run, moment, now, skipped)
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
        target: directory_pb2.DirectoryNode | None = None,
    ) -> int:
        """Send an assistance request for a beneficiary living in a region another node serves
        (`target`, when the caller found it), unless one is open; returns how many were sent
        (0 or 1)."""
        if beneficiary.status is not BeneficiaryState.ACTIVE:
            return 0
        target = target or self._residence_node(beneficiary.residence_region)
        if target is None:
            return 0
        if assistance.open_for_beneficiary(session, beneficiary.beneficiary_id) is not None:
            return 0
        deadline = max(
            expiry, now + timedelta(days=self._context.policy.assistance_min_deadline_days)
        )
        self._requests.queue_assistance_request(
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
