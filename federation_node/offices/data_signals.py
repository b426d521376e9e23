"""Data signals at the paying office: records from outside feeds (hospitals, medical insurance,
banks, border control, civil registers) that show a person alive, or dead, imprisoned or missing.

Decisions where the issue is silent (docs/policy.md says the same to operators):

* An alive data signal that moves validity forward becomes a data-match attestation through
  `Issuer`, the path every attestation this node issues takes (signed, stored, appended to the
  transparency log; a batch in one log append), and is applied through the paying office's one
  apply path (`PayingOffice.apply_attestation`), as a peer's attestation is. Its clerk is the
  operator who ran the import; its reviewer is `policy:data-match`, because no person reviews a
  data match: the policy file that says which feeds count is what was reviewed. A signal that
  would not move validity forward is recorded and issues nothing.
* A negative signal suspends payment at once (a SUSPEND instruction for the month it is
  recorded in) and waits for a reviewer, who must not be the operator who recorded it
  (separation of duties, docs/domain.md; the review is `Lifecycle.review_termination`).
* Alive signals for a beneficiary whose termination awaits review are recorded and ignored:
  the reviewer decides, and an overturn restores what validity gives.
* Feeds come from feed accounts (role `feed`), each bound to the sources it was created for;
  a signal of any other source from such an account refuses the whole batch. An alive signal
  a person enters (any other operator) that would change something is held instead
  (offices/pending_signals.py) until a reviewer who is not that person approves it
  (`decide_pending`); the attestation then names the person as clerk and the approver as
  reviewer. A person may not enter signals under a source a feed account is bound to, so a
  feed's record id cannot be taken first by hand.

A batch is recorded set-based (`_record_in_bulk`): rows matched to people through the roll's
index by roll key (a key of this node's, so no row asks the registry for a locator), decided in
memory in the batch's order, and written a statement per table. Its attestations are built
and signed by the signing workers from the findings, a chunk at a time as the batch is decided
(`Issuer.sign_soon`), and stored and logged in the batch's order, each chunk as soon as it is
signed (`Issuer.store_signed`). People whose payments change (a negative signal, a suspension in
effect) take the one-row path within the batch; for everyone else the batch writes what
`apply_attestation` and `lifecycle.certified` would (validity moved, entitlement active since
the signal), and tests hold the two paths equal.
The whole batch is one transaction: a crash leaves all of it or none, and a rerun finds what was
recorded as duplicates. `bulk_feed = false` keeps the one-row path for every row, the reference
the set-based path is tested and measured against.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache, partial

import structlog
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from certfed.v1 import attestation_pb2, common_pb2, desk_pb2
from federation.errors import InvalidInputError, PermissionDeniedError
from federation.timestamps import to_datetime, to_timestamp
from federation_node.ids import new_id, new_ids
from federation_node.offices import pending_signals
from federation_node.offices.context import Actor, NodeContext
from federation_node.offices.issuing import Finding, Issuer, PendingBatch
from federation_node.offices.lifecycle import NEGATIVE_STATUSES, entitlement_updated, withhold
from federation_node.offices.paying_office import PayingOffice
from federation_node.offices.roll import fill_roll_keys
from federation_node.rules.entitlement import EntitlementState, extended_validity, month_start
from federation_node.rules.feed_records import keyed_record_id, roll_key
from federation_node.rules.validation import (
    identity_kind,
    require_past,
    require_text,
)
from federation_node.store import (
    audit,
    beneficiaries,
    entitlements_store,
    feed_store,
    operators,
    signals_store,
)
from federation_node.store.db import session_scope
from federation_node.store.models import (
    Beneficiary,
    DataSignal,
    Entitlement,
    PendingSignal,
    PendingSignalDecision,
    SignalOutcome,
)
from signing.errors import InvalidIdentityNumberError

log = structlog.get_logger("certfed.lifecycle")

# The reviewer named in a data-match attestation: the policy, not a person (module docstring).
POLICY_REVIEWER = "policy:data-match"
MAX_SOURCE_LENGTH = 64
MAX_SOURCE_RECORD_ID_LENGTH = 128

OUTCOMES = {
    SignalOutcome.APPLIED: desk_pb2.SIGNAL_OUTCOME_APPLIED,
    SignalOutcome.UNKNOWN_PERSON: desk_pb2.SIGNAL_OUTCOME_UNKNOWN_PERSON,
    SignalOutcome.IGNORED: desk_pb2.SIGNAL_OUTCOME_IGNORED,
}
AWAITING_APPROVAL = "held until a second person approves it"
# Findings of a batch handed to the signing workers at once: the workers sign the next chunk
# while this process stores the last, and signing starts before the batch is fully decided.
SIGNING_CHUNK = 1_000


@lru_cache(maxsize=64)
def signal_kind_name(kind: int) -> str:
    """ "hospital_admission" for SIGNAL_KIND_HOSPITAL_ADMISSION: the name the policy file uses."""
    return (
        desk_pb2.SignalKind.Name(desk_pb2.SignalKind.ValueType(kind))
        .removeprefix("SIGNAL_KIND_")
        .lower()
    )


def is_alive_kind(kind: int) -> bool:
    return 0 < kind < min(NEGATIVE_STATUSES)


@dataclass(frozen=True)
class _CheckedSignal:
    source: str
    source_record_id: str
    kind: int
    # The person's key in this office's roll index (rules/feed_records.roll_key).
    roll_key: bytes
    observed_at: datetime


class DataSignals:
    """Imports a feed's signals: each recorded once, applied to the beneficiary it names."""

    def __init__(self, context: NodeContext, issuer: Issuer, paying_office: PayingOffice) -> None:
        self._context = context
        self._issuer = issuer
        self._paying_office = paying_office

    def record_signals(
        self, actor: Actor, signals: Sequence[desk_pb2.DataSignal], *, feed_account: bool = False
    ) -> list[desk_pb2.SignalResult]:
        """Record a batch. From a feed account (`feed_account`), every signal must be of a
        source it is bound to and alive signals apply at once; from a person, alive signals
        that would change something are held for a second person (module docstring)."""
        limits = self._context.config.limits
        if not signals:
            raise InvalidInputError("signals", "give at least one signal")
        if len(signals) > limits.max_repeated:
            raise InvalidInputError(
                "signals", f"has {len(signals)} items; the limit is {limits.max_repeated}"
            )
        now = self._context.now()
        checked = [self._check_signal(index, signal, now) for index, signal in enumerate(signals)]
        self._check_sources(actor, checked, feed_account=feed_account)
        # People a replica of the release before roll keys registered during an upgrade: keyed
        # before they are looked for (one indexed read finds none the rest of the time).
        fill_roll_keys(self._context)
        record = (
            self._record_in_bulk
            if feed_account and self._context.config.bulk_feed
            else partial(self._record_one_at_a_time, hold_alive=not feed_account)
        )
        try:
            return record(actor, checked, now)
        except IntegrityError:
            # Another import recorded some of these signals between our read and our commit;
            # run again: this time they are found and reported as duplicates.
            log.info("signals.concurrent_import_retried", count=len(checked))
            return record(actor, checked, now)

    def _check_sources(
        self, actor: Actor, checked: Sequence[_CheckedSignal], *, feed_account: bool
    ) -> None:
        with self._context.session() as session:
            if feed_account:
                allowed = operators.feed_sources(session, actor.name)
                for index, signal in enumerate(checked):
                    if signal.source not in allowed:
                        raise PermissionDeniedError(
                            f"feed account {actor.name} records signals only for the sources "
                            f"{', '.join(sorted(allowed)) or '(none)'}; signals[{index}].source "
                            f"{signal.source!r} is not one of them"
                        )
                return
            fed = operators.bound_sources(session)
            for index, signal in enumerate(checked):
                if signal.source in fed:
                    raise PermissionDeniedError(
                        f"signals[{index}].source {signal.source!r} is a feed account's source; "
                        "its signals come from that account; enter yours under another source"
                    )

    def _check_signal(
        self, index: int, signal: desk_pb2.DataSignal, now: datetime
    ) -> _CheckedSignal:
        name = f"signals[{index}]"
        limits = self._context.config.limits
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
        # Kept, and named in attestations, only keyed: the id as sent may be a hash of the
        # identity number (rules/feed_records.py).
        record_id = keyed_record_id(self._context.keys.hpke, source, record_id)
        if not (is_alive_kind(signal.kind) or signal.kind in NEGATIVE_STATUSES):
            raise InvalidInputError(f"{name}.kind", "is missing or not a known signal kind")
        bundle = attestation_pb2.IdentityBundle(
            identity_type=signal.identity_type, identity_number=signal.identity_number
        )
        kind = identity_kind(bundle, name)
        # The number validated, and the person's key in the office's roll index: computed here,
        # so a feed row costs no registry evaluation (most rows name people paid elsewhere).
        try:
            person_key = roll_key(self._context.keys.hpke, kind, signal.identity_number)
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
            person_key,
            observed_at,
        )

    def _record_in_bulk(
        self, actor: Actor, checked: list[_CheckedSignal], now: datetime
    ) -> list[desk_pb2.SignalResult]:
        """The batch set-based, with exactly the outcomes of `_record_one_at_a_time`.

        Rows are matched through the roll's index by roll key, read as plain rows. A person with
        a negative signal in the batch or a suspension in effect (payments change) goes through
        `_apply_signal`, the ORM path, row by row; everyone else is decided here in memory, in
        the batch's order, and written a statement per table: the signals, the validity
        changes (each person's last), and the attestations, logged in the batch's order. Their
        findings go to the signing workers in chunks as they are decided (`_BatchIssue`), so
        the workers build and sign while this process decides, writes the other tables and
        stores the chunks already signed.
        """
        with session_scope(self._context.engine) as session:
            keys = [(signal.source, signal.source_record_id) for signal in checked]
            known = feed_store.recorded(session, keys)
            held = pending_signals.taken(session, keys)
            seen: set[tuple[str, str]] = set()
            # Whether each signal is new: neither recorded before nor earlier in the batch.
            is_new: list[bool] = []
            for signal in checked:
                key = (signal.source, signal.source_record_id)
                is_new.append(key not in known and key not in held and key not in seen)
                seen.add(key)
            fresh = [signal for signal, new in zip(checked, is_new, strict=True) if new]
            # Only the new signals' people: a feed sent again looks nobody up.
            roll = feed_store.roll_index(session, sorted({signal.roll_key for signal in fresh}))
            row_by_row = {
                signal.roll_key
                for signal in fresh
                if (entry := roll.get(signal.roll_key)) is not None
                and (signal.kind in NEGATIVE_STATUSES or entry.withheld_from_month is not None)
            }
            people = (
                entitlements_store.by_roll_keys(session, sorted(row_by_row)) if row_by_row else {}
            )
            issue = _BatchIssue(self._issuer, now)
            extensions: dict[str, feed_store.Extension] = {}
            # Each new signal's beneficiary, outcome and message, and the position of its
            # attestation among the batch's (None when it issued none).
            decided: list[tuple[str | None, SignalOutcome, str, int | None]] = []
            for signal in fresh:
                entry = roll.get(signal.roll_key)
                position: int | None = None
                if entry is None:
                    outcome, message = SignalOutcome.UNKNOWN_PERSON, "no beneficiary of this office"
                    decided.append((None, outcome, message, None))
                    continue
                if signal.roll_key in row_by_row:
                    outcome, attestation, message = self._apply_signal(
                        session, actor, signal, *people[signal.roll_key], now
                    )
                    if attestation is not None:
                        position = issue.add_built(attestation, entry.beneficiary_id)
                else:
                    outcome, finding, message = self._match(actor, signal, entry, extensions)
                    if finding is not None:
                        position = issue.add_finding(finding, entry.beneficiary_id)
                decided.append((entry.beneficiary_id, outcome, message, position))
            feed_store.extend_validities(session, list(extensions.values()), now)
            # Last, in the batch's order: the log head is locked from the first chunk's append.
            attestation_ids = issue.store(session)
            results: list[desk_pb2.SignalResult] = []
            rows: list[feed_store.NewSignal] = []
            outcomes = iter(zip(fresh, decided, new_ids(len(fresh)), strict=True))
            for signal, new in zip(checked, is_new, strict=True):
                if not new:
                    results.append(_duplicate(known.get((signal.source, signal.source_record_id))))
                    continue
                signal, (beneficiary_id, outcome, message, position), signal_id = next(outcomes)
                attestation_id = attestation_ids[position] if position is not None else None
                rows.append(
                    feed_store.NewSignal(
                        signal_id,
                        signal.source,
                        signal.source_record_id,
                        signal.kind,
                        beneficiary_id,
                        signal.observed_at,
                        outcome,
                        attestation_id,
                    )
                )
                results.append(
                    desk_pb2.SignalResult(
                        outcome=OUTCOMES[outcome],
                        beneficiary_id=beneficiary_id or "",
                        attestation_id=attestation_id or "",
                        message=message,
                    )
                )
            feed_store.add_signals(session, rows, recorded_by=actor.name, now=now)
            self._audit(session, actor, results, issue.count, now)
        if issue.count:
            self._issuer.issued()
        return results

    def _match(
        self,
        actor: Actor,
        signal: _CheckedSignal,
        entry: feed_store.RollEntry,
        extensions: dict[str, feed_store.Extension],
    ) -> tuple[SignalOutcome, Finding | None, str]:
        """`_apply_signal` for an alive signal about a person with no suspension in effect,
        in memory: `extensions` holds the validity the batch has given each person so far. The
        finding is what the attestation will say."""
        if entry.state is EntitlementState.TERMINATED:
            return SignalOutcome.IGNORED, None, "entitlement has ended"
        if entry.termination_pending_review:
            return SignalOutcome.IGNORED, None, "a termination awaits review"
        policy = self._context.policy
        kind = signal_kind_name(signal.kind)
        if kind not in policy.extending_signal_kinds:
            return SignalOutcome.IGNORED, None, f"this office's policy does not count {kind}"
        earlier = extensions.get(entry.beneficiary_id)
        current = earlier.valid_until if earlier is not None else entry.valid_until
        valid_until = extended_validity(current, signal.observed_at, policy)
        if valid_until is None:
            return SignalOutcome.IGNORED, None, "validity already runs past this signal's reach"
        finding = self._finding(actor, signal, entry.subject_locator, entry.paying_region)
        # What PayingOffice.apply_attestation and lifecycle.certified do for this person.
        extensions[entry.beneficiary_id] = feed_store.Extension(
            entry.beneficiary_id, valid_until, signal.observed_at
        )
        return SignalOutcome.APPLIED, finding, "validity extended"

    def _audit(
        self,
        session: Session,
        actor: Actor,
        results: list[desk_pb2.SignalResult],
        attestations: int,
        now: datetime,
    ) -> None:
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
            details={**dict(sorted(counts.items())), "attestations": attestations},
            now=now,
        )

    def _record_one_at_a_time(
        self, actor: Actor, checked: list[_CheckedSignal], now: datetime, *, hold_alive: bool
    ) -> list[desk_pb2.SignalResult]:
        """Each row through the ORM and each attestation signed and stored on its own: the
        reference the bulk path must agree with (`bulk_feed = false`), and the path of a
        person's signals (`hold_alive`: alive signals that would apply are held instead)."""
        results: list[desk_pb2.SignalResult] = []
        issued: list[tuple[attestation_pb2.CertificationAttestation, str | None]] = []
        with session_scope(self._context.engine) as session:
            keys = [(signal.source, signal.source_record_id) for signal in checked]
            known = signals_store.known(session, keys)
            held = pending_signals.taken(session, keys)
            people = entitlements_store.by_roll_keys(
                session, sorted({signal.roll_key for signal in checked})
            )
            seen: set[tuple[str, str]] = set()
            for signal in checked:
                key = (signal.source, signal.source_record_id)
                earlier = known.get(key)
                if earlier is not None or key in held or key in seen:
                    results.append(_duplicate(earlier))
                    continue
                seen.add(key)
                person = people.get(signal.roll_key)
                if hold_alive and person is not None and self._would_extend(signal, *person):
                    kept = pending_signals.hold(
                        session,
                        source=signal.source,
                        source_record_id=signal.source_record_id,
                        kind=signal.kind,
                        beneficiary_id=person[0].beneficiary_id,
                        observed_at=signal.observed_at,
                        entered_by=actor.name,
                        now=now,
                    )
                    results.append(
                        desk_pb2.SignalResult(
                            outcome=desk_pb2.SIGNAL_OUTCOME_AWAITING_APPROVAL,
                            beneficiary_id=person[0].beneficiary_id,
                            message=f"{AWAITING_APPROVAL}: {kept.pending_signal_id}",
                        )
                    )
                    continue
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
            self._audit(session, actor, results, len(issued), now)
            # Last, and all at once: one append to the log for the batch (Issuer.issue).
            self._issuer.issue(session, issued, now=now)
        if issued:
            self._issuer.issued()
        return results

    def _would_extend(
        self, signal: _CheckedSignal, beneficiary: Beneficiary, entitlement: Entitlement
    ) -> bool:
        """Whether an alive signal would change the person's record (`_apply_signal`'s tests)."""
        return (
            is_alive_kind(signal.kind)
            and entitlement.state is not EntitlementState.TERMINATED
            and not entitlement.termination_pending_review
            and signal_kind_name(signal.kind) in self._context.policy.extending_signal_kinds
            and extended_validity(beneficiary.valid_until, signal.observed_at, self._context.policy)
            is not None
        )

    def _apply_signal(
        self,
        session: Session,
        actor: Actor,
        signal: _CheckedSignal,
        beneficiary: Beneficiary,
        entitlement: Entitlement,
        now: datetime,
        reviewer: str = POLICY_REVIEWER,
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
        policy = self._context.policy
        kind = signal_kind_name(signal.kind)
        if kind not in policy.extending_signal_kinds:
            return SignalOutcome.IGNORED, None, f"this office's policy does not count {kind}"
        if extended_validity(beneficiary.valid_until, signal.observed_at, policy) is None:
            return SignalOutcome.IGNORED, None, "validity already runs past this signal's reach"
        finding = self._finding(
            actor, signal, beneficiary.subject_locator, beneficiary.paying_region, reviewer
        )
        attestation = self._issuer.attestation(finding, now)
        self._paying_office.apply_attestation(session, beneficiary, attestation, now)
        return SignalOutcome.APPLIED, attestation, "validity extended"

    def _finding(
        self,
        actor: Actor,
        signal: _CheckedSignal,
        subject_locator: bytes,
        paying_region: str,
        reviewer: str = POLICY_REVIEWER,
    ) -> Finding:
        """An alive signal as this paying office's own certification of the person."""
        # The evidence is the feed record, named by its source and id (kept in data_signal).
        evidence = hashlib.sha256(
            f"{signal.source}\n{signal.source_record_id}\n{signal.kind}".encode()
        ).digest()
        return Finding(
            subject_locator=subject_locator,
            paying_node_id=self._context.node_id,
            paying_region=paying_region,
            certifying_region=paying_region,
            method=common_pb2.CERTIFICATION_METHOD_DATA_MATCH,
            outcome=common_pb2.CERTIFICATION_OUTCOME_ALIVE,
            observed_at=signal.observed_at,
            evidence_digests=[evidence],
            clerk_id=actor.name,
            reviewer_id=reviewer,
        )

    def list_pending(
        self, page_size: int, page_token: str, *, pending_only: bool
    ) -> tuple[list[desk_pb2.PendingSignal], str]:
        with self._context.session() as session:
            rows, token = pending_signals.page(
                session, page_size, page_token, pending_only=pending_only
            )
            recorded = signals_store.known(
                session, [(row.source, row.source_record_id) for row in rows]
            )
            views = [
                pending_signal_view(row, recorded.get((row.source, row.source_record_id)))
                for row in rows
            ]
        return views, token

    def decide_pending(
        self, actor: Actor, pending_signal_id: str, approve: bool, reason: str
    ) -> desk_pb2.PendingSignal:
        """A second person's decision on a held alive signal: applied as a feed's signal would
        be (the attestation's clerk is who entered it, its reviewer who approved it), or
        rejected. The person who entered it may not decide it."""
        require_text(reason, "reason", self._context.config.limits, required=not approve)
        now = self._context.now()
        issued: list[tuple[attestation_pb2.CertificationAttestation, str | None]] = []
        with session_scope(self._context.engine) as session:
            held = pending_signals.pending(session, pending_signal_id)
            if held.entered_by == actor.name:
                raise PermissionDeniedError(
                    "the operator who entered the signal may not approve or reject it; "
                    "another reviewer must decide (separation of duties)"
                )
            if not approve:
                pending_signals.decide(
                    session, held, PendingSignalDecision.REJECTED, actor.name, reason, now, {}
                )
                return pending_signal_view(held, None)
            entitlement = entitlements_store.get(session, held.beneficiary_id, for_update=True)
            beneficiary = beneficiaries.get(session, held.beneficiary_id)
            signal = _CheckedSignal(
                held.source,
                held.source_record_id,
                held.kind,
                beneficiary.subject_locator,
                held.observed_at,
            )
            outcome, attestation, message = self._apply_signal(
                session,
                Actor("operator", held.entered_by),
                signal,
                beneficiary,
                entitlement,
                now,
                reviewer=actor.name,
            )
            if attestation is not None:
                issued.append((attestation, beneficiary.beneficiary_id))
            recorded = signals_store.add(
                session,
                source=held.source,
                source_record_id=held.source_record_id,
                kind=held.kind,
                beneficiary_id=beneficiary.beneficiary_id,
                observed_at=held.observed_at,
                outcome=outcome,
                attestation_id=attestation.attestation_id if attestation else None,
                recorded_by=held.entered_by,
                now=now,
            )
            pending_signals.decide(
                session,
                held,
                PendingSignalDecision.APPLIED,
                actor.name,
                reason,
                now,
                {"outcome": outcome.value, "message": message},
            )
            view = pending_signal_view(held, recorded)
            self._issuer.issue(session, issued, now=now)
        if issued:
            self._issuer.issued()
        return view


Issued = tuple[attestation_pb2.CertificationAttestation, str | None]


class _BatchIssue:
    """The attestations of one batch in the batch's order: findings handed to the signing
    workers a chunk at a time as they are decided (`Issuer.sign_soon`), and attestations built
    here by the one-row path between them; `store` stores, queues and logs them all in order
    in the batch's transaction, a chunk as soon as it is signed."""

    def __init__(self, issuer: Issuer, now: datetime) -> None:
        self._issuer = issuer
        self._now = now
        self._findings: list[tuple[Finding, str | None]] = []
        self._parts: list[PendingBatch | list[Issued]] = []
        self.count = 0

    def add_finding(self, finding: Finding, beneficiary_id: str) -> int:
        """Queue a finding; the position of its attestation in the batch."""
        self._findings.append((finding, beneficiary_id))
        if len(self._findings) >= SIGNING_CHUNK:
            self._sign()
        self.count += 1
        return self.count - 1

    def add_built(
        self, attestation: attestation_pb2.CertificationAttestation, beneficiary_id: str
    ) -> int:
        """Queue an attestation built here; its position in the batch."""
        self._sign()
        last = self._parts[-1] if self._parts else None
        if isinstance(last, list):
            last.append((attestation, beneficiary_id))
        else:
            self._parts.append([(attestation, beneficiary_id)])
        self.count += 1
        return self.count - 1

    def store(self, session: Session) -> list[str]:
        """Sign what is left, then store, queue and log every attestation in order; their ids
        in that order. Call it last in the transaction (`Issuer.issue`)."""
        self._sign()
        attestation_ids: list[str] = []
        for part in self._parts:
            if isinstance(part, PendingBatch):
                signed = part.signed()
                self._issuer.store_signed(session, signed, self._now)
                attestation_ids.extend(row.attestation_id for row in signed.rows)
            else:
                self._issuer.issue_many(session, part, now=self._now)
                attestation_ids.extend(attestation.attestation_id for attestation, _ in part)
        return attestation_ids

    def _sign(self) -> None:
        if self._findings:
            self._parts.append(self._issuer.sign_soon(self._findings, self._now))
            self._findings = []


def pending_signal_view(held: PendingSignal, recorded: DataSignal | None) -> desk_pb2.PendingSignal:
    view = desk_pb2.PendingSignal(
        pending_signal_id=held.pending_signal_id,
        source=held.source,
        source_record_id=held.source_record_id,
        kind=desk_pb2.SignalKind.ValueType(held.kind),
        beneficiary_id=held.beneficiary_id,
        observed_at=to_timestamp(held.observed_at),
        entered_by=held.entered_by,
        entered_at=to_timestamp(held.entered_at),
        decision=PENDING_DECISIONS[held.decision],
        decided_by=held.decided_by or "",
        decision_reason=held.decision_reason,
    )
    if held.decided_at is not None:
        view.decided_at.CopyFrom(to_timestamp(held.decided_at))
    if recorded is not None:
        view.outcome = OUTCOMES[recorded.outcome]
        view.attestation_id = recorded.attestation_id or ""
    return view


PENDING_DECISIONS = {
    PendingSignalDecision.PENDING: desk_pb2.PENDING_SIGNAL_DECISION_PENDING,
    PendingSignalDecision.APPLIED: desk_pb2.PENDING_SIGNAL_DECISION_APPLIED,
    PendingSignalDecision.REJECTED: desk_pb2.PENDING_SIGNAL_DECISION_REJECTED,
}


def _duplicate(earlier: feed_store.Recorded | DataSignal | None) -> desk_pb2.SignalResult:
    return desk_pb2.SignalResult(
        outcome=desk_pb2.SIGNAL_OUTCOME_DUPLICATE,
        beneficiary_id=(earlier.beneficiary_id or "") if earlier else "",
        attestation_id=(earlier.attestation_id or "") if earlier else "",
        message="recorded before; nothing changed",
    )
