"""The assistance requests a paying office sends: a clerk asks the node of the region where a
retiree lives to certify them (or the daily cycle does, when they come due), and the status that
node reports back on the request.

A request carries the person's identity sealed to the receiving node, minimised to what that
node's role may see (cross-border minimisation), and their locator; it is recorded, queued in
the outbox and audited in one transaction. A status update is accepted only from the node the
request went to, and in the order of its sequence numbers. The attestation that answers a
request completes it where it is applied (paying_office.py).
"""

from __future__ import annotations

from datetime import datetime

import structlog
from sqlmodel import Session

from certfed.v1 import common_pb2, desk_pb2, directory_pb2, federation_pb2
from federation.errors import InvalidInputError, PermissionDeniedError, PreconditionError
from federation.timestamps import optional_datetime, to_datetime, to_timestamp
from federation_node.ids import new_id
from federation_node.offices import roll
from federation_node.offices.assistance_status import STATUS_STATES
from federation_node.offices.context import Actor, NodeContext, payload_digest
from federation_node.rules.minimisation import minimised
from federation_node.rules.validation import (
    require_future,
    require_id,
    require_methods,
    require_past,
    require_sequence,
    require_text,
)
from federation_node.store import assistance, audit, beneficiaries, outbox
from federation_node.store.db import session_scope
from federation_node.store.models import (
    AssistanceRequest,
    Beneficiary,
    BeneficiaryState,
    OutboxKind,
    RequestDirection,
)
from signing import sealing

log = structlog.get_logger("certfed.node")


class OutboundRequests:
    """Assistance requests this node's paying office sends, and their peers' status reports."""

    def __init__(self, context: NodeContext) -> None:
        self._context = context

    def request_certification(
        self, actor: Actor, request: desk_pb2.RequestCertificationRequest
    ) -> AssistanceRequest:
        limits = self._context.config.limits
        require_id(request.beneficiary_id, "beneficiary_id")
        if not request.HasField("deadline"):
            raise InvalidInputError("deadline", "is required")
        now = self._context.now()
        deadline = require_future(to_datetime(request.deadline, "deadline"), "deadline", now)
        methods = [
            common_pb2.CertificationMethod.ValueType(m)
            for m in require_methods(list(request.acceptable_methods), "acceptable_methods")
        ]
        note = require_text(request.note, "note", limits)
        # One transaction: the checks and the route come from the row the request is queued
        # for (the route is the directory in memory).
        with session_scope(self._context.engine) as session:
            beneficiary = beneficiaries.get(session, request.beneficiary_id)
            if beneficiary.status != BeneficiaryState.ACTIVE:
                raise PreconditionError(
                    f"beneficiary {beneficiary.beneficiary_id} is {beneficiary.status.value}; "
                    "no certification is needed"
                )
            target = self._context.directory.current().route(
                beneficiary.residence_region, self._context.config.routing
            )
            if target.node_id == self._context.node_id:
                raise PreconditionError(
                    f"this node certifies residents of {beneficiary.residence_region} itself; "
                    "record the certification at this desk instead"
                )
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
        self._context.on_enqueued()
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
        identity = minimised(
            roll.open_identity(
                self._context, beneficiary.sealed_identity, beneficiary.subject_locator
            ),
            target.roles,
            self._context.config.minimisation,
        )
        message = federation_pb2.RequestAssistanceRequest(
            request_id=request_id,
            paying_node_id=self._context.node_id,
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
            paying_node_id=self._context.node_id,
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

    def apply_status_update(
        self, caller_node_id: str, message: federation_pb2.UpdateAssistanceStatusRequest
    ) -> AssistanceRequest:
        require_id(message.request_id, "request_id")
        state = STATUS_STATES.get(message.status)
        if state is None:
            raise InvalidInputError("status", "is missing or not a status a peer may send")
        limits = self._context.config.limits
        require_text(message.reason, "reason", limits)
        sequence = require_sequence(message.sequence, "sequence")
        scheduled_for = optional_datetime(message, "scheduled_for")
        now = self._context.now()
        changed_at = optional_datetime(message, "changed_at")
        if changed_at is not None:
            require_past(changed_at, "changed_at", now, limits)
        with session_scope(self._context.engine) as session:
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
