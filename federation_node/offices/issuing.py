"""Issuing attestations: the one builder of a `CertificationAttestation`, and the one path that
signs, stores, sends and logs it.

A reviewer's approval at the desk (certifying.py: for a residence agency's request or walk-in,
or a paying office's own beneficiary) and a data match at the paying office (data_signals.py)
both describe what was found as a `Finding`; `Issuer.attestation` turns it into the attestation,
with the validity this node's policy states, and `Issuer.issue` signs it, stores it, queues its
delivery to the paying office when that is another node and appends it to the transparency log,
in the caller's transaction. When this node is the paying office, the caller applies the
attestation in the same transaction (`PayingOffice.apply_attestation`), by the paying office's
rule, exactly as a peer's attestation is applied on receipt.

`Issuer.issue_many` does the same for a large batch (a feed's data matches), set-based: signed
on worker processes when the batch pays for them (signing_pool.py), stored in one bulk insert,
queued for remote paying offices in another and appended to the log in one append, so the log
head is locked once per batch. A caller issuing batch after batch (`certfed bench issue`) splits
it in two: `sign_soon` hands the next batch's findings to the workers, which build, serialise
and sign each attestation (with `attestation_of`, the builder `Issuer.attestation` uses) and
send back only its id and bytes, while `store_signed` stores the previous one in its own
transaction, so a crash loses or repeats no part of a batch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from operator import attrgetter
from typing import NamedTuple

import structlog
from google.protobuf import timestamp_pb2
from sqlmodel import Session

from certfed.v1 import attestation_pb2, common_pb2
from federation.timestamps import to_datetime, to_timestamp
from federation_node.ids import new_id, new_ids
from federation_node.offices import signing_pool
from federation_node.offices.context import NodeContext, payload_digest
from federation_node.rules.entitlement import add_months
from federation_node.rules.policy import Policy
from federation_node.store import attestations_store, log_store, outbox
from federation_node.store.log_store import NewEntry
from federation_node.store.models import OutboxKind
from signing import dsse
from signing.keys import SigningKey

log = structlog.get_logger("certfed.node")


@dataclass(frozen=True)
class Finding:
    """What a certification found about a person, before it is signed."""

    subject_locator: bytes
    paying_node_id: str
    paying_region: str
    certifying_region: str
    method: common_pb2.CertificationMethod.ValueType
    outcome: common_pb2.CertificationOutcome.ValueType
    observed_at: datetime
    evidence_digests: Sequence[bytes]
    clerk_id: str
    reviewer_id: str
    # The assistance request this answers; None for a walk-in or a data match.
    request_id: str | None = None
    # An attestation this node issued that this one corrects (offices/corrections.py).
    corrects_attestation_id: str | None = None


def attested_validity(
    outcome: common_pb2.CertificationOutcome.ValueType, observed_at: datetime, policy: Policy
) -> datetime:
    """The end of what an attestation certifies: an alive person for the policy's validity
    period from the day they were seen; any other outcome only on that day."""
    if outcome == common_pb2.CERTIFICATION_OUTCOME_ALIVE:
        return _months_after(observed_at, policy.validity_months)
    return observed_at


@lru_cache(maxsize=4096)
def _months_after(moment: datetime, months: int) -> datetime:
    # A feed's rows fall on few distinct moments: the calendar arithmetic once for each.
    return add_months(moment, months)


def attestation_of(
    finding: Finding,
    *,
    attestation_id: str,
    issuing_node_id: str,
    certifying_agency: str,
    valid_until: datetime,
    issued_at: datetime,
    stamp: Callable[[datetime], timestamp_pb2.Timestamp] = to_timestamp,
) -> attestation_pb2.CertificationAttestation:
    """The attestation of `finding`, not yet signed: the one builder, in this process or a
    signing worker (`stamp` converts the moments; a worker remembers its batch's few)."""
    return attestation_pb2.CertificationAttestation(
        attestation_id=attestation_id,
        subject_locator=finding.subject_locator,
        paying_region=finding.paying_region,
        paying_node_id=finding.paying_node_id,
        issuing_node_id=issuing_node_id,
        certifying_region=finding.certifying_region,
        certifying_agency=certifying_agency,
        method=finding.method,
        outcome=finding.outcome,
        observed_at=stamp(finding.observed_at),
        valid_until=stamp(valid_until),
        evidence_digests=list(finding.evidence_digests),
        clerk_id=finding.clerk_id,
        reviewer_id=finding.reviewer_id,
        assistance_request_id=finding.request_id or "",
        corrects_attestation_id=finding.corrects_attestation_id or "",
        issued_at=stamp(issued_at),
    )


class Issuer:
    """Builds, signs, stores, sends and logs the attestations this node issues."""

    def __init__(self, context: NodeContext) -> None:
        self._context = context

    def attestation(
        self, finding: Finding, now: datetime
    ) -> attestation_pb2.CertificationAttestation:
        """The attestation of `finding`, under a new id, not yet signed."""
        return attestation_of(
            finding,
            attestation_id=new_id(),
            issuing_node_id=self._context.node_id,
            certifying_agency=self._certifying_agency(),
            valid_until=attested_validity(
                finding.outcome, finding.observed_at, self._context.policy
            ),
            issued_at=now,
        )

    def _certifying_agency(self) -> str:
        config = self._context.config
        return config.certifying_agency or config.display_name

    def issue(
        self,
        session: Session,
        issued: Sequence[tuple[attestation_pb2.CertificationAttestation, str | None]],
        *,
        now: datetime,
    ) -> None:
        """Sign, store, send and log attestations (each with the paying office's beneficiary
        id when this node is that office), in the caller's transaction, with one log append
        for all of them.

        Call it last in the transaction, so the log head is locked only until the commit; the
        attestations and their log positions commit together. After the commit, call
        `issued`.
        """
        entries = [
            self._sign_and_store(session, attestation, beneficiary_id, now)
            for attestation, beneficiary_id in issued
        ]
        if len(entries) == 1:
            log_store.append(session, entries[0])
        elif entries:
            log_store.append_many(session, entries)

    def issue_many(
        self,
        session: Session,
        issued: Sequence[tuple[attestation_pb2.CertificationAttestation, str | None]],
        *,
        now: datetime,
    ) -> None:
        """What `issue` does, set-based for a batch: signed in worker processes when the
        batch is large enough to pay for them (signing_pool), stored in one bulk insert,
        queued for remote paying offices in another, appended to the log in one append. Call
        it last in the transaction, as `issue`."""
        if not issued:
            return
        # Read once: a key rotation may swap the context's keys between two reads.
        signing = self._context.keys.signing
        node_id = self._context.node_id
        payloads = [attestation.SerializeToString(deterministic=True) for attestation, _ in issued]
        signed = signing_pool.sign_attestations(signing, payloads)
        moment = _MomentReader()
        rows = [
            IssuedRow(
                attestation.attestation_id,
                envelope_json,
                payload_digest(payload),
                attestation.paying_node_id != node_id,
                attestation.paying_node_id,
                attestation.paying_region,
                attestation.subject_locator,
                beneficiary_id,
                attestation.assistance_request_id or None,
                attestation.method,
                attestation.outcome,
                moment(attestation.observed_at),
                moment(attestation.valid_until),
                attestation.corrects_attestation_id or None,
            )
            for (attestation, beneficiary_id), payload, envelope_json in zip(
                issued, payloads, signed, strict=True
            )
        ]
        self.store_signed(session, SignedBatch(rows, signing.key_id), now)

    def sign_soon(
        self, findings: Sequence[tuple[Finding, str | None]], now: datetime
    ) -> PendingBatch:
        """Start building and signing the attestations of a batch of findings (each with the
        paying office's beneficiary id when this node is that office), issued at `now`, on the
        worker processes; `PendingBatch.signed` waits for them. A caller issuing batch after
        batch stores one while the next is signed."""
        # Read once: a key rotation may swap the context's keys between two reads.
        signing = self._context.keys.signing
        node_id = self._context.node_id
        policy = self._context.policy
        header = _Header(node_id, self._certifying_agency(), now)
        shipped: list[_Shipped] = []
        kept: list[_Kept] = []
        for finding, beneficiary_id in findings:
            valid_until = attested_validity(finding.outcome, finding.observed_at, policy)
            shipped.append((_fields(finding), valid_until))
            kept.append(
                (
                    finding.paying_node_id != node_id,
                    finding.paying_node_id,
                    finding.paying_region,
                    finding.subject_locator,
                    beneficiary_id,
                    finding.request_id or None,
                    finding.method,
                    finding.outcome,
                    finding.observed_at,
                    valid_until,
                    finding.corrects_attestation_id or None,
                )
            )
        signing_soon = signing_pool.sign_soon(_sign_findings, signing, header, shipped)
        return PendingBatch(kept, signing.key_id, signing_soon)

    def warm_up(self) -> None:
        """Start the signing workers now, ready for `sign_soon`, rather than at the first
        batch (a node that issues in bulk calls it as it starts)."""
        signing_pool.warm_up(self._context.keys.signing, __name__)

    def store_signed(self, session: Session, batch: SignedBatch, now: datetime) -> None:
        """Store, queue and log a signed batch in the caller's transaction (`issue_many`'s
        second half); call it last in the transaction."""
        rows = batch.rows
        if not rows:
            return
        attestations_store.store_issued_many(
            session,
            (
                (
                    row.attestation_id,
                    row.envelope_json,
                    row.paying_node_id,
                    row.subject_locator,
                    row.beneficiary_id,
                    row.request_id,
                    row.method,
                    row.outcome,
                    row.observed_at,
                    row.valid_until,
                    row.payload_sha256,
                    row.corrects_attestation_id,
                )
                for row in rows
            ),
            issuing_node_id=self._context.node_id,
            signing_key_id=batch.signing_key_id,
            now=now,
        )
        outbox.enqueue_many(
            session,
            kind=OutboxKind.DELIVER_LOGGED_ATTESTATION,
            messages=(
                # Built from the log when it goes (links/carried_proofs.py).
                (row.paying_node_id, row.attestation_id, b"")
                for row in rows
                if row.remote
            ),
            now=now,
        )
        log_store.append_many(
            session,
            (NewEntry(row.attestation_id, row.envelope_json, row.paying_region) for row in rows),
        )
        log.info("attestations.issued", count=len(rows))

    def issued(self) -> None:
        """After a transaction that issued attestations commits: wake the dispatcher and the
        log's checkpointing."""
        self._context.on_enqueued()
        self._context.on_log_appended()

    def _sign_and_store(
        self,
        session: Session,
        attestation: attestation_pb2.CertificationAttestation,
        beneficiary_id: str | None,
        now: datetime,
    ) -> NewEntry:
        node_id = self._context.node_id
        payload = attestation.SerializeToString(deterministic=True)
        # Read once: a key rotation may swap the context's keys between two reads.
        signing = self._context.keys.signing
        envelope = dsse.sign(payload, dsse.ATTESTATION_PAYLOAD_TYPE, signing)
        envelope_json = envelope.to_json()
        attestations_store.store_issued(
            session,
            attestations_store.AttestationFacts(
                attestation_id=attestation.attestation_id,
                envelope_json=envelope_json,
                issuing_node_id=node_id,
                paying_node_id=attestation.paying_node_id,
                subject_locator=attestation.subject_locator,
                beneficiary_id=beneficiary_id,
                request_id=attestation.assistance_request_id or None,
                method=attestation.method,
                outcome=attestation.outcome,
                observed_at=to_datetime(attestation.observed_at),
                valid_until=to_datetime(attestation.valid_until),
                signing_key_id=signing.key_id,
                payload_sha256=payload_digest(payload),
                corrects_attestation_id=attestation.corrects_attestation_id or None,
            ),
            now,
        )
        if attestation.paying_node_id != node_id:
            self._enqueue_delivery(session, attestation, now)
        log.info(
            "attestation.issued",
            attestation_id=attestation.attestation_id,
            to=attestation.paying_node_id,
        )
        return NewEntry(attestation.attestation_id, envelope_json, attestation.paying_region)

    def _enqueue_delivery(
        self,
        session: Session,
        attestation: attestation_pb2.CertificationAttestation,
        now: datetime,
    ) -> None:
        """Queue the attestation for the paying office, another node; the delivery is built
        from the log when it goes (links/carried_proofs.py)."""
        outbox.enqueue(
            session,
            kind=OutboxKind.DELIVER_LOGGED_ATTESTATION,
            destination=attestation.paying_node_id,
            subject_id=attestation.attestation_id,
            payload=b"",
            now=now,
        )


class IssuedRow(NamedTuple):
    """A signed attestation as the bulk path stores it: its bytes and the facts kept beside
    them (`remote`: its paying office is another node, which it is queued for)."""

    attestation_id: str
    envelope_json: bytes
    payload_sha256: str
    remote: bool
    paying_node_id: str
    paying_region: str
    subject_locator: bytes
    beneficiary_id: str | None
    request_id: str | None
    method: int
    outcome: int
    observed_at: datetime
    valid_until: datetime
    corrects_attestation_id: str | None


@dataclass(frozen=True)
class SignedBatch:
    """Signed attestations ready to store, and the key that signed them."""

    rows: Sequence[IssuedRow]
    signing_key_id: str


# A finding's fields in declaration order, what `Finding(*fields)` takes back: a worker gets a
# tuple (it pickles in a fraction of the time a dataclass does), and one of immutable values
# only, which the garbage collector stops tracking, as it does the other per-row tuples here:
# a batch of objects it tracks would make each full collection scan them all.
_finding_fields = attrgetter(*(field.name for field in dataclasses.fields(Finding)))
_EVIDENCE = [field.name for field in dataclasses.fields(Finding)].index("evidence_digests")


def _fields(finding: Finding) -> tuple[object, ...]:
    fields = _finding_fields(finding)
    if isinstance(finding.evidence_digests, tuple):
        return fields
    evidence = tuple(finding.evidence_digests)
    return (*fields[:_EVIDENCE], evidence, *fields[_EVIDENCE + 1 :])


# What a worker gets of a finding: its fields and its validity.
_Shipped = tuple[tuple[object, ...], datetime]
# What the issuing process keeps of it for the store: IssuedRow's fields from remote.
_Kept = tuple[
    bool, str, str, bytes, str | None, str | None, int, int, datetime, datetime, str | None
]
# What a worker sends back of each attestation: its id, envelope JSON and the hex SHA-256 of
# its payload.
_Built = tuple[str, bytes, str]


class _Header(NamedTuple):
    """What every attestation of a batch shares."""

    issuing_node_id: str
    certifying_agency: str
    issued_at: datetime


def _sign_findings(key: SigningKey, header: _Header, rows: Sequence[_Shipped]) -> list[_Built]:
    """In a signing worker: each attestation built, serialised and signed."""
    stamp = _StampWriter()
    built = []
    for (fields, valid_until), attestation_id in zip(rows, new_ids(len(rows)), strict=True):
        attestation = attestation_of(
            Finding(*fields),  # type: ignore[arg-type]
            attestation_id=attestation_id,
            issuing_node_id=header.issuing_node_id,
            certifying_agency=header.certifying_agency,
            valid_until=valid_until,
            issued_at=header.issued_at,
            stamp=stamp,
        )
        payload = attestation.SerializeToString(deterministic=True)
        envelope_json = signing_pool.signed(key, payload)
        built.append((attestation_id, envelope_json, payload_digest(payload)))
    return built


@dataclass(frozen=True)
class PendingBatch:
    """A batch whose building and signing `Issuer.sign_soon` started."""

    kept: Sequence[_Kept]
    signing_key_id: str
    signing: signing_pool.Signing[_Built]

    def signed(self) -> SignedBatch:
        rows = [
            IssuedRow._make((*built, *facts))
            for built, facts in zip(self.signing.result(), self.kept, strict=True)
        ]
        return SignedBatch(rows, self.signing_key_id)


class _MomentReader:
    """`to_datetime`, remembering the moments of one batch."""

    def __init__(self) -> None:
        self._seen: dict[tuple[int, int], datetime] = {}

    def __call__(self, stamp: timestamp_pb2.Timestamp) -> datetime:
        key = (stamp.seconds, stamp.nanos)
        found = self._seen.get(key)
        if found is None:
            found = self._seen[key] = to_datetime(stamp)
        return found


class _StampWriter:
    """`to_timestamp`, remembering the moments of one batch."""

    def __init__(self) -> None:
        self._seen: dict[datetime, timestamp_pb2.Timestamp] = {}

    def __call__(self, moment: datetime) -> timestamp_pb2.Timestamp:
        found = self._seen.get(moment)
        if found is None:
            found = self._seen[moment] = to_timestamp(moment)
        return found
