"""Assistance requests: sent by this node as a paying office, received by it as a residence node.

Promises, each inside the caller's transaction:

* at most one open (not declined, not completed) outbound request per beneficiary, enforced by
  a UNIQUE column so that it holds across replicas and races;
* receiving is idempotent on the request id: a redelivery of the same bytes is recognised, a
  different request under a used id is refused;
* an inbound request moves only along the legal transitions, and every move bumps a sequence
  the residence node sends with its status updates;
* an outbound request applies a peer's status only when it is newer than the last one applied,
  so a late redelivery can never undo a newer status.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import select as sa_select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from federation.errors import (
    AlreadyExistsError,
    DuplicateRequestError,
    InvalidInputError,
    PreconditionError,
    UnknownRequestError,
)
from federation_node.store.db import keyset_rows, lock_and_refresh
from federation_node.store.models import (
    OPEN_ASSISTANCE_STATES,
    AssistanceRequest,
    AssistanceState,
    Beneficiary,
    BeneficiaryState,
    RequestDirection,
)

# Local status changes a residence node may make to an inbound request.
_LEGAL_LOCAL_MOVES: dict[AssistanceState, frozenset[AssistanceState]] = {
    AssistanceState.RECEIVED: frozenset(
        {
            AssistanceState.ACCEPTED,
            AssistanceState.SCHEDULED,
            AssistanceState.DECLINED,
            AssistanceState.COMPLETED,
        }
    ),
    AssistanceState.ACCEPTED: frozenset(
        {AssistanceState.SCHEDULED, AssistanceState.DECLINED, AssistanceState.COMPLETED}
    ),
    AssistanceState.SCHEDULED: frozenset(
        {AssistanceState.SCHEDULED, AssistanceState.DECLINED, AssistanceState.COMPLETED}
    ),
}

_VERBS = {
    AssistanceState.QUEUED: "queued",
    AssistanceState.RECEIVED: "set back to received",
    AssistanceState.ACCEPTED: "accepted",
    AssistanceState.SCHEDULED: "scheduled",
    AssistanceState.DECLINED: "declined",
    AssistanceState.COMPLETED: "completed",
}

_REUSED_ID = "request id reused with different content"


def create_outbound(
    session: Session,
    *,
    request_id: str,
    beneficiary: Beneficiary,
    peer_node_id: str,
    paying_node_id: str,
    paying_region: str,
    deadline: datetime,
    acceptable_methods: Sequence[int],
    note: str,
    payload_sha256: str,
    now: datetime,
) -> AssistanceRequest:
    """Record a request this office sends to a residence node, queued for the outbox."""
    if beneficiary.status is not BeneficiaryState.ACTIVE:
        raise PreconditionError(
            f"beneficiary {beneficiary.beneficiary_id} is {beneficiary.status.value}; "
            "no certification can be requested for them"
        )
    open_request = _open_request_for(session, beneficiary.beneficiary_id)
    if open_request is not None:
        raise _duplicate(beneficiary.beneficiary_id, open_request)
    request = _new_request(
        request_id=request_id,
        direction=RequestDirection.OUTBOUND,
        peer_node_id=peer_node_id,
        beneficiary_id=beneficiary.beneficiary_id,
        subject_locator=beneficiary.subject_locator,
        paying_node_id=paying_node_id,
        paying_region=paying_region,
        residence_region=beneficiary.residence_region,
        sealed_identity=None,
        payload_sha256=payload_sha256,
        deadline=deadline,
        acceptable_methods=list(acceptable_methods),
        note=note,
        status=AssistanceState.QUEUED,
        open_beneficiary_id=beneficiary.beneficiary_id,
        now=now,
    )
    try:
        # A savepoint, so that after losing a race the transaction can still name the winner.
        with session.begin_nested():
            session.add(request)
    except IntegrityError:
        winner = _open_request_for(session, beneficiary.beneficiary_id)
        if winner is not None:
            raise _duplicate(beneficiary.beneficiary_id, winner) from None
        if session.get(AssistanceRequest, request_id) is not None:
            raise AlreadyExistsError(f"request id {request_id} is already in use") from None
        raise
    return request


def _new_request(*, now: datetime, **fields: Any) -> AssistanceRequest:
    """A request as it starts, in either direction: no reason, schedule or attestation yet."""
    return AssistanceRequest(
        **fields,
        status_reason="",
        scheduled_for=None,
        status_sequence=0,
        attestation_id=None,
        created_at=now,
        updated_at=now,
    )


def _open_request_for(session: Session, beneficiary_id: str) -> AssistanceRequest | None:
    return session.exec(
        select(AssistanceRequest).where(AssistanceRequest.open_beneficiary_id == beneficiary_id)
    ).first()


def _duplicate(beneficiary_id: str, open_request: AssistanceRequest) -> DuplicateRequestError:
    return DuplicateRequestError(
        f"beneficiary {beneficiary_id} already has an open assistance request "
        f"{open_request.request_id} ({open_request.status.value}); wait until it is completed "
        "or declined"
    )


def receive_inbound(
    session: Session,
    *,
    request_id: str,
    peer_node_id: str,
    paying_node_id: str,
    paying_region: str,
    residence_region: str,
    subject_locator: bytes,
    sealed_identity: bytes,
    deadline: datetime,
    acceptable_methods: Sequence[int],
    note: str,
    payload_sha256: str,
    now: datetime,
) -> tuple[AssistanceRequest, bool]:
    """Store a request a paying node sent here. Returns it and whether it was a redelivery."""
    existing = session.get(AssistanceRequest, request_id)
    if existing is not None:
        return _redelivered(existing, peer_node_id, payload_sha256), True
    request = _new_request(
        request_id=request_id,
        direction=RequestDirection.INBOUND,
        peer_node_id=peer_node_id,
        beneficiary_id=None,
        subject_locator=subject_locator,
        paying_node_id=paying_node_id,
        paying_region=paying_region,
        residence_region=residence_region,
        sealed_identity=sealed_identity,
        payload_sha256=payload_sha256,
        deadline=deadline,
        acceptable_methods=list(acceptable_methods),
        note=note,
        status=AssistanceState.RECEIVED,
        open_beneficiary_id=None,
        now=now,
    )
    try:
        with session.begin_nested():
            session.add(request)
    except IntegrityError:
        # The same request delivered twice at once (a retry racing the original).
        winner = session.get(AssistanceRequest, request_id)
        if winner is None:
            raise
        return _redelivered(winner, peer_node_id, payload_sha256), True
    return request, False


def _redelivered(
    existing: AssistanceRequest, peer_node_id: str, payload_sha256: str
) -> AssistanceRequest:
    if (
        existing.direction is not RequestDirection.INBOUND
        or existing.peer_node_id != peer_node_id
        or existing.payload_sha256 != payload_sha256
    ):
        raise AlreadyExistsError(_REUSED_ID)
    return existing


def get(
    session: Session,
    request_id: str,
    direction: RequestDirection | None = None,
    *,
    for_update: bool = False,
) -> AssistanceRequest:
    """The request with this id (in this direction, when given); `for_update` locks its row."""
    request = session.get(
        AssistanceRequest,
        request_id,
        with_for_update=for_update or None,
        populate_existing=for_update,
    )
    if request is None or (direction is not None and request.direction is not direction):
        where = "" if direction is None else f" {direction.value}"
        raise UnknownRequestError(f"no{where} assistance request {request_id} at this node")
    return request


class Listed(NamedTuple):
    """What a listing shows of a request: its columns, without the sealed identity and the
    other fields only the request's own page reads."""

    request_id: str
    direction: RequestDirection
    peer_node_id: str
    beneficiary_id: str | None
    residence_region: str
    paying_region: str
    status: AssistanceState
    status_reason: str
    deadline: datetime
    created_at: datetime
    updated_at: datetime
    attestation_id: str | None
    scheduled_for: datetime | None


