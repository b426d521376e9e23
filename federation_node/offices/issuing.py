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
it in two: `sign_soon` starts the next batch signing on the workers while `store_signed` stores
the previous one in its own transaction, so a crash loses or repeats no part of a batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

import structlog
from google.protobuf import timestamp_pb2
from sqlmodel import Session

from certfed.v1 import attestation_pb2, common_pb2
from federation.timestamps import to_datetime, to_timestamp
from federation_node.ids import new_id
from federation_node.offices import signing_pool
from federation_node.offices.context import NodeContext, payload_digest
from federation_node.rules.entitlement import add_months
from federation_node.rules.policy import Policy
from federation_node.store import attestations_store, log_store, outbox
from federation_node.store.log_store import NewEntry
from federation_node.store.models import OutboxKind
from signing import dsse

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


class Issuer:
    """Builds, signs, stores, sends and logs the attestations this node issues."""

    def __init__(self, context: NodeContext) -> None:
        self._context = context

    def attestation(
        self, finding: Finding, now: datetime
    ) -> attestation_pb2.CertificationAttestation:
        """The attestation of `finding`, under a new id, not yet signed."""
        config = self._context.config
        valid_until = attested_validity(finding.outcome, finding.observed_at, self._context.policy)
        return attestation_pb2.CertificationAttestation(
            attestation_id=new_id(),
            subject_locator=finding.subject_locator,
            paying_region=finding.paying_region,
            paying_node_id=finding.paying_node_id,
            issuing_node_id=self._context.node_id,
            certifying_region=finding.certifying_region,
            certifying_agency=config.certifying_agency or config.display_name,
            method=finding.method,
            outcome=finding.outcome,
            observed_at=to_timestamp(finding.observed_at),
            valid_until=to_timestamp(valid_until),
            evidence_digests=list(finding.evidence_digests),
            clerk_id=finding.clerk_id,
            reviewer_id=finding.reviewer_id,
            assistance_request_id=finding.request_id or "",
            corrects_attestation_id=finding.corrects_attestation_id or "",
            issued_at=to_timestamp(now),
        )

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
        signing = self._context.keys.signing
        payloads = _payloads(issued)
        signed = signing_pool.sign_attestations(signing, payloads, self._remote(issued))
        self.store_signed(session, SignedBatch(issued, payloads, signed, signing.key_id), now)

    def sign_soon(
        self, issued: Sequence[tuple[attestation_pb2.CertificationAttestation, str | None]]
    ) -> PendingBatch:
        """Start signing a batch on the worker processes; `PendingBatch.signed` waits for it.
        A caller issuing batch after batch stores one while the next is signed."""
        # Read once: a key rotation may swap the context's keys between two reads.
        signing = self._context.keys.signing
        payloads = _payloads(issued)
        signing_soon = signing_pool.sign_attestations_soon(signing, payloads, self._remote(issued))
        return PendingBatch(issued, payloads, signing.key_id, signing_soon)

    def _remote(
        self, issued: Sequence[tuple[attestation_pb2.CertificationAttestation, str | None]]
    ) -> list[bool]:
        node_id = self._context.node_id
        return [attestation.paying_node_id != node_id for attestation, _ in issued]

    def store_signed(self, session: Session, batch: SignedBatch, now: datetime) -> None:
        """Store, queue and log a signed batch in the caller's transaction (`issue_many`'s
        second half); call it last in the transaction."""
        if not batch.issued:
            return
        node_id = self._context.node_id
        facts = []
        entries = []
        remote = []
        # A batch repeats its moments (a feed's days, one validity per day): each read once.
        moment = _MomentReader()
        for (attestation, beneficiary_id), payload, (envelope_json, delivery) in zip(
            batch.issued, batch.payloads, batch.signed, strict=True
        ):
            facts.append(
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
                    observed_at=moment(attestation.observed_at),
                    valid_until=moment(attestation.valid_until),
                    signing_key_id=batch.signing_key_id,
                    payload_sha256=payload_digest(payload),
                    corrects_attestation_id=attestation.corrects_attestation_id or None,
                )
            )
            entries.append(
                NewEntry(attestation.attestation_id, envelope_json, attestation.paying_region)
            )
            if delivery:
                remote.append((attestation.paying_node_id, attestation.attestation_id, delivery))
        attestations_store.store_issued_many(session, facts, now)
        if remote:
            outbox.enqueue_many(
                session, kind=OutboxKind.DELIVER_ATTESTATION, messages=remote, now=now
            )
        log_store.append_many(session, entries)
        log.info("attestations.issued", count=len(entries))

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
            self._enqueue_delivery(session, attestation, envelope, now)
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
        envelope: dsse.Envelope,
        now: datetime,
    ) -> None:
        """Queue the attestation for the paying office, another node."""
        outbox.enqueue(
            session,
            kind=OutboxKind.DELIVER_ATTESTATION,
            destination=attestation.paying_node_id,
            subject_id=attestation.attestation_id,
            payload=signing_pool.delivery(envelope),
            now=now,
        )


@dataclass(frozen=True)
class SignedBatch:
    """Attestations (each with the paying office's beneficiary id when this node is that
    office), their payloads, envelopes and deliveries (signing_pool.Signed), and the key that
    signed them."""

    issued: Sequence[tuple[attestation_pb2.CertificationAttestation, str | None]]
    payloads: Sequence[bytes]
    signed: Sequence[signing_pool.Signed]
    signing_key_id: str


@dataclass(frozen=True)
class PendingBatch:
    """A batch whose signing `Issuer.sign_soon` started."""

    issued: Sequence[tuple[attestation_pb2.CertificationAttestation, str | None]]
    payloads: Sequence[bytes]
    signing_key_id: str
    signing: signing_pool.Signing

    def signed(self) -> SignedBatch:
        return SignedBatch(self.issued, self.payloads, self.signing.result(), self.signing_key_id)


def _payloads(
    issued: Sequence[tuple[attestation_pb2.CertificationAttestation, str | None]],
) -> list[bytes]:
    return [attestation.SerializeToString(deterministic=True) for attestation, _ in issued]


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
