"""The outbox delivers every message once per claim, backs off, dead-letters, and can retry."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine

from federation.errors import NotFoundError, PreconditionError
from federation_node.config import DispatchConfig
from federation_node.ids import new_id
from federation_node.store import outbox
from federation_node.store.db import session_scope
from federation_node.store.models import DeliveryState, OutboxKind, OutboxMessage

NO_JITTER = DispatchConfig(initial_backoff_s=0.5, max_backoff_s=8.0, jitter_s=0.0)


def _enqueue(engine: Engine, now: datetime, count: int = 1) -> list[OutboxMessage]:
    with session_scope(engine) as session:
        return [
            outbox.enqueue(
                session,
                kind=OutboxKind.DELIVER_ATTESTATION,
                destination="qingdao",
                subject_id=new_id(),
                payload=b"\x0a\x02hi",
                now=now,
            )
            for _ in range(count)
        ]


def _claim(engine: Engine, now: datetime, limit: int = 10) -> list[OutboxMessage]:
    with session_scope(engine) as session:
        return outbox.claim_due(session, now, limit)


def _fail(
    engine: Engine, message_id: str, now: datetime, policy: DispatchConfig, error: str = "x"
) -> OutboxMessage:
    with session_scope(engine) as session:
        message = outbox.get(session, message_id)
        outbox.mark_failed(session, message, error, now, policy)
        return message


def test_enqueued_messages_are_claimed_in_order_and_delivered_once(
    engine: Engine, now: datetime
) -> None:
    first, second = _enqueue(engine, now, 2)
    claimed = _claim(engine, now)
    assert [m.message_id for m in claimed] == [first.message_id, second.message_id]
    assert claimed[0].payload == b"\x0a\x02hi"
    with session_scope(engine) as session:
        assert outbox.mark_all_delivered(session, [m.message_id for m in claimed], now) == 2
    assert _claim(engine, now + timedelta(days=1)) == []
    with session_scope(engine) as session:
        assert outbox.get(session, first.message_id).state is DeliveryState.DELIVERED
        assert outbox.get(session, first.message_id).delivered_at == now
        assert outbox.next_due(session) is None


def test_a_claimed_message_is_leased_until_marked_or_the_lease_ends(
    engine: Engine, now: datetime
) -> None:
    (message,) = _enqueue(engine, now)
    assert len(_claim(engine, now)) == 1
    assert _claim(engine, now + timedelta(seconds=1)) == []
    with session_scope(engine) as session:
        assert outbox.next_due(session) == now + timedelta(seconds=outbox.DEFAULT_LEASE_S)
    retaken = _claim(engine, now + timedelta(seconds=outbox.DEFAULT_LEASE_S))
    assert [m.message_id for m in retaken] == [message.message_id]


def test_a_message_not_yet_due_is_not_claimed(engine: Engine, now: datetime) -> None:
    _enqueue(engine, now)
    assert _claim(engine, now - timedelta(seconds=1)) == []


def test_backoff_doubles_then_stays_at_the_bound(engine: Engine, now: datetime) -> None:
    (message,) = _enqueue(engine, now)
    waits = []
    for _ in range(7):
        failed = _fail(engine, message.message_id, now, NO_JITTER)
        waits.append((failed.next_attempt_at - now).total_seconds())
    assert waits == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert failed.attempts == 7
    assert failed.state is DeliveryState.PENDING


def test_message_is_dead_after_the_last_attempt(engine: Engine, now: datetime) -> None:
    (message,) = _enqueue(engine, now)
    policy = DispatchConfig(max_attempts=3)
    states = [_fail(engine, message.message_id, now, policy).state for _ in range(3)]
    assert states == [DeliveryState.PENDING, DeliveryState.PENDING, DeliveryState.DEAD]
    assert _claim(engine, now + timedelta(days=1)) == []


def test_message_is_dead_once_too_old(engine: Engine, now: datetime) -> None:
    (message,) = _enqueue(engine, now)
    policy = DispatchConfig(max_age_s=3600.0)
    assert _fail(engine, message.message_id, now + timedelta(minutes=59), policy).state is (
        DeliveryState.PENDING
    )
    assert _fail(engine, message.message_id, now + timedelta(hours=1), policy).state is (
        DeliveryState.DEAD
    )


def test_permanent_refusal_dead_letters_at_once_with_a_truncated_error(
    engine: Engine, now: datetime
) -> None:
    (message,) = _enqueue(engine, now)
    with session_scope(engine) as session:
        stored = outbox.get(session, message.message_id)
        outbox.mark_dead(session, stored, "PERMISSION_DENIED: " + "x" * 1000, now)
    with session_scope(engine) as session:
        dead = outbox.get(session, message.message_id)
        assert dead.state is DeliveryState.DEAD
        assert len(dead.last_error) == outbox.MAX_ERROR_LENGTH
        assert dead.last_error.startswith("PERMISSION_DENIED")


def test_retrying_a_dead_letter_gives_it_a_fresh_budget(engine: Engine, now: datetime) -> None:
    (message,) = _enqueue(engine, now)
    policy = DispatchConfig(max_attempts=1, max_age_s=60.0)
    assert _fail(engine, message.message_id, now, policy).state is DeliveryState.DEAD
    later = now + timedelta(days=2)
    with session_scope(engine) as session:
        retried = outbox.retry_dead(session, message.message_id, later)
        assert retried.state is DeliveryState.PENDING
        assert retried.attempts == 0
    assert [m.message_id for m in _claim(engine, later)] == [message.message_id]
    # The age limit counts from the retry, not from when the message was first written.
    assert _fail(engine, message.message_id, later, DispatchConfig(max_age_s=60.0)).state is (
        DeliveryState.PENDING
    )


def test_only_a_dead_letter_can_be_retried(engine: Engine, now: datetime) -> None:
    (message,) = _enqueue(engine, now)
    with session_scope(engine) as session:
        with pytest.raises(PreconditionError, match="only a dead letter"):
            outbox.retry_dead(session, message.message_id, now)
        with pytest.raises(NotFoundError):
            outbox.retry_dead(session, "m-404", now)


def test_default_listing_shows_what_needs_care(engine: Engine, now: datetime) -> None:
    delivered, pending, dead = _enqueue(engine, now, 3)
    with session_scope(engine) as session:
        outbox.mark_all_delivered(session, [delivered.message_id], now)
        outbox.mark_dead(session, outbox.get(session, dead.message_id), "NOT_FOUND", now)
    with session_scope(engine) as session:
        rows, _ = outbox.page(session, None, 10, "")
        assert [m.message_id for m in rows] == [pending.message_id, dead.message_id]
        rows, _ = outbox.page(session, DeliveryState.DELIVERED, 10, "")
        assert [m.message_id for m in rows] == [delivered.message_id]


def test_marking_works_in_a_later_transaction_than_the_claim(engine: Engine, now: datetime) -> None:
    (message,) = _enqueue(engine, now)
    (claimed,) = _claim(engine, now)
    with session_scope(engine) as session:
        outbox.mark_failed(session, claimed, "UNAVAILABLE", now, NO_JITTER)
    with session_scope(engine) as session:
        stored = outbox.get(session, message.message_id)
        assert stored.attempts == 1
        assert stored.last_error == "UNAVAILABLE"
        assert stored.next_attempt_at == now + timedelta(seconds=0.5)


def test_concurrent_dispatchers_deliver_every_message_exactly_once(
    engine: Engine, now: datetime
) -> None:
    messages = _enqueue(engine, now, 40)
    delivered: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(4)

    def dispatcher() -> None:
        barrier.wait()
        while True:
            with session_scope(engine) as session:
                batch = outbox.claim_due(session, now, 3)
                outbox.mark_all_delivered(session, [m.message_id for m in batch], now)
            if not batch:
                return
            with lock:
                delivered.extend(m.message_id for m in batch)

    threads = [threading.Thread(target=dispatcher) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(delivered) == sorted(m.message_id for m in messages)


@pytest.mark.postgres
def test_rows_claimed_by_an_open_transaction_are_skipped_not_shared(
    pg_engine: Engine, now: datetime
) -> None:
    _enqueue(pg_engine, now, 6)
    with session_scope(pg_engine) as first:
        held = outbox.claim_due(first, now, 3)
        # The first transaction has not committed: its rows are locked, not yet leased.
        with session_scope(pg_engine) as second:
            others = outbox.claim_due(second, now, 10)
    held_ids = {m.message_id for m in held}
    other_ids = {m.message_id for m in others}
    assert len(held_ids) == 3
    assert len(other_ids) == 3
    assert held_ids.isdisjoint(other_ids)


def test_a_restarted_replica_releases_its_own_leases_and_no_other(
    engine: Engine, now: datetime
) -> None:
    mine, theirs = _enqueue(engine, now, 2)
    with session_scope(engine) as session:
        assert len(outbox.claim_due(session, now, 1, owner="replica-a")) == 1
        assert len(outbox.claim_due(session, now, 1, owner="replica-b")) == 1
    later = now + timedelta(seconds=1)
    with session_scope(engine) as session:
        assert outbox.release_leases(session, "replica-a", later) == 1
    retaken = _claim(engine, later)
    assert [m.message_id for m in retaken] == [mine.message_id]
    with session_scope(engine) as session:
        assert outbox.get(session, theirs.message_id).leased_by == "replica-b"
        outbox.mark_all_delivered(session, [mine.message_id, theirs.message_id], later)
        assert outbox.get(session, theirs.message_id).leased_by is None


def test_a_destination_back_ends_the_backoff_of_its_waiting_messages_only(
    engine: Engine, now: datetime
) -> None:
    waiting, leased = _enqueue(engine, now, 2)
    with session_scope(engine) as session:
        other = outbox.enqueue(
            session,
            kind=OutboxKind.DELIVER_ATTESTATION,
            destination="lanzhou",
            subject_id=new_id(),
            payload=b"",
            now=now,
        )
    for message in (waiting, other):
        _fail(engine, message.message_id, now, NO_JITTER)
    with session_scope(engine) as session:
        assert [m.message_id for m in outbox.claim_due(session, now, 5, owner="a")] == [
            leased.message_id
        ]
    back = now + timedelta(milliseconds=100)
    with session_scope(engine) as session:
        assert outbox.end_backoff(session, "qingdao", back) == 1
    # The message waiting for qingdao is due; the leased one and lanzhou's keep their times.
    assert [m.message_id for m in _claim(engine, back)] == [waiting.message_id]
