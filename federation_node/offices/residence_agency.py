"""The residence agency's work: assistance requests from paying offices, the certifications its
clerks record for them and for walk-ins, and the reviewer's approval or rejection.

Separation of duties: a clerk records a certification, a reviewer approves it (the store refuses
the clerk as their own reviewer), and only an approval issues the signed attestation
(issuing.py). Each operation runs in one transaction with its outbox message and audit record.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import structlog
from google.protobuf.message import DecodeError

from certfed.v1 import attestation_pb2, common_pb2, desk_pb2, federation_pb2
from federation.errors import (
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    PreconditionError,
)
from federation.regions import coverage
from federation.roles import PARTNER_LIAISON, RESIDENCE_AGENCY
from federation.timestamps import optional_datetime, to_datetime, to_timestamp
from federation_node.offices.assistance_status import STATE_STATUSES, STATUS_STATES
from federation_node.offices.context import Actor, NodeContext, payload_digest
from federation_node.offices.issuing import Finding, Issuer
from federation_node.rules.validation import (
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
    require_text,
)
from federation_node.store import assistance, audit, certifications, outbox
from federation_node.store.db import session_scope
from federation_node.store.models import (
    AssistanceRequest,
    AssistanceState,
    Certification,
    OutboxKind,
    RequestDirection,
)
from signing import sealing
from signing.locator import subject_locator

log = structlog.get_logger("certfed.node")

CERTIFYING_ROLE_NAMES = frozenset({RESIDENCE_AGENCY, PARTNER_LIAISON})


class ResidenceAgency:
    """A residence agency (or partner liaison desk) of this node: the people it certifies."""

    def __init__(
        self, context: NodeContext, issuer: Issuer, locate: Callable[[bytes], list[str]]
    ) -> None:
        self._context = context
        self._issuer = issuer
        # Which nodes pay a person, by locator: the registry's index, for walk-ins.
        self._locate = locate

    # Flow 1: receive a request and answer it.

    def serves(self, region: str) -> bool:
        return any(coverage(code, region) for code in self._context.config.region_codes)

    def receive_assistance_request(
        self, caller_node_id: str, message: federation_pb2.RequestAssistanceRequest
    ) -> tuple[AssistanceRequest, bool]:
        self._context.require_role(CERTIFYING_ROLE_NAMES, "certify residents")
        limits = self._context.config.limits
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
        now = self._context.now()
        require_past(to_datetime(message.requested_at, "requested_at"), "requested_at", now, limits)
        deadline = require_future(to_datetime(message.deadline, "deadline"), "deadline", now)
        require_methods(list(message.acceptable_methods), "acceptable_methods")
        require_text(message.note, "note", limits)
        try:
            plain = sealing.open_sealed(
                message.sealed_identity,
                self._context.keys.hpke,
                sealing.request_info(message.request_id),
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
        with session_scope(self._context.engine) as session:
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
            request.sealed_identity,
            self._context.keys.hpke,
            sealing.request_info(request.request_id),
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
        reason = require_text(request.reason, "reason", self._context.config.limits)
        if state is AssistanceState.DECLINED and not reason.strip():
            raise InvalidInputError("reason", "say why the request is declined")
        now = self._context.now()
        scheduled_for = optional_datetime(request, "scheduled_for")
        if state is AssistanceState.SCHEDULED:
            if scheduled_for is None:
                raise InvalidInputError("scheduled_for", "give the date of the visit or call")
            require_future(scheduled_for, "scheduled_for", now)
        with session_scope(self._context.engine) as session:
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
        self._context.on_enqueued()
        return stored

    # Flows 1 and 2: a clerk records a certification (answering a request, or a walk-in's), a
    # reviewer approves or rejects it.

    def record_certification(
        self, actor: Actor, request: desk_pb2.RecordCertificationRequest
    ) -> Certification:
        self._context.require_role(CERTIFYING_ROLE_NAMES, "certify residents")
        limits = self._context.config.limits
        method = require_enum(request.method, common_pb2.CertificationMethod, "method")
        outcome = require_enum(request.outcome, common_pb2.CertificationOutcome, "outcome")
        if not request.HasField("observed_at"):
            raise InvalidInputError("observed_at", "is required")
        now = self._context.now()
        observed_at = require_past(
            to_datetime(request.observed_at, "observed_at"), "observed_at", now, limits
        )
        digests = require_digests(list(request.evidence_digests), limits)
        note = require_text(request.note, "note", limits)
        subject = request.WhichOneof("subject")
        request_id: str | None = None
        if subject == "request_id":
            request_id = require_id(request.request_id, "request_id")
            with self._context.session() as session:
                inbound = assistance.get(session, request_id, RequestDirection.INBOUND)
            locator = inbound.subject_locator
            paying_node_id, paying_region = inbound.paying_node_id, inbound.paying_region
        elif subject == "walk_in":
            kind, number = normalised_identity(request.walk_in, "walk_in", limits)
            locator = subject_locator(self._context.keys.locator_key, kind, number)
            paying_node_id, paying_region = self._paying_office_of(locator)
        else:
            raise InvalidInputError("subject", "give request_id or the walk-in identity")
        with session_scope(self._context.engine) as session:
            recorded = certifications.record(
                session,
                request_id=request_id,
                subject_locator=locator,
                paying_node_id=paying_node_id,
                paying_region=paying_region,
                certifying_region=self._context.config.primary_region,
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
        node = self._context.directory.current().active_node(paying[0])
        return node.node_id, node.region_codes[0]

    def approve_certification(self, actor: Actor, certification_id: str) -> Certification:
        require_id(certification_id, "certification_id")
        now = self._context.now()
        with self._context.session() as session:
            pending = certifications.get(session, certification_id)
        attestation = self._issuer.attestation(_finding(pending, actor.name), now)
        attestation_id = attestation.attestation_id
        with session_scope(self._context.engine) as session:
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
            # Last: the log head stays locked only until the commit (Issuer.issue).
            self._issuer.issue(session, [(attestation, None)], now=now)
        self._issuer.issued()
        return pending

    def reject_certification(
        self, actor: Actor, certification_id: str, reason: str
    ) -> Certification:
        require_id(certification_id, "certification_id")
        require_text(reason, "reason", self._context.config.limits, required=True)
        now = self._context.now()
        with session_scope(self._context.engine) as session:
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


def _finding(pending: Certification, reviewer_id: str) -> Finding:
    """What a clerk recorded and a reviewer approved, as the issuer signs it."""
    return Finding(
        subject_locator=pending.subject_locator,
        paying_node_id=pending.paying_node_id,
        paying_region=pending.paying_region,
        certifying_region=pending.certifying_region,
        method=common_pb2.CertificationMethod.ValueType(pending.method),
        outcome=common_pb2.CertificationOutcome.ValueType(pending.outcome),
        observed_at=pending.observed_at,
        evidence_digests=[bytes.fromhex(digest) for digest in pending.evidence_digests],
        clerk_id=pending.clerk_id,
        reviewer_id=reviewer_id,
        request_id=pending.request_id,
    )