_LISTED = sa_select(*(getattr(AssistanceRequest, name) for name in Listed._fields))


def page(
    session: Session,
    direction: RequestDirection | None,
    status: AssistanceState | None,
    page_size: int,
    page_token: str,
) -> tuple[list[Listed], str]:
    """Requests oldest first, optionally of one direction and one status."""
    statement = _LISTED
    if direction is not None:
        statement = statement.where(col(AssistanceRequest.direction) == direction)
    if status is not None:
        statement = statement.where(col(AssistanceRequest.status) == status)
    rows, token = keyset_rows(
        session,
        statement,
        key=col(AssistanceRequest.request_id),
        key_of=lambda row: str(row[0]),
        page_size=page_size,
        page_token=page_token,
    )
    return [Listed._make(row) for row in rows], token


def open_for_beneficiary(session: Session, beneficiary_id: str) -> AssistanceRequest | None:
    """The beneficiary's open outbound request, if there is one."""
    return _open_request_for(session, beneficiary_id)


def set_local_status(
    session: Session,
    request: AssistanceRequest,
    status: AssistanceState,
    reason: str,
    scheduled_for: datetime | None,
    now: datetime,
) -> int:
    """Move an inbound request (residence side); returns the new status sequence.

    Legal: received -> accepted / scheduled / declined; accepted -> scheduled / declined;
    scheduled -> scheduled (a new date) / declined; any open status -> completed.
    """
    if request.direction is not RequestDirection.INBOUND:
        raise PreconditionError(
            f"request {request.request_id} was sent by this node; only the residence node "
            "changes its status"
        )
    # Re-read under a row lock: two clerks acting at once must not both move the request.
    lock_and_refresh(session, request)
    sequence = _move(request, status, reason, scheduled_for, now)
    session.add(request)
    session.flush()
    return sequence


