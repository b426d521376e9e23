"""The transactional outbox: messages to peers and the registry, committed with their cause.

A flow enqueues a message in the same transaction as the state change it announces, so either
both happen or neither does. The dispatcher claims due messages, delivers them and marks each
delivered, failed (retried later, with exponential backoff and jitter, up to a bound on attempts
and on age) or dead (an operator-visible dead letter an administrator can put back).

Claiming is safe with several replicas: rows are selected `FOR UPDATE SKIP LOCKED`, so two
dispatchers never take the same message at once, and a claim leases the message (pushes its
next attempt `lease_s` ahead, and names the replica holding it) so that a dispatcher may deliver
outside the claiming transaction. If it dies mid-delivery, the same replica releases its leases
when it starts again (`release_leases`), or, if it never comes back, the lease runs out and
another takes the message over. Receivers are idempotent, so such a redelivery changes nothing.
A destination that is reachable again ends the backoff of what waits for it (`end_backoff`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, update
from sqlalchemy.engine import CursorResult
from sqlmodel import Session, col, func, select

from federation import tracing
from federation.errors import NotFoundError, PreconditionError
from federation_node.config import DispatchConfig
from federation_node.ids import new_id, new_ids
from federation_node.store.bulk_insert import insert_rows
from federation_node.store.db import keyset_page, lock_and_refresh
from federation_node.store.models import DeliveryState, OutboxKind, OutboxMessage

MAX_ERROR_LENGTH = 500
DEFAULT_LEASE_S = 60.0


def enqueue(
    session: Session,
    *,
    kind: OutboxKind,
    destination: str,
    subject_id: str,
    payload: bytes,
    now: datetime,
) -> OutboxMessage:
    """Add a message, due now, in the caller's transaction."""
    message = OutboxMessage(
        message_id=new_id(),
        kind=kind,
        destination=destination,
        subject_id=subject_id,
        payload=payload,
        state=DeliveryState.PENDING,
        attempts=0,
        next_attempt_at=now,
        last_error="",
        created_at=now,
        delivered_at=None,
        retried_at=None,
    )
    session.add(message)
    session.flush()
    # Its delivery joins the trace it was queued in, when tracing is on.
    tracing.remember(message.message_id)
    return message


def enqueue_many(
    session: Session,
    *,
    kind: OutboxKind,
    messages: Iterable[tuple[str, str, bytes]],
    now: datetime,
) -> int:
    """Add messages, each (destination, subject id, payload), due now, in the caller's
    transaction, in one bulk insert (the bulk issuing path); the rows `enqueue` would add."""
    pending = messages if isinstance(messages, Sequence) else list(messages)
    if not pending:
        return 0
    message_ids = new_ids(len(pending))
    if tracing.enabled():
        # Their deliveries join the trace they were queued in, as `enqueue`'s does.
        for message_id in message_ids:
            tracing.remember(message_id)
    rows = (
        (message_id, destination, subject_id, payload)
        for message_id, (destination, subject_id, payload) in zip(message_ids, pending, strict=True)
    )
    return insert_rows(
        session,
        OutboxMessage.__table__,  # type: ignore[attr-defined]
        ("message_id", "destination", "subject_id", "payload"),
        rows,
        same={
            "kind": kind,
            "state": DeliveryState.PENDING,
            "attempts": 0,
            "next_attempt_at": now,
            "last_error": "",
            "created_at": now,
        },
    )


