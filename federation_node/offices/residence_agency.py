"""The residence agency's work: assistance requests from paying offices (received, accepted,
scheduled or declined, and completed by an approved certification), and finding which offices
pay a walk-in.

A request is refused unless its locator is the one this node computes from the identity sealed
in it: a member sending identity A under locator B would otherwise get a signed "B alive".

The certifications its clerks record for those requests and for walk-ins, and the reviewer's
approval, are certifying.py's, which asks this module for the request or the paying office. Each
operation runs in one transaction with its outbox message and audit record.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from datetime import datetime

import structlog
from google.protobuf.message import DecodeError
from sqlmodel import Session

from certfed.v1 import attestation_pb2, common_pb2, desk_pb2, federation_pb2
from federation import tracing
from federation.errors import (
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    PreconditionError,
)
from federation.regions import coverage
from federation.roles import OVERSEAS_POST, PARTNER_LIAISON, RESIDENCE_AGENCY
from federation.timestamps import optional_datetime, to_datetime, to_timestamp
from federation_node.offices.assistance_status import STATE_STATUSES, STATUS_STATES
from federation_node.offices.context import Actor, NodeContext, payload_digest
from federation_node.rules.validation import (
    checked_identity,
    require_future,
    require_id,
    require_locator,
    require_methods,
    require_node_id,
    require_past,
    require_region,
    require_text,
)
from federation_node.store import assistance, audit, outbox
from federation_node.store.db import session_scope
from federation_node.store.models import (
    AssistanceRequest,
    AssistanceState,
    OutboxKind,
    RequestDirection,
)
from signing import sealing

log = structlog.get_logger("certfed.node")

CERTIFYING_ROLE_NAMES = frozenset({RESIDENCE_AGENCY, PARTNER_LIAISON, OVERSEAS_POST})


class ResidenceAgency:
    """A residence agency (or partner liaison desk) of this node: the people it certifies."""

    def __init__(self, context: NodeContext, locate: Callable[[bytes], list[str]]) -> None:
        self._context = context
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
        # The answer, days later, joins the trace the request came in (federation/tracing.py).
        tracing.remember(message.request_id)
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
        kind, number = checked_identity(bundle, "sealed_identity", limits)
        # The locator is what the attestation will carry, so it must be the sealed person's:
        # a request for A under B's locator would have this office sign "B alive" for A.
        locator = self._context.locators.subject_locator(kind, number)
        if not hmac.compare_digest(locator, message.subject_locator):
            raise InvalidInputError(
                "subject_locator",
                "is not the locator of the identity sealed in the request; the paying office "
                "must send the locator it computed from that identity",
            )
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

    # Flows 1 and 2: what certifying.py needs of the agency, to record and approve a check.

    def inbound_request(self, request_id: str) -> AssistanceRequest:
        """An inbound request a clerk certifies for."""
        self._context.require_role(CERTIFYING_ROLE_NAMES, "certify residents for other offices")
        with self._context.session() as session:
            return assistance.get(session, request_id, RequestDirection.INBOUND)

    def paying_offices_of(self, locator: bytes) -> list[tuple[str, str]]:
        """Every node that pays a walk-in, with the region it pays from, from the registry's
        locator index, in node id order.

        Any paying member can publish any locator, so when several claim the person none is
        picked (an order, like the alphabet, is what a member would game): the certification
        goes to each of them, and the clerk is told that several offices claim the person.
        """
        self._context.require_role(
            CERTIFYING_ROLE_NAMES,
            "certify visitors whom other offices pay; it certifies only its own beneficiaries",
        )
        paying = sorted(set(self._locate(locator)))
        if not paying:
            raise NotFoundError(
                "no paying office in the federation has registered this person; check the "
                "identity number, or ask the retiree which office pays the pension"
            )
        if len(paying) > 1:
            log.warning("walk_in.several_paying_offices", paying_node_ids=paying)
        directory = self._context.directory.current()
        # One the directory does not list as active (yet, or any more) is left out, so a
        # member cannot stop a walk-in by publishing the locator and then being suspended.
        nodes = [
            node
            for node in map(directory.find, paying)
            if node is not None and node.status == common_pb2.NODE_STATUS_ACTIVE
        ]
        if not nodes:
            directory.active_node(paying[0])
        return [(node.node_id, node.region_codes[0]) for node in nodes]

    def complete_request(
        self, session: Session, request_id: str, attestation_id: str, now: datetime
    ) -> None:
        """The request is answered by `attestation_id`: completed here, in the caller's (the
        approval's) transaction. The paying office is told by the attestation itself, which
        names the request and completes it there when it is applied; a separate "completed"
        status would cost a second delivery and tell it nothing more."""
        inbound = assistance.get(session, request_id, RequestDirection.INBOUND, for_update=True)
        assistance.complete(session, inbound, attestation_id, now)
