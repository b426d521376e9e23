"""The lifecycle tables keep their idempotency promises on both engines: a cycle day is claimed
once even by competing replicas, and a payment instruction, a signal and a reminder are each
written once."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from federation_node.rules.entitlement import EntitlementState, ReminderKind
from federation_node.store import (
    cycles_store,
    entitlements_store,
    payments_store,
    reminders_store,
    signals_store,
)
from federation_node.store.db import session_scope
from federation_node.store.models import Beneficiary, PaymentAction, SignalOutcome
from tests.helpers.statements import counted_statements

DAY = date(2025, 7, 1)


def test_a_cycle_day_is_claimed_once_by_competing_replicas(engine: Engine, now: datetime) -> None:
    claimed: list[bool] = []

    def replica(name: str) -> None:
        with session_scope(engine) as session:
            run = cycles_store.claim(session, DAY, name, now)
            claimed.append(run is not None)
            if run is not None:
                # Hold the claim open a little, as a real cycle does while it works.
                threading.Event().wait(0.3)

    threads = [threading.Thread(target=replica, args=(f"replica-{i}",)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(claimed) == [False, True]
    with session_scope(engine) as session:
        assert cycles_store.claim(session, DAY, "later", now) is None
        assert cycles_store.claim(session, DAY + timedelta(days=1), "later", now) is not None


def test_a_payment_instruction_is_written_once_per_month_and_action(
    engine: Engine, add_beneficiary: Callable[..., Beneficiary], now: datetime
) -> None:
    person = add_beneficiary()
    for _ in range(2):
        with session_scope(engine) as session:
            payments_store.add(
                session,
                beneficiary_id=person.beneficiary_id,
                action=PaymentAction.SUSPEND,
                effective_month="2025-07",
                now=now,
            )
    with session_scope(engine) as session:
        written = payments_store.for_beneficiary(session, person.beneficiary_id)
    assert [(i.action, i.effective_month) for i in written] == [(PaymentAction.SUSPEND, "2025-07")]


def test_a_signal_recorded_twice_breaks_the_unique_key(
    engine: Engine, add_beneficiary: Callable[..., Beneficiary], now: datetime
) -> None:
    person = add_beneficiary()

    def record() -> None:
        with session_scope(engine) as session:
            signals_store.add(
                session,
                source="hospitals",
                source_record_id="r-1",
                kind=1,
                beneficiary_id=person.beneficiary_id,
                observed_at=now,
                outcome=SignalOutcome.APPLIED,
                attestation_id=None,
                recorded_by="clerk",
                now=now,
            )

    record()
    with pytest.raises(IntegrityError):
        record()
    with session_scope(engine) as session:
        assert list(signals_store.known(session, [("hospitals", "r-1"), ("hospitals", "r-2")])) == [
            ("hospitals", "r-1")
        ]


def test_reminders_are_queued_once_and_acknowledged_once(
    engine: Engine, add_beneficiary: Callable[..., Beneficiary], now: datetime
) -> None:
    people = [add_beneficiary(), add_beneficiary()]
    expires = now + timedelta(days=30)
    with session_scope(engine) as session:
        entitlements_store.open_many(session, [(p.beneficiary_id, 250_000) for p in people], now)
        reminders = [
            reminders_store.queue(
                session,
                beneficiary_id=person.beneficiary_id,
                kind=ReminderKind.DUE,
                expires_at=expires,
                offset_days=-30,
                now=now,
            )
            for person in people
        ]
        ids = sorted(reminder.reminder_id for reminder in reminders)
    with session_scope(engine) as session:
        assert reminders_store.queued_for(session, [people[0].beneficiary_id]) == {
            (people[0].beneficiary_id, expires, -30)
        }
        assert entitlements_store.get(session, people[0].beneficiary_id).state is (
            EntitlementState.ACTIVE
        )
    # A page comes with each person's sealed identity and locator, read in one statement.
    with Session(engine) as session, counted_statements(engine) as statements:
        first, token = reminders_store.waiting(session, 1)
        rest, last = reminders_store.waiting(session, 1, token)
    assert len([s for s in statements if s.startswith("SELECT")]) == 2
    assert last == ""
    by_person = {person.beneficiary_id: person for person in people}
    for waiting, reminder_id in zip([*first, *rest], ids, strict=True):
        person = by_person[waiting.beneficiary_id]
        assert waiting.reminder_id == reminder_id
        assert (waiting.kind, waiting.expires_at) == (ReminderKind.DUE, expires)
        assert waiting.sealed_identity == person.sealed_identity
        assert waiting.subject_locator == person.subject_locator
    with session_scope(engine) as session:
        assert reminders_store.acknowledge(session, ids[:1], now) == 1
    with session_scope(engine) as session:
        # The one acknowledged before counts no more; the other does.
        assert reminders_store.acknowledge(session, ids, now) == 1
        assert reminders_store.acknowledge(session, ids, now) == 0
        assert reminders_store.waiting(session, 10)[0] == []