def claim_due(
    session: Session,
    now: datetime,
    limit: int,
    *,
    lease_s: float = DEFAULT_LEASE_S,
    owner: str | None = None,
) -> list[OutboxMessage]:
    """Take up to `limit` pending messages that are due, earliest first, and lease them to
    `owner` (a dispatcher replica's id).

    Rows another transaction holds are skipped, not waited for. Each claimed message's next
    attempt moves `lease_s` ahead, so once this transaction commits no other dispatcher takes
    it until the lease runs out, it is marked, or its owner releases it.
    """
    messages = list(
        session.exec(
            select(OutboxMessage)
            .where(
                OutboxMessage.state == DeliveryState.PENDING,
                OutboxMessage.next_attempt_at <= now,
            )
            .order_by(col(OutboxMessage.next_attempt_at), col(OutboxMessage.message_id))
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    lease_until = now + timedelta(seconds=lease_s)
    for message in messages:
        message.next_attempt_at = lease_until
        message.leased_by = owner
        session.add(message)
    session.flush()
    return messages


def release_leases(session: Session, owner: str | None, now: datetime) -> int:
    """Make due now every pending message leased to `owner` (to anyone: None); how many.

    A replica calls this as it starts, before it claims anything: what it holds then, its
    previous incarnation claimed and died delivering, and nobody delivers it now. A restore
    releases every lease, since no replica of the restored database is running.
    """
    leased = (
        col(OutboxMessage.leased_by).is_not(None)
        if owner is None
        else col(OutboxMessage.leased_by) == owner
    )
    result = session.execute(
        update(OutboxMessage)
        .where(col(OutboxMessage.state) == DeliveryState.PENDING, leased)
        .values(next_attempt_at=now, leased_by=None)
        .execution_options(synchronize_session=False)
    )
    return int(cast(CursorResult[Any], result).rowcount)


def end_backoff(session: Session, destination: str, now: datetime) -> int:
    """Make due now the pending messages to `destination` that wait out a backoff (not those a
    dispatcher holds leased): the destination is reachable again. Returns how many."""
    result = session.execute(
        update(OutboxMessage)
        .where(
            col(OutboxMessage.state) == DeliveryState.PENDING,
            col(OutboxMessage.destination) == destination,
            col(OutboxMessage.next_attempt_at) > now,
            col(OutboxMessage.leased_by).is_(None),
        )
        .values(next_attempt_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(cast(CursorResult[Any], result).rowcount)


def mark_all_delivered(session: Session, message_ids: list[str], now: datetime) -> int:
    """Mark a dispatcher pass's successes delivered, in one statement; returns how many were
    still pending (a message an operator meanwhile changed is left as it is)."""
    return _update_pending(
        session,
        message_ids,
        state=DeliveryState.DELIVERED,
        delivered_at=now,
        last_error="",
        leased_by=None,
    )


def _update_pending(
    session: Session, message_ids: list[str], *criteria: ColumnElement[bool], **values: Any
) -> int:
    """One UPDATE setting `values` on those of `message_ids` still pending (and matching
    `criteria`); how many it changed."""
    if not message_ids:
        return 0
    result = session.execute(
        update(OutboxMessage)
        .where(
            col(OutboxMessage.message_id).in_(message_ids),
            col(OutboxMessage.state) == DeliveryState.PENDING,
            *criteria,
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return int(cast(CursorResult[Any], result).rowcount)


def mark_failed(
    session: Session,
    message: OutboxMessage,
    error: str,
    now: datetime,
    config: DispatchConfig,
) -> None:
    """Count a failed attempt: retry after a backoff, or dead-letter when out of the budget
    `config` gives (max_attempts, max_age_s)."""
    _attach(session, message)
    message.attempts += 1
    message.last_error = _truncate(error)
    message.leased_by = None
    started = message.retried_at or message.created_at
    out_of_attempts = message.attempts >= config.max_attempts
    out_of_time = (now - started).total_seconds() >= config.max_age_s
    if out_of_attempts or out_of_time:
        message.state = DeliveryState.DEAD
        message.next_attempt_at = now
    else:
        message.next_attempt_at = now + timedelta(seconds=config.backoff_s(message.attempts))
    session.add(message)
    session.flush()


def defer(
    session: Session, message: OutboxMessage, reason: str, now: datetime, until: datetime
) -> None:
    """Hold a message without counting an attempt: its destination (or this node) is
    suspended, which lasts as long as an investigation does, and is no delivery failure. Neither
    the attempt nor the age budget is spent; it goes out once the suspension is lifted."""
    _attach(session, message)
    message.last_error = _truncate(reason)
    message.next_attempt_at = until
    message.leased_by = None
    session.add(message)
    session.flush()


def defer_all(session: Session, message_ids: list[str], reason: str, until: datetime) -> None:
    """`defer` for many messages at once (one UPDATE): those still pending wait until `until`."""
    _update_pending(
        session, message_ids, last_error=_truncate(reason), next_attempt_at=until, leased_by=None
    )


def make_due(session: Session, message_ids: list[str], now: datetime) -> int:
    """Those of `message_ids` still pending and leased to nobody are due now; how many."""
    return _update_pending(
        session,
        message_ids,
        col(OutboxMessage.leased_by).is_(None),
        col(OutboxMessage.next_attempt_at) > now,
        next_attempt_at=now,
    )


def mark_dead(session: Session, message: OutboxMessage, error: str, now: datetime) -> None:
    """Dead-letter at once: the peer refused the message for good (permission, input, unknown)."""
    _attach(session, message)
    message.attempts += 1
    message.state = DeliveryState.DEAD
    message.last_error = _truncate(error)
    message.next_attempt_at = now
    message.leased_by = None
    session.add(message)
    session.flush()


def get(session: Session, message_id: str) -> OutboxMessage:
    message = session.get(OutboxMessage, message_id)
    if message is None:
        raise NotFoundError(f"no outbox message {message_id} at this node")
    return message


def retry_dead(session: Session, message_id: str, now: datetime) -> OutboxMessage:
    """Put a dead letter back in the queue, due now, with a fresh retry budget."""
    message = get(session, message_id)
    lock_and_refresh(session, message)
    if message.state is not DeliveryState.DEAD:
        raise PreconditionError(
            f"outbox message {message_id} is {message.state.value}; only a dead letter can be "
            "retried"
        )
    message.state = DeliveryState.PENDING
    message.attempts = 0
    message.next_attempt_at = now
    message.retried_at = now
    session.add(message)
    session.flush()
    return message


def page(
    session: Session, state: DeliveryState | None, page_size: int, page_token: str
) -> tuple[list[OutboxMessage], str]:
    """Messages oldest first in one state; None lists pending and dead ones (what needs care)."""
    statement = select(OutboxMessage)
    if state is None:
        statement = statement.where(
            col(OutboxMessage.state).in_([DeliveryState.PENDING, DeliveryState.DEAD])
        )
    else:
        statement = statement.where(OutboxMessage.state == state)
    return keyset_page(
        session,
        statement,
        key=col(OutboxMessage.message_id),
        key_of=lambda row: row.message_id,
        page_size=page_size,
        page_token=page_token,
    )


def next_due(session: Session) -> datetime | None:
    """When the earliest pending message falls due; None when nothing is pending."""
    return session.exec(
        select(func.min(OutboxMessage.next_attempt_at)).where(
            OutboxMessage.state == DeliveryState.PENDING
        )
    ).one()


def _attach(session: Session, message: OutboxMessage) -> None:
    # A dispatcher may deliver outside the claiming transaction and mark in a new one.
    if message not in session:
        session.add(message)


def _truncate(error: str) -> str:
    return error if len(error) <= MAX_ERROR_LENGTH else error[: MAX_ERROR_LENGTH - 1] + "…"


@dataclass(frozen=True)
class Backlog:
    """What waits for one destination: pending messages, since when the oldest has waited, and
    dead letters."""

    destination: str
    pending: int
    oldest_pending_since: datetime | None
    dead: int


def backlog_by_destination(session: Session) -> list[Backlog]:
    """Pending and dead messages per destination (for monitoring), ordered by destination.

    A message an administrator put back waits since it was put back, as its retry budget does.
    """
    waiting_since = func.coalesce(OutboxMessage.retried_at, OutboxMessage.created_at)
    rows = session.exec(
        select(
            OutboxMessage.destination,
            OutboxMessage.state,
            func.count(),
            func.min(waiting_since),
        )
        .where(col(OutboxMessage.state).in_([DeliveryState.PENDING, DeliveryState.DEAD]))
        .group_by(col(OutboxMessage.destination), col(OutboxMessage.state))
    ).all()
    pending: dict[str, tuple[int, datetime | None]] = {}
    dead: dict[str, int] = {}
    for destination, state, count, oldest in rows:
        if state == DeliveryState.PENDING:
            pending[destination] = (int(count), oldest)
        else:
            dead[destination] = int(count)
    return [
        Backlog(
            destination=destination,
            pending=pending.get(destination, (0, None))[0],
            oldest_pending_since=pending.get(destination, (0, None))[1],
            dead=dead.get(destination, 0),
        )
        for destination in sorted(pending.keys() | dead.keys())
    ]