def _move(
    request: AssistanceRequest,
    status: AssistanceState,
    reason: str,
    scheduled_for: datetime | None,
    now: datetime,
) -> int:
    """`set_local_status` on a request read under its row lock, not yet written."""
    if status not in _LEGAL_LOCAL_MOVES.get(request.status, frozenset()):
        raise PreconditionError(_illegal_move(request, status))
    request.status = status
    request.status_reason = reason
    if status is AssistanceState.SCHEDULED:
        request.scheduled_for = scheduled_for
    request.status_sequence += 1
    request.updated_at = now
    return request.status_sequence


def _illegal_move(request: AssistanceRequest, status: AssistanceState) -> str:
    current = request.status
    if current is status:
        return f"request {request.request_id} is already {current.value}"
    if current in OPEN_ASSISTANCE_STATES:
        return f"request {request.request_id} is {current.value}; it cannot be {_VERBS[status]}"
    return f"request {request.request_id} is {current.value}; it can no longer be {_VERBS[status]}"


def apply_remote_status(
    session: Session,
    request: AssistanceRequest,
    status: AssistanceState,
    reason: str,
    scheduled_for: datetime | None,
    sequence: int,
    now: datetime,
) -> bool:
    """Apply the residence node's status to an outbound request; returns whether it changed.

    A sequence not above the last one applied is a stale redelivery and is ignored, except the
    peer's acknowledgement that it received the request (status received, sequence 0), which
    moves a queued request on. A completed request stays completed: the attestation decided it.
    """
    if request.direction is not RequestDirection.OUTBOUND:
        raise PreconditionError(
            f"request {request.request_id} was received by this node; its status is set here"
        )
    if status is AssistanceState.QUEUED:
        raise InvalidInputError("status", "a residence node cannot report a request as queued")
    lock_and_refresh(session, request)
    if request.status is AssistanceState.COMPLETED:
        return False
    acknowledgement = (
        status is AssistanceState.RECEIVED and request.status is AssistanceState.QUEUED
    )
    if sequence <= request.status_sequence and not acknowledgement:
        return False
    request.status = status
    request.status_reason = reason
    request.scheduled_for = scheduled_for
    request.status_sequence = max(sequence, request.status_sequence)
    if status not in OPEN_ASSISTANCE_STATES:
        request.open_beneficiary_id = None
    request.updated_at = now
    session.add(request)
    session.flush()
    return True


def complete(
    session: Session, request: AssistanceRequest, attestation_id: str, now: datetime
) -> int:
    """Close a request with the attestation that answers it; returns its status sequence.
    `request` was read in this transaction with `get(..., for_update=True)`, so the request is
    completed once however many answers arrive at once.

    Inbound (residence side): a legal move to completed, with a new sequence to send to the
    paying node. Outbound (paying side): the attestation arrived, which settles the request
    whatever status the peer last reported; completing it again changes nothing.
    """
    if request.direction is RequestDirection.INBOUND:
        sequence = _move(request, AssistanceState.COMPLETED, "", None, now)
        request.attestation_id = attestation_id
        session.add(request)
        session.flush()
        return sequence
    if request.status is AssistanceState.COMPLETED and request.attestation_id is not None:
        return request.status_sequence
    # The peer's "completed" status may have arrived before the attestation itself.
    if request.status is not AssistanceState.COMPLETED:
        request.status = AssistanceState.COMPLETED
        request.status_reason = ""
    request.attestation_id = attestation_id
    request.open_beneficiary_id = None
    request.updated_at = now
    session.add(request)
    session.flush()
    return request.status_sequence
