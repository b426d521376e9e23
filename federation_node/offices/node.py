"""The node's domain operations: one method per thing a clerk or a peer can do.

Each operation validates what the store cannot, then runs in one transaction that writes the state
change, the outbox message announcing it and the audit record together (transactional outbox), so
a crash at any point leaves either all of it or none. Servicers call these and map the result;
nothing here knows about gRPC beyond the generated message types it builds.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from dateutil.relativedelta import relativedelta
from google.protobuf.message import DecodeError
from sqlalchemy.engine import Engine
from sqlmodel import Session

from certfed.v1 import (
    attestation_pb2,
    common_pb2,
    desk_pb2,
    directory_pb2,
    federation_pb2,
    registry_pb2,
)
from federation.envelopes import envelope_from_proto, envelope_to_proto
from federation.errors import (
    InvalidInputError,
    NotFoundError,
    NotOurBeneficiaryError,
    PermissionDeniedError,
    PreconditionError,
    UnknownSigningKeyError,
)
from federation.regions import coverage
from federation.timestamps import optional_datetime, to_datetime, to_timestamp
from federation_node.config import NodeConfig
from federation_node.ids import new_id
from federation_node.keystore import NodeKeys
from federation_node.links.directory_client import DirectoryClient
from federation_node.offices import lifecycle, revocation_review
from federation_node.rules.minimisation import minimised
from federation_node.rules.policy import Policy
from federation_node.rules.validation import (
    IDENTITY_TYPES,
    checked_identity,
    normalised_identity,
    require_digests,
    require_enum,
    require_future,
    require_id,
    require_locator,
    require_methods,
    require_node_id,
    require_past,
    require_region,
    require_sequence,
    require_text,
)
from federation_node.store import (
    assistance,
    attestations_store,
    audit,
    beneficiaries,
    certifications,
    db,
    entitlements_store,
    log_store,
    outbox,
)
from federation_node.store.db import session_scope
from federation_node.store.log_store import NewEntry
from federation_node.store.models import (
    AssistanceRequest,
    AssistanceState,
    Attestation,
    Beneficiary,
    BeneficiaryState,
    Certification,
    IdentityType,
    OutboxKind,
    OutboxMessage,
    RequestDirection,
)
from federation_node.tlog.attestation import verify_attestation_envelope
from signing import dsse, sealing
from signing.identity import IdentityKind, mask_identity_number
from signing.locator import subject_locator

log = structlog.get_logger("certfed.node")

REGISTRY_DESTINATION = "registry"
OUTCOME_STATES = {
    common_pb2.CERTIFICATION_OUTCOME_DECEASED: BeneficiaryState.DECEASED,
    common_pb2.CERTIFICATION_OUTCOME_IMPRISONED: BeneficiaryState.IMPRISONED,
    common_pb2.CERTIFICATION_OUTCOME_DECLARED_MISSING: BeneficiaryState.DECLARED_MISSING,
}
STATUS_STATES = {
    common_pb2.ASSISTANCE_STATUS_ACCEPTED: AssistanceState.ACCEPTED,
    common_pb2.ASSISTANCE_STATUS_SCHEDULED: AssistanceState.SCHEDULED,
    common_pb2.ASSISTANCE_STATUS_DECLINED: AssistanceState.DECLINED,
    common_pb2.ASSISTANCE_STATUS_COMPLETED: AssistanceState.COMPLETED,
}
STATE_STATUSES = {state: status for status, state in STATUS_STATES.items()} | {
    AssistanceState.QUEUED: common_pb2.ASSISTANCE_STATUS_QUEUED,
    AssistanceState.RECEIVED: common_pb2.ASSISTANCE_STATUS_RECEIVED,
}


@dataclass(frozen=True)
class Actor:
    """Who performs an operation: an operator of this node, or a peer node."""

    kind: str
    name: str

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.name}"


@dataclass(frozen=True)
class ReceivedAttestation:
    attestation: Attestation
    duplicate: bool
    valid_until: datetime | None


@dataclass(frozen=True)
class _Registration:
    new: beneficiaries.NewBeneficiary
    amount: int


def payload_digest(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


class Node:
    """A running node's domain: its configuration, keys, store and view of the federation."""

    def __init__(
        self,
        config: NodeConfig,
        keys: NodeKeys,
        engine: Engine,
        directory: DirectoryClient,
        locate: Callable[[bytes], list[str]],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_enqueued: Callable[[], None] = lambda: None,
        on_log_appended: Callable[[], None] = lambda: None,
        policy: Policy | None = None,
    ) -> None:
        self.config = config
        self.policy = policy or Policy()
        self.keys = keys
        self.engine = engine
        self._reader = db.reader(engine)
        self.directory = directory
        self._locate = locate
        self._clock = clock
        self.on_enqueued = on_enqueued
        self.on_log_appended = on_log_appended

    @property
    def node_id(self) -> str:
        return self.config.node_id

    def now(self) -> datetime:
        return self._clock()

    def session(self) -> Session:
        """A read-only view; writes go through the operations below."""
        return Session(self._reader)

    def _require_role(self, roles: set[str], what: str) -> None:
        if not roles.intersection(self.config.roles):
            raise PreconditionError(f"this node ({', '.join(self.config.roles)}) does not {what}")

    # Beneficiaries (paying office).

    def register_beneficiary(
        self, actor: Actor, request: desk_pb2.RegisterBeneficiaryRequest
    ) -> Beneficiary:
        return self._register(actor, [request], "")[0]

    def register_beneficiaries(
        self, actor: Actor, requests: Sequence[desk_pb2.RegisterBeneficiaryRequest]
    ) -> list[Beneficiary]:
        """Register a batch of people (an office's roll), all or none, publishing their
        locators to the registry in one message instead of one per person."""
        limits = self.config.limits
        if not requests:
            raise InvalidInputError("beneficiaries", "give at least one beneficiary")
        if len(requests) > limits.max_repeated:
            raise InvalidInputError(
                "beneficiaries", f"has {len(requests)} items; the limit is {limits.max_repeated}"
            )
        return self._register(actor, requests, "beneficiaries[{index}].")

    def _register(
        self,
        actor: Actor,
        requests: Sequence[desk_pb2.RegisterBeneficiaryRequest],
        prefix: str,
    ) -> list[Beneficiary]:
        self._require_role({"paying_office", "partner_liaison"}, "pay pensions")
        now = self.now()
        prepared = [
            self._registration(request, prefix.format(index=index), now)
            for index, request in enumerate(requests)
        ]
        publish = registry_pb2.PublishLocatorsRequest(
            locators=[p.new.subject_locator for p in prepared]
        )
        with session_scope(self.engine) as session:
            if len(prepared) == 1:
                added = [beneficiaries.add(session, **dataclasses.asdict(prepared[0].new), now=now)]
            else:
                added = beneficiaries.add_batch(session, [p.new for p in prepared], now)
            for beneficiary, registration in zip(added, prepared, strict=True):
                entitlements_store.open_for(
                    session, beneficiary.beneficiary_id, registration.amount, now
                )
            first = added[0]
            if len(added) == 1:
                details: dict[str, str | int | bool | list[str] | None] = {
                    "residence_region": first.residence_region,
                    "paying_region": first.paying_region,
                }
            else:
                details = {"beneficiary_ids": [b.beneficiary_id for b in added]}
            audit.append(
                session,
                actor=actor.label,
                action="beneficiary.register" if len(added) == 1 else "beneficiary.register_batch",
                subject_type="beneficiary",
                subject_id=first.beneficiary_id,
                details=details,
                now=now,
            )
            outbox.enqueue(
                session,
                kind=OutboxKind.PUBLISH_LOCATORS,
                destination=REGISTRY_DESTINATION,
                subject_id=first.beneficiary_id,
                payload=publish.SerializeToString(),
                now=now,
            )
        self.on_enqueued()
        return added

    def _registration(
        self, request: desk_pb2.RegisterBeneficiaryRequest, prefix: str, now: datetime
    ) -> _Registration:
        """A registration checked and sealed, ready to store; errors name `prefix` + field."""
        limits = self.config.limits
        kind, number = normalised_identity(request.identity, f"{prefix}identity", limits)
        residence = require_region(request.residence_region, f"{prefix}residence_region")
        paying_region = request.paying_region or self.config.primary_region
        if paying_region not in self.config.region_codes:
            raise InvalidInputError(
                f"{prefix}paying_region",
                f"this node pays for {', '.join(self.config.region_codes)} only",
            )
        valid_until = optional_datetime(request, "valid_until")
        amount = request.monthly_amount_fen
        if not 0 <= amount <= limits.max_monthly_amount_fen:
            raise InvalidInputError(
                f"{prefix}monthly_amount_fen",
                f"must be between 0 and {limits.max_monthly_amount_fen} fen",
            )
        locator = subject_locator(self.keys.locator_key, kind, number)
        bundle = attestation_pb2.IdentityBundle()
        bundle.CopyFrom(request.identity)
        bundle.identity_number = number
        # Sealed at rest to this node's own HPKE key, bound to the person's locator: a sealed
        # identity moved onto another beneficiary's row does not open.
        sealed = sealing.seal(
            bundle.SerializeToString(deterministic=True),
            self.keys.hpke.public_raw,
            sealing.at_rest_info(locator.hex()),
        )
        new = beneficiaries.NewBeneficiary(
            subject_locator=locator,
            identity_type=IdentityType(kind.value),
            masked_identity_number=mask_identity_number(kind, number),
            sealed_identity=sealed,
            residence_region=residence,
            paying_region=paying_region,
            valid_until=valid_until,
        )
        return _Registration(new, amount)

    def beneficiary_identity(self, beneficiary: Beneficiary) -> attestation_pb2.IdentityBundle:
        """The beneficiary's identity, unsealed: for a notifier or a sealed request only."""
        return self._identity_of(beneficiary)

    def _identity_of(self, beneficiary: Beneficiary) -> attestation_pb2.IdentityBundle:
        plain = sealing.open_sealed(
            beneficiary.sealed_identity,
            self.keys.hpke,
            sealing.at_rest_info(beneficiary.subject_locator.hex()),
        )
        return attestation_pb2.IdentityBundle.FromString(plain)

    # Flow 1 at the paying office: ask the residence region's node for help.

    def request_certification(
        self, actor: Actor, request: desk_pb2.RequestCertificationRequest
    ) -> AssistanceRequest:
        limits = self.config.limits
        require_id(request.beneficiary_id, "beneficiary_id")
        if not request.HasField("deadline"):
            raise InvalidInputError("deadline", "is required")
        now = self.now()
        deadline = require_future(to_datetime(request.deadline, "deadline"), "deadline", now)
        methods = [
            common_pb2.CertificationMethod.ValueType(m)
            for m in require_methods(list(request.acceptable_methods), "acceptable_methods")
        ]
        note = require_text(request.note, "note", limits)
        with self.session() as session:
            beneficiary = beneficiaries.get(session, request.beneficiary_id)
        if beneficiary.status != BeneficiaryState.ACTIVE:
            raise PreconditionError(
                f"beneficiary {beneficiary.beneficiary_id} is {beneficiary.status.value}; "
                "no certification is needed"
            )
        target = self.directory.current().route(beneficiary.residence_region)
        if target.node_id == self.node_id:
            raise PreconditionError(
                f"this node certifies residents of {beneficiary.residence_region} itself; "
                "record the certification at this desk instead"
            )
        with session_scope(self.engine) as session:
            beneficiary = beneficiaries.get(session, request.beneficiary_id)
            created = self.queue_assistance_request(
                session,
                actor,
                beneficiary,
                target,
                deadline=deadline,
                methods=methods,
                note=note,
                now=now,
            )
        self.on_enqueued()
        return created

    def queue_assistance_request(
        self,
        session: Session,
        actor: Actor,
        beneficiary: Beneficiary,
        target: directory_pb2.DirectoryNode,
        *,
        deadline: datetime,
        methods: list[common_pb2.CertificationMethod.ValueType],
        note: str,
        now: datetime,
    ) -> AssistanceRequest:
        """Record an assistance request to `target` and queue it in the caller's transaction:
        the one path for a clerk's request and the daily cycle's."""
        request_id = new_id()
        # Only what the receiver's role may see leaves this node (cross-border minimisation).
        identity = minimised(self._identity_of(beneficiary), target.roles, self.config.minimisation)
        message = federation_pb2.RequestAssistanceRequest(
            request_id=request_id,
            paying_node_id=self.node_id,
            paying_region=beneficiary.paying_region,
            residence_region=beneficiary.residence_region,
            subject_locator=beneficiary.subject_locator,
            sealed_identity=sealing.seal(
                identity.SerializeToString(deterministic=True),
                target.hpke_public_key,
                sealing.request_info(request_id),
            ),
            deadline=to_timestamp(deadline),
            acceptable_methods=methods,
            note=note,
            requested_at=to_timestamp(now),
        )
        payload = message.SerializeToString(deterministic=True)
        created = assistance.create_outbound(
            session,
            request_id=request_id,
            beneficiary=beneficiary,
            peer_node_id=target.node_id,
            paying_node_id=self.node_id,
            paying_region=beneficiary.paying_region,
            deadline=deadline,
            acceptable_methods=methods,
            note=note,
            payload_sha256=payload_digest(payload),
            now=now,
        )
        outbox.enqueue(
            session,
            kind=OutboxKind.REQUEST_ASSISTANCE,
            destination=target.node_id,
            subject_id=request_id,
            payload=payload,
            now=now,
        )
        audit.append(
            session,
            actor=actor.label,
            action="assistance.request",
            subject_type="assistance_request",
            subject_id=request_id,
            details={"beneficiary_id": beneficiary.beneficiary_id, "to": target.node_id},
            now=now,
        )
        log.info("assistance.requested", request_id=request_id, to=target.node_id)
        return created

    # Flow 1 at the residence node: receive, update, certify.

    def serves(self, region: str) -> bool:
        return any(coverage(code, region) for code in self.config.region_codes)

    def receive_assistance_request(
        self, caller_node_id: str, message: federation_pb2.RequestAssistanceRequest
    ) -> tuple[AssistanceRequest, bool]:
        self._require_role({"residence_agency", "partner_liaison"}, "certify residents")
        limits = self.config.limits
        require_id(message.request_id, "request_id")
        require_node_id(message.paying_node_id, "paying_node_id")
        if message.paying_node_id != caller_node_id:
            raise PermissionDeniedError(
                f"node {caller_node_id} may not send requests on behalf of {message.paying_node_id}"
            )
        require_region(message.paying_region, "paying_region")
        residence = require_region(message.residence_region, "residence_region")
        if not self.serves(residence):
            raise PreconditionError(
                f"this node does not serve region {residence}; the sender's directory is stale"
            )
        require_locator(message.subject_locator)
        if not 0 < len(message.sealed_identity) <= limits.max_sealed_identity_bytes:
            raise InvalidInputError("sealed_identity", "is empty or too large")
        if not message.HasField("deadline"):
            raise InvalidInputError("deadline", "is required")
        if not message.HasField("requested_at"):
            raise InvalidInputError("requested_at", "is required")
        now = self.now()
        require_past(to_datetime(message.requested_at, "requested_at"), "requested_at", now, limits)
        deadline = require_future(to_datetime(message.deadline, "deadline"), "deadline", now)
        require_methods(list(message.acceptable_methods), "acceptable_methods")
        require_text(message.note, "note", limits)
        try:
            plain = sealing.open_sealed(
                message.sealed_identity, self.keys.hpke, sealing.request_info(message.request_id)
            )
        except Exception as error:
            raise InvalidInputError(
                "sealed_identity",
                "cannot be opened with this node's key for this request id; "
                "the sender must seal it to the key in the current directory",
            ) from error
        # Checked now, so a clerk never opens a request whose identity cannot be read.
        try:
            bundle = attestation_pb2.IdentityBundle.FromString(plain)
        except DecodeError as error:
            raise InvalidInputError("sealed_identity", "does not hold an IdentityBundle") from error
        checked_identity(bundle, "sealed_identity", limits)
        payload = message.SerializeToString(deterministic=True)
        with session_scope(self.engine) as session:
            stored, duplicate = assistance.receive_inbound(
                session,
                request_id=message.request_id,
                peer_node_id=caller_node_id,
                subject_locator=message.subject_locator,
                paying_node_id=message.paying_node_id,
                paying_region=message.paying_region,
                residence_region=residence,
                sealed_identity=message.sealed_identity,
                deadline=deadline,
                acceptable_methods=list(message.acceptable_methods),
                note=message.note,
                payload_sha256=payload_digest(payload),
                now=now,
            )
            if not duplicate:
                audit.append(
                    session,
                    actor=f"node:{caller_node_id}",
                    action="assistance.receive",
                    subject_type="assistance_request",
                    subject_id=message.request_id,
                    details={"residence_region": residence},
                    now=now,
                )
        return stored, duplicate

    def inbound_identity(self, request: AssistanceRequest) -> attestation_pb2.IdentityBundle:
        if request.sealed_identity is None:
            raise PreconditionError(f"request {request.request_id} carries no identity")
        plain = sealing.open_sealed(
            request.sealed_identity, self.keys.hpke, sealing.request_info(request.request_id)
        )
        return attestation_pb2.IdentityBundle.FromString(plain)

    def _status_message(
        self,
        stored: AssistanceRequest,
        sequence: int,
        now: datetime,
    ) -> bytes:
        message = federation_pb2.UpdateAssistanceStatusRequest(
            request_id=stored.request_id,
            status=STATE_STATUSES[stored.status],
            reason=stored.status_reason,
            changed_at=to_timestamp(now),
            sequence=sequence,
        )
        if stored.scheduled_for is not None:
            message.scheduled_for.CopyFrom(to_timestamp(stored.scheduled_for))
        return message.SerializeToString(deterministic=True)

    def set_assistance_status(
        self, actor: Actor, request: desk_pb2.SetAssistanceStatusRequest
    ) -> AssistanceRequest:
        require_id(request.request_id, "request_id")
        state = STATUS_STATES.get(request.status)
        if state is None or state is AssistanceState.COMPLETED:
            raise InvalidInputError(
                "status",
                "must be ACCEPTED, SCHEDULED or DECLINED; approving a certification "
                "completes the request",
            )
        reason = require_text(request.reason, "reason", self.config.limits)
        if state is AssistanceState.DECLINED and not reason.strip():
            raise InvalidInputError("reason", "say why the request is declined")
        now = self.now()
        scheduled_for = optional_datetime(request, "scheduled_for")
        if state is AssistanceState.SCHEDULED:
            if scheduled_for is None:
                raise InvalidInputError("scheduled_for", "give the date of the visit or call")
            require_future(scheduled_for, "scheduled_for", now)
        with session_scope(self.engine) as session:
            stored = assistance.get(session, request.request_id, RequestDirection.INBOUND)
            sequence = assistance.set_local_status(
                session, stored, state, reason, scheduled_for, now
            )
            outbox.enqueue(
                session,
                kind=OutboxKind.UPDATE_ASSISTANCE_STATUS,
                destination=stored.peer_node_id,
                subject_id=stored.request_id,
                payload=self._status_message(stored, sequence, now),
                now=now,
            )
            audit.append(
                session,
                actor=actor.label,
                action=f"assistance.{state.value}",
                subject_type="assistance_request",
                subject_id=stored.request_id,
                details={},
                now=now,
            )
        self.on_enqueued()
        return stored

    def apply_status_update(
        self, caller_node_id: str, message: federation_pb2.UpdateAssistanceStatusRequest
    ) -> AssistanceRequest:
        require_id(message.request_id, "request_id")
        state = STATUS_STATES.get(message.status)
        if state is None:
            raise InvalidInputError("status", "is missing or not a status a peer may send")
        require_text(message.reason, "reason", self.config.limits)
        sequence = require_sequence(message.sequence, "sequence")
        scheduled_for = optional_datetime(message, "scheduled_for")
        now = self.now()
        changed_at = optional_datetime(message, "changed_at")
        if changed_at is not None:
            require_past(changed_at, "changed_at", now, self.config.limits)
        with session_scope(self.engine) as session:
            stored = assistance.get(session, message.request_id, RequestDirection.OUTBOUND)
            if stored.peer_node_id != caller_node_id:
                raise PermissionDeniedError(
                    f"request {message.request_id} was not sent to node {caller_node_id}"
                )
            changed = assistance.apply_remote_status(
                session,
                stored,
                state,
                message.reason,
                scheduled_for,
                sequence,
                now,
            )
            if changed:
                audit.append(
                    session,
                    actor=f"node:{caller_node_id}",
                    action=f"assistance.remote_{state.value}",
                    subject_type="assistance_request",
                    subject_id=stored.request_id,
                    details={"sequence": sequence},
                    now=now,
                )
        return stored

    def record_certification(
        self, actor: Actor, request: desk_pb2.RecordCertificationRequest
    ) -> Certification:
        self._require_role({"residence_agency", "partner_liaison"}, "certify residents")
        limits = self.config.limits
        method = require_enum(request.method, common_pb2.CertificationMethod, "method")
        outcome = require_enum(request.outcome, common_pb2.CertificationOutcome, "outcome")
        if not request.HasField("observed_at"):
            raise InvalidInputError("observed_at", "is required")
        now = self.now()
        observed_at = require_past(
            to_datetime(request.observed_at, "observed_at"), "observed_at", now, limits
        )
        digests = require_digests(list(request.evidence_digests), limits)
        note = require_text(request.note, "note", limits)
        subject = request.WhichOneof("subject")
        request_id: str | None = None
        if subject == "request_id":
            request_id = require_id(request.request_id, "request_id")
            with self.session() as session:
                inbound = assistance.get(session, request_id, RequestDirection.INBOUND)
            locator = inbound.subject_locator
            paying_node_id, paying_region = inbound.paying_node_id, inbound.paying_region
        elif subject == "walk_in":
            kind, number = normalised_identity(request.walk_in, "walk_in", limits)
            locator = subject_locator(self.keys.locator_key, kind, number)
            paying_node_id, paying_region = self._paying_office_of(locator)
        else:
            raise InvalidInputError("subject", "give request_id or the walk-in identity")
        with session_scope(self.engine) as session:
            recorded = certifications.record(
                session,
                request_id=request_id,
                subject_locator=locator,
                paying_node_id=paying_node_id,
                paying_region=paying_region,
                certifying_region=self.config.primary_region,
                method=method,
                outcome=outcome,
                observed_at=observed_at,
                evidence_digests=[digest.hex() for digest in digests],
                note=note,
                clerk_id=actor.name,
                now=now,
            )
            audit.append(
                session,
                actor=actor.label,
                action="certification.record",
                subject_type="certification",
                subject_id=recorded.certification_id,
                details={"request_id": request_id, "walk_in": subject == "walk_in"},
                now=now,
            )
        return recorded

    def _paying_office_of(self, locator: bytes) -> tuple[str, str]:
        """Which node pays a walk-in, from the registry's locator index."""
        paying = sorted(self._locate(locator))
        if not paying:
            raise NotFoundError(
                "no paying office in the federation has registered this person; check the "
                "identity number, or ask the retiree which office pays the pension"
            )
        if len(paying) > 1:
            log.warning("walk_in.several_paying_offices", paying_node_ids=paying)
        node = self.directory.current().active_node(paying[0])
        return node.node_id, node.region_codes[0]

    def approve_certification(self, actor: Actor, certification_id: str) -> Certification:
        require_id(certification_id, "certification_id")
        now = self.now()
        with self.session() as session:
            pending = certifications.get(session, certification_id)
        attestation_id = new_id()
        attestation = self._attestation_for(pending, actor.name, attestation_id, now)
        with session_scope(self.engine) as session:
            pending = certifications.get(session, certification_id)
            certifications.approve(session, pending, actor.name, attestation_id, now)
            if pending.request_id is not None:
                inbound = assistance.get(session, pending.request_id, RequestDirection.INBOUND)
                sequence = assistance.complete(session, inbound, attestation_id, now)
                outbox.enqueue(
                    session,
                    kind=OutboxKind.UPDATE_ASSISTANCE_STATUS,
                    destination=inbound.peer_node_id,
                    subject_id=inbound.request_id,
                    payload=self._status_message(inbound, sequence, now),
                    now=now,
                )
            audit.append(
                session,
                actor=actor.label,
                action="certification.approve",
                subject_type="certification",
                subject_id=certification_id,
                details={"attestation_id": attestation_id},
                now=now,
            )
            self.issue_attestation(session, attestation, beneficiary_id=None, now=now)
        self.attestations_issued()
        return pending

    def issue_attestation(
        self,
        session: Session,
        attestation: attestation_pb2.CertificationAttestation,
        *,
        beneficiary_id: str | None,
        now: datetime,
    ) -> None:
        """Sign, store, send and log an attestation this node issues, in the caller's
        transaction.

        Every attestation the node issues goes through here or `issue_attestations`: a
        reviewer's approval and a data match alike (lifecycle.py), so each is signed the same
        way and appended to the transparency log. Call it last in the transaction, so the log
        head is locked only until the commit; the attestation and its log position commit
        together (issue 4).
        """
        self.issue_attestations(session, [(attestation, beneficiary_id)], now=now)

    def issue_attestations(
        self,
        session: Session,
        issued: Sequence[tuple[attestation_pb2.CertificationAttestation, str | None]],
        *,
        now: datetime,
    ) -> None:
        """`issue_attestation` for a batch (a data feed): one log append for all of them."""
        entries = [
            self._sign_and_store(session, attestation, beneficiary_id, now)
            for attestation, beneficiary_id in issued
        ]
        if len(entries) == 1:
            log_store.append(session, entries[0])
        elif entries:
            log_store.append_many(session, entries)

    def _sign_and_store(
        self,
        session: Session,
        attestation: attestation_pb2.CertificationAttestation,
        beneficiary_id: str | None,
        now: datetime,
    ) -> NewEntry:
        payload = attestation.SerializeToString(deterministic=True)
        # Read once: a key rotation may swap self.keys between two reads (key_rollover.py).
        signing = self.keys.signing
        envelope = dsse.sign(payload, dsse.ATTESTATION_PAYLOAD_TYPE, signing)
        envelope_json = envelope.to_json()
        attestations_store.store_issued(
            session,
            attestation_id=attestation.attestation_id,
            envelope_json=envelope_json,
            issuing_node_id=self.node_id,
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
            now=now,
        )
        if attestation.paying_node_id != self.node_id:
            delivery = federation_pb2.DeliverAttestationRequest(
                envelope=envelope_to_proto(envelope)
            )
            outbox.enqueue(
                session,
                kind=OutboxKind.DELIVER_ATTESTATION,
                destination=attestation.paying_node_id,
                subject_id=attestation.attestation_id,
                payload=delivery.SerializeToString(deterministic=True),
                now=now,
            )
        log.info(
            "attestation.issued",
            attestation_id=attestation.attestation_id,
            to=attestation.paying_node_id,
        )
        return NewEntry(attestation.attestation_id, envelope_json, attestation.paying_region)

    def attestations_issued(self) -> None:
        """After a transaction that issued attestations commits: wake the dispatcher and the
        log's checkpointing."""
        self.on_enqueued()
        self.on_log_appended()

    def _attestation_for(
        self, pending: Certification, reviewer_id: str, attestation_id: str, now: datetime
    ) -> attestation_pb2.CertificationAttestation:
        observed_at = pending.observed_at
        alive = pending.outcome == common_pb2.CERTIFICATION_OUTCOME_ALIVE
        valid_until = (
            observed_at + relativedelta(months=self.config.validity_months)
            if alive
            else observed_at
        )
        return attestation_pb2.CertificationAttestation(
            attestation_id=attestation_id,
            subject_locator=pending.subject_locator,
            paying_region=pending.paying_region,
            paying_node_id=pending.paying_node_id,
            issuing_node_id=self.node_id,
            certifying_region=pending.certifying_region,
            certifying_agency=self.config.certifying_agency or self.config.display_name,
            method=common_pb2.CertificationMethod.ValueType(pending.method),
            outcome=common_pb2.CertificationOutcome.ValueType(pending.outcome),
            observed_at=to_timestamp(observed_at),
            valid_until=to_timestamp(valid_until),
            evidence_digests=[bytes.fromhex(digest) for digest in pending.evidence_digests],
            clerk_id=pending.clerk_id,
            reviewer_id=reviewer_id,
            assistance_request_id=pending.request_id or "",
            issued_at=to_timestamp(now),
        )

    def reject_certification(
        self, actor: Actor, certification_id: str, reason: str
    ) -> Certification:
        require_id(certification_id, "certification_id")
        require_text(reason, "reason", self.config.limits, required=True)
        now = self.now()
        with session_scope(self.engine) as session:
            pending = certifications.get(session, certification_id)
            certifications.reject(session, pending, actor.name, reason, now)
            audit.append(
                session,
                actor=actor.label,
                action="certification.reject",
                subject_type="certification",
                subject_id=certification_id,
                details={},
                now=now,
            )
        return pending

    # Flow 1 and 2 at the paying office: verify and apply a delivered attestation.

    def verify_attestation(
        self, envelope: dsse.Envelope
    ) -> tuple[attestation_pb2.CertificationAttestation, str]:
        """Check an attestation envelope against the current directory; a key it does not list
        (rotated in since the last refresh) triggers one refresh before the refusal stands."""
        skew = timedelta(seconds=self.config.limits.max_clock_skew_s)
        try:
            return verify_attestation_envelope(
                envelope, self.directory.current(), now=self.now(), max_clock_skew=skew
            )
        except UnknownSigningKeyError:
            self.directory.refresh_if_due()
        return verify_attestation_envelope(
            envelope, self.directory.current(), now=self.now(), max_clock_skew=skew
        )

    def receive_attestation(
        self, caller_node_id: str, message: federation_pb2.DeliverAttestationRequest
    ) -> ReceivedAttestation:
        if not message.HasField("envelope"):
            raise InvalidInputError("envelope", "is required")
        envelope = envelope_from_proto(message.envelope)
        attestation, key_id = self.verify_attestation(envelope)
        if attestation.issuing_node_id != caller_node_id:
            raise PermissionDeniedError(
                f"node {caller_node_id} delivered an attestation issued by "
                f"{attestation.issuing_node_id}; issuers deliver their own attestations"
            )
        require_id(attestation.attestation_id, "attestation_id")
        if attestation.paying_node_id != self.node_id:
            raise NotOurBeneficiaryError(
                f"attestation {attestation.attestation_id} is addressed to paying node "
                f"{attestation.paying_node_id}, not this node"
            )
        locator = require_locator(attestation.subject_locator)
        outcome = require_enum(attestation.outcome, common_pb2.CertificationOutcome, "outcome")
        method = require_enum(attestation.method, common_pb2.CertificationMethod, "method")
        now = self.now()
        # A signed attestation is still checked: a peer's bug must not become our record.
        observed_at = require_past(
            to_datetime(attestation.observed_at, "observed_at"),
            "observed_at",
            now,
            self.config.limits,
        )
        attested_until = to_datetime(attestation.valid_until, "valid_until")
        if attested_until < observed_at:
            raise InvalidInputError("valid_until", "is before observed_at")
        if attestation.assistance_request_id:
            require_id(attestation.assistance_request_id, "assistance_request_id")
        require_digests(list(attestation.evidence_digests), self.config.limits)
        with session_scope(self.engine) as session:
            beneficiary = beneficiaries.by_locator(session, locator)
            if beneficiary is None:
                raise NotOurBeneficiaryError(
                    f"attestation {attestation.attestation_id} names a person this office does "
                    "not pay; it was not stored"
                )
            stored, duplicate = attestations_store.store_received(
                session,
                attestation_id=attestation.attestation_id,
                envelope_json=envelope.to_json(),
                issuing_node_id=attestation.issuing_node_id,
                paying_node_id=self.node_id,
                subject_locator=locator,
                beneficiary_id=beneficiary.beneficiary_id,
                request_id=attestation.assistance_request_id or None,
                method=method,
                outcome=outcome,
                observed_at=observed_at,
                valid_until=attested_until,
                signing_key_id=key_id,
                payload_sha256=payload_digest(envelope.payload),
                now=now,
            )
            if not duplicate:
                self._apply(session, beneficiary, attestation, now)
                audit.append(
                    session,
                    actor=f"node:{caller_node_id}",
                    action="attestation.receive",
                    subject_type="attestation",
                    subject_id=attestation.attestation_id,
                    details={
                        "beneficiary_id": beneficiary.beneficiary_id,
                        "outcome": common_pb2.CertificationOutcome.Name(
                            common_pb2.CertificationOutcome.ValueType(outcome)
                        ),
                    },
                    now=now,
                )
                revocation_review.flag_if_revoked(session, stored, self.directory.current(), now)
            valid_until = beneficiary.valid_until
        return ReceivedAttestation(stored, duplicate, valid_until)

    def _apply(
        self,
        session: Session,
        beneficiary: Beneficiary,
        attestation: attestation_pb2.CertificationAttestation,
        now: datetime,
    ) -> None:
        observed_at = to_datetime(attestation.observed_at)
        entitlement = entitlements_store.get(session, beneficiary.beneficiary_id)
        if attestation.outcome == common_pb2.CERTIFICATION_OUTCOME_ALIVE:
            if beneficiaries.extend_validity(
                session, beneficiary, to_datetime(attestation.valid_until), now
            ):
                lifecycle.certified(session, self.policy, entitlement, observed_at, now)
        else:
            # Reviewed at the issuing node (separation of duties there): ends entitlement now.
            lifecycle.terminate(
                session,
                beneficiary,
                entitlement,
                OUTCOME_STATES[attestation.outcome],
                observed_at,
                now,
            )
        request_id = attestation.assistance_request_id
        if request_id:
            try:
                outbound = assistance.get(session, request_id, RequestDirection.OUTBOUND)
            except NotFoundError:
                log.warning("attestation.unknown_request", request_id=request_id)
                return
            assistance.complete(session, outbound, attestation.attestation_id, now)

    # Administration.

    def retry_dead_letter(self, actor: Actor, message_id: str) -> OutboxMessage:
        """Put a dead-lettered message back in the queue, on the audit record."""
        require_id(message_id, "message_id")
        now = self.now()
        with session_scope(self.engine) as session:
            record = outbox.retry_dead(session, message_id, now)
            audit.append(
                session,
                actor=actor.label,
                action="outbox.retry_dead_letter",
                subject_type="outbox_message",
                subject_id=message_id,
                details={"kind": record.kind.value, "destination": record.destination},
                now=now,
            )
        self.on_enqueued()
        return record

    # Registry answers that arrive through the outbox.

    def record_duplicates(self, duplicates: list[registry_pb2.DuplicateEntitlement]) -> int:
        flagged = 0
        if not duplicates:
            return 0
        with session_scope(self.engine) as session:
            for duplicate in duplicates:
                if beneficiaries.flag_duplicate(session, duplicate.locator):
                    flagged += 1
                    audit.append(
                        session,
                        actor="node:registry",
                        action="beneficiary.possible_duplicate",
                        subject_type="locator",
                        subject_id=duplicate.locator.hex()[:16],
                        details={"paying_node_ids": sorted(duplicate.paying_node_ids)},
                        now=self.now(),
                    )
        return flagged

    def identity_type_of(self, beneficiary: Beneficiary) -> int:
        return IDENTITY_TYPES[IdentityKind(beneficiary.identity_type)]

    def directory_node(self, node_id: str) -> directory_pb2.DirectoryNode:
        return self.directory.current().node(node_id)
