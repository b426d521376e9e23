"""The daily cycle in batches gives exactly what the row-by-row cycle gives, on SQLite and on
PostgreSQL: over random rolls (any stored state, validity ending anywhere around the day or never
certified, terminations awaiting review, payment already withheld, reminders already queued, a
closed month, a record whose dates cannot be computed) the same entitlements, payment
instructions, reminders, counts and skipped people, day after day.

One real office (keys, certificate and directory from a real registry) is composed twice in this
process on two databases of the same engine, with the same clock: `bulk_cycle = true` with a
batch of a few people (so that every roll spans several batches), and `bulk_cycle = false`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlmodel import Session

from federation_node.offices.context import Actor
from federation_node.offices.node import Node, compose_node
from federation_node.rules.entitlement import (
    EntitlementState,
    ReminderKind,
    month_label,
    reminder_offset,
)
from federation_node.rules.policy import load_policy
from federation_node.store.db import create_engine_for, migrate, session_scope
from federation_node.store.models import (
    Beneficiary,
    BeneficiaryState,
    ClosedMonth,
    Entitlement,
    IdentityType,
    Reminder,
)
from tests.conftest import PostgresUrlFactory
from tests.helpers.feed_office import EnrolledOffice, enrolled_office

NOW = datetime.now(UTC).replace(microsecond=0)
ADMIN = Actor("operator", "op-cycle-admin")
TABLES = (
    "reminder",
    "payment_instruction",
    "entitlement",
    "beneficiary",
    "cycle_run",
    "closed_month",
    "audit_pending",
)
STATES = list(EntitlementState)


@dataclasses.dataclass(frozen=True)
class Person:
    # Days from the first day run to the end of validity; None: never certified.
    end_days: int | None
    end_second: int
    state: EntitlementState
    pending_review: bool
    withheld: bool
    # An offset of the policy's reminder schedule already queued for this validity end.
    reminded: int | None
    # Validity in year 9999: calendar months past it cannot be computed.
    broken: bool


people = st.builds(
    Person,
    end_days=st.one_of(st.none(), st.integers(-200, 120)),
    end_second=st.integers(0, 86_399),
    state=st.sampled_from(STATES),
    pending_review=st.sampled_from([False, False, False, False, True]),
    withheld=st.sampled_from([False, False, True]),
    reminded=st.sampled_from([None, None, -30, -7, 0, 30, 60]),
    broken=st.sampled_from([False] * 15 + [True]),
)


@dataclasses.dataclass
class Offices:
    batched: Node
    rows: Node


@pytest.fixture(scope="module")
def office(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EnrolledOffice]:
    with enrolled_office(tmp_path_factory.mktemp("cycle-office")) as enrolled:
        yield enrolled


CLOCK = [NOW]


def _compose(office: EnrolledOffice, url: str, *, bulk_cycle: bool) -> Node:
    migrate(url)
    config = dataclasses.replace(office.config, database_url=url, bulk_cycle=bulk_cycle)
    return compose_node(
        config,
        office.keys,
        create_engine_for(url),
        office.directory,
        load_policy(config.policy_file),
        lambda _locator: [],
        clock=lambda: CLOCK[0],
        locators=office.locators,
    )


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def offices(
    request: pytest.FixtureRequest,
    office: EnrolledOffice,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Offices]:
    if request.param == "sqlite":
        folder: Path = tmp_path_factory.mktemp("cycle-sqlite")
        urls = [f"sqlite:///{folder / 'batched.db'}", f"sqlite:///{folder / 'rows.db'}"]
    else:
        factory: PostgresUrlFactory = request.getfixturevalue("postgres_url_factory")
        urls = [factory(), factory()]
    batched = _compose(office, urls[0], bulk_cycle=True)
    # A few people per batch: every roll spans several batches and their boundaries.
    batched.daily_cycle.batch_size = 3
    rows = _compose(office, urls[1], bulk_cycle=False)
    try:
        yield Offices(batched, rows)
    finally:
        batched.context.engine.dispose()
        rows.context.engine.dispose()


def _seed(node: Node, roll: list[Person], first_day: date, closed: int | None) -> None:
    start = datetime.combine(first_day, datetime.min.time(), tzinfo=UTC)
    with session_scope(node.context.engine) as session:
        for table in TABLES:
            session.execute(text(f"DELETE FROM {table}"))  # noqa: S608 - our table names
        if closed is not None:
            month = month_label(first_day.replace(day=1) - timedelta(days=31 * closed))
            session.add(ClosedMonth(month=month, closed_by="test", closed_at=NOW))
        for index, person in enumerate(roll):
            beneficiary_id = f"b{index:04d}"
            if person.broken:
                valid_until: datetime | None = datetime(9999, 12, 20, tzinfo=UTC)
            elif person.end_days is None:
                valid_until = None
            else:
                valid_until = start + timedelta(days=person.end_days, seconds=person.end_second)
            created = start - timedelta(days=400 - index, seconds=person.end_second)
            session.add(
                Beneficiary(
                    beneficiary_id=beneficiary_id,
                    subject_locator=index.to_bytes(32, "big"),
                    identity_type=IdentityType.RESIDENT_ID,
                    masked_identity_number="440604********0000",
                    sealed_identity=b"\x00",
                    residence_region="440604",
                    paying_region="440600",
                    status=BeneficiaryState.ACTIVE,
                    status_effective_at=None,
                    valid_until=valid_until,
                    possible_duplicate=False,
                    created_at=created,
                    updated_at=created,
                    scheme=None,
                    payment_start_month=None,
                )
            )
            session.flush()
            session.add(
                Entitlement(
                    beneficiary_id=beneficiary_id,
                    monthly_amount_fen=250_000,
                    state=person.state,
                    state_since=created,
                    termination_pending_review=person.pending_review,
                    pending_status=None,
                    pending_effective_at=None,
                    withheld_from_month=month_label(first_day) if person.withheld else None,
                    overpayment_fen=0,
                    updated_at=created,
                )
            )
            expires = valid_until or created
            if person.reminded is not None and not person.broken:
                session.add(
                    Reminder(
                        reminder_id=f"r{index:04d}",
                        beneficiary_id=beneficiary_id,
                        kind=ReminderKind.DUE if person.reminded < 0 else ReminderKind.WARNING,
                        expires_at=expires,
                        offset_days=person.reminded,
                        acknowledged=False,
                        acknowledged_at=None,
                        created_at=created,
                    )
                )


def _state_of(node: Node) -> dict[str, list[tuple[Any, ...]]]:
    """Everything the cycle writes, without the ids it makes."""
    queries = {
        "entitlements": "SELECT beneficiary_id, state, state_since, termination_pending_review, "
        "withheld_from_month, overpayment_fen, updated_at FROM entitlement "
        "ORDER BY beneficiary_id",
        "payments": "SELECT beneficiary_id, action, effective_month, back_pay_fen, "
        "back_pay_months, overpayment_fen, created_at FROM payment_instruction "
        "ORDER BY beneficiary_id, effective_month, action",
        "reminders": "SELECT beneficiary_id, kind, expires_at, offset_days, acknowledged, "
        "created_at FROM reminder ORDER BY beneficiary_id, expires_at, offset_days",
        "runs": "SELECT day, became_due, warned, suspended, reminders_queued, requests_sent "
        "FROM cycle_run ORDER BY day",
    }
    with Session(node.context.engine) as session:
        return {
            name: [tuple(row) for row in session.execute(text(query))]
            for name, query in queries.items()
        }


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    roll=st.lists(people, min_size=1, max_size=16),
    days_back=st.integers(0, 150),
    later=st.lists(st.integers(1, 45), max_size=2),
    closed=st.one_of(st.none(), st.integers(0, 2)),
)
def test_the_batched_cycle_does_what_the_row_by_row_cycle_does(
    offices: Offices,
    roll: list[Person],
    days_back: int,
    later: list[int],
    closed: int | None,
) -> None:
    first_day = NOW.date() - timedelta(days=days_back)
    days = [first_day]
    for gap in later:
        days.append(min(NOW.date(), days[-1] + timedelta(days=gap)))
    for node in (offices.batched, offices.rows):
        _seed(node, roll, first_day, closed)
    for day in days:
        CLOCK[0] = datetime.combine(day, datetime.min.time(), tzinfo=UTC) + timedelta(hours=3)
        batched = offices.batched.daily_cycle.run_cycle(ADMIN, day)
        by_rows = offices.rows.daily_cycle.run_cycle(ADMIN, day)
        assert batched == by_rows
        assert _state_of(offices.batched) == _state_of(offices.rows)
    CLOCK[0] = NOW


def test_the_batched_cycle_reads_everyone_the_day_acts_on(offices: Offices) -> None:
    """The batched cycle reads only the people the day may act on (bounds on the end of
    validity); over every stored state, an end of validity on every day around the days run
    at the first and the last second of its day, with and without the reminder for the latest
    offset reached, it still does what the row-by-row cycle does, on the boundaries too."""
    first_day = NOW.date() - timedelta(days=100)
    schedule = offices.rows.context.policy.reminder_days
    roll = [
        Person(end_days, end_second, state, False, False, reminded, False)
        for state in STATES
        if state is not EntitlementState.TERMINATED
        for end_days in range(-200, 121)
        for end_second in (0, 86_399)
        for reminded in {
            None,
            reminder_offset(first_day, first_day + timedelta(days=end_days), schedule),
        }
    ]
    for node in (offices.batched, offices.rows):
        _seed(node, roll, first_day, None)
    offices.batched.daily_cycle.batch_size = 500
    try:
        for day in (first_day, first_day + timedelta(days=1), first_day + timedelta(days=40)):
            CLOCK[0] = datetime.combine(day, datetime.min.time(), tzinfo=UTC) + timedelta(hours=3)
            batched = offices.batched.daily_cycle.run_cycle(ADMIN, day)
            by_rows = offices.rows.daily_cycle.run_cycle(ADMIN, day)
            assert batched == by_rows
            assert _state_of(offices.batched) == _state_of(offices.rows)
    finally:
        offices.batched.daily_cycle.batch_size = 3
        CLOCK[0] = NOW
