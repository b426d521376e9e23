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
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import structlog
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from certfed.v1 import attestation_pb2, common_pb2, desk_pb2
from federation.errors import InvalidInputError
from federation.timestamps import to_datetime
from federation_node.ids import new_id
from federation_node.offices.context import Actor, NodeContext
from federation_node.offices.issuing import Finding, Issuer
from federation_node.offices.lifecycle import NEGATIVE_STATUSES, entitlement_updated, withhold
from federation_node.offices.paying_office import PayingOffice
from federation_node.rules.entitlement import EntitlementState, extended_validity, month_start
from federation_node.rules.validation import identity_kind, require_past, require_text
from federation_node.store import audit, entitlements_store, signals_store
from federation_node.store.db import session_scope
from federation_node.store.models import Beneficiary, Entitlement, SignalOutcome
from signing.errors import InvalidIdentityNumberError
from signing.identity import validate_identity_number
from signing.locator import subject_locator

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
    locator: bytes
    observed_at: datetime


class DataSignals:
    """Imports a feed's signals: each recorded once, applied to the beneficiary it names."""

    def __init__(self, context: NodeContext, issuer: Issuer, paying_office: PayingOffice) -> None:
        self._context = context
        self._issuer = issuer
        self._paying_office = paying_office

    def record_signals(
        self, actor: Actor, signals: Sequence[desk_pb2.DataSignal]
    ) -> list[desk_pb2.SignalResult]:
        limits = self._context.config.limits
        if not signals:
            raise InvalidInputError("signals", "give at least one signal")
        if len(signals) > limits.max_repeated:
            raise InvalidInputError(
                "signals", f"has {len(signals)} items; the limit is {limits.max_repeated}"
            )
        now = self._context.now()
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
            subject_locator(self._context.keys.locator_key, kind, number),
            observed_at,
        )

    def _record_checked(
        self, actor: Actor, checked: list[_CheckedSignal], now: datetime
    ) -> list[desk_pb2.SignalResult]:
        results: list[desk_pb2.SignalResult] = []
        issued: list[tuple[attestation_pb2.CertificationAttestation, str | None]] = []
        with session_scope(self._context.engine) as session:
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
            # Last, and all at once: one append to the log for the batch (Issuer.issue).
            self._issuer.issue(session, issued, now=now)
        if issued:
            self._issuer.issued()
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
        policy = self._context.policy
        kind = signal_kind_name(signal.kind)
        if kind not in policy.extending_signal_kinds:
            return SignalOutcome.IGNORED, None, f"this office's policy does not count {kind}"
        if extended_validity(beneficiary.valid_until, signal.observed_at, policy) is None:
            return SignalOutcome.IGNORED, None, "validity already runs past this signal's reach"
        attestation = self._issuer.attestation(self._data_match(actor, signal, beneficiary), now)
        self._paying_office.apply_attestation(session, beneficiary, attestation, now)
        return SignalOutcome.APPLIED, attestation, "validity extended"

    def _data_match(
        self, actor: Actor, signal: _CheckedSignal, beneficiary: Beneficiary
    ) -> Finding:
        """An alive signal as this paying office's own certification of the person."""
        # The evidence is the feed record, named by its source and id (kept in data_signal).
        evidence = hashlib.sha256(
            f"{signal.source}\n{signal.source_record_id}\n{signal.kind}".encode()
        ).digest()
        return Finding(
            subject_locator=beneficiary.subject_locator,
            paying_node_id=self._context.node_id,
            paying_region=beneficiary.paying_region,
            certifying_region=beneficiary.paying_region,
            method=common_pb2.CERTIFICATION_METHOD_DATA_MATCH,
            outcome=common_pb2.CERTIFICATION_OUTCOME_ALIVE,
            observed_at=signal.observed_at,
            evidence_digests=[evidence],
            clerk_id=actor.name,
            reviewer_id=POLICY_REVIEWER,
        )
