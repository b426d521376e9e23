"""The bulk roll import registers people exactly as registering them one at a time does, on
SQLite and on PostgreSQL: over random rolls the same records (regions, validity, scheme, first
month, masked number, sealed identity once opened) and the same entitlements; the same rows
imported again change nothing; and the daily cycle then does the same to both offices.

One real office (keys, certificate, directory and locators from a real registry) is composed
twice in this process on two databases of the same engine, with the same clock.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlmodel import Session, select

from certfed.v1 import attestation_pb2, common_pb2, desk_pb2
from cli.bench.kit import resident_id
from federation.errors import AlreadyExistsError, RateLimitedError
from federation.timestamps import to_timestamp
from federation_node.locators import Locators
from federation_node.offices.context import Actor
from federation_node.offices.node import Node, compose_node
from federation_node.offices.roll import RowOutcome, UpsertedRow
from federation_node.rules.policy import load_policy
from federation_node.store.db import create_engine_for, migrate, session_scope
from federation_node.store.models import Beneficiary
from tests.conftest import PostgresUrlFactory
from tests.helpers.feed_office import EnrolledOffice, enrolled_office

NOW = datetime.now(UTC).replace(microsecond=0)
CLERK = Actor("operator", "op-roll-clerk")
TABLES = (
    "reminder",
    "payment_instruction",
    "amount_change",
    "entitlement",
    "beneficiary",
    "cycle_run",
    "outbox_message",
    "audit_pending",
)
SCHEMES = [
    desk_pb2.PENSION_SCHEME_UNSPECIFIED,
    desk_pb2.PENSION_SCHEME_EMPLOYEE,
    desk_pb2.PENSION_SCHEME_RESIDENT,
    desk_pb2.PENSION_SCHEME_PUBLIC_SERVICE,
]


@dataclasses.dataclass(frozen=True)
class Row:
    person: int
    residence_region: str
    # Days from today to the end of validity; None: never certified.
    valid_days: int | None
    amount_fen: int
    scheme: int
    start_month: str
    phone: str


rows = st.builds(
    Row,
    person=st.integers(0, 5_000),
    residence_region=st.sampled_from(["440604", "440605", "370202", "HK"]),
    valid_days=st.one_of(st.none(), st.integers(-300, 300)),
    amount_fen=st.integers(0, 2_000_000),
    scheme=st.sampled_from(SCHEMES),
    start_month=st.sampled_from(["", "2001-01", "2015-07", "2024-12"]),
    phone=st.sampled_from(["", "13800000000", "+853 6600 0000"]),
)


@dataclasses.dataclass
class Offices:
    bulk: Node
    single: Node


@pytest.fixture(scope="module")
def office(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EnrolledOffice]:
    with enrolled_office(tmp_path_factory.mktemp("roll-office")) as enrolled:
        yield enrolled


def _compose(office: EnrolledOffice, url: str, locators: Locators | None = None) -> Node:
    migrate(url)
    config = dataclasses.replace(office.config, database_url=url)
    return compose_node(
        config,
        office.keys,
        create_engine_for(url),
        office.directory,
        load_policy(config.policy_file),
        lambda _locator: [],
        clock=lambda: NOW,
        locators=locators or office.locators,
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
        folder: Path = tmp_path_factory.mktemp("roll-sqlite")
        urls = [f"sqlite:///{folder / 'bulk.db'}", f"sqlite:///{folder / 'single.db'}"]
    else:
        factory: PostgresUrlFactory = request.getfixturevalue("postgres_url_factory")
        urls = [factory(), factory()]
    bulk, single = _compose(office, urls[0]), _compose(office, urls[1])
    try:
        yield Offices(bulk, single)
    finally:
        bulk.context.engine.dispose()
        single.context.engine.dispose()


def _request(row: Row) -> desk_pb2.RegisterBeneficiaryRequest:
    request = desk_pb2.RegisterBeneficiaryRequest(
        identity=attestation_pb2.IdentityBundle(
            identity_type=common_pb2.IDENTITY_TYPE_RESIDENT_ID,
            identity_number=resident_id("440604", date(1950, 1, 1), row.person),
            full_name="陈大文",
            phone=row.phone,
        ),
        residence_region=row.residence_region,
        monthly_amount_fen=row.amount_fen,
        scheme=row.scheme,  # type: ignore[arg-type]
        payment_start_month=row.start_month,
    )
    if row.valid_days is not None:
        request.valid_until.CopyFrom(to_timestamp(NOW + timedelta(days=row.valid_days)))
    return request


def _wipe(node: Node) -> None:
    with session_scope(node.context.engine) as session:
        for table in TABLES:
            session.execute(text(f"DELETE FROM {table}"))  # noqa: S608 - our table names


def _roll_of(node: Node) -> dict[bytes, tuple[Any, ...]]:
    """Each person's record, entitlement, opened identity, reminders and payment instructions,
    by locator (ids differ between the two offices)."""
    with Session(node.context.engine) as session:
        people = {
            bytes(row[0]): tuple(row[1:])
            for row in session.execute(
                text(
                    "SELECT b.subject_locator, b.identity_type, b.masked_identity_number, "
                    "b.residence_region, b.paying_region, b.status, b.valid_until, "
                    "b.possible_duplicate, b.scheme, b.payment_start_month, b.created_at, "
                    "e.monthly_amount_fen, e.state, e.state_since, e.withheld_from_month, "
                    "e.overpayment_fen, "
                    "(SELECT count(*) FROM reminder r WHERE r.beneficiary_id = b.beneficiary_id), "
                    "(SELECT count(*) FROM payment_instruction p "
                    "WHERE p.beneficiary_id = b.beneficiary_id) "
                    "FROM beneficiary b JOIN entitlement e ON e.beneficiary_id = b.beneficiary_id"
                )
            )
        }
        for person in session.exec(select(Beneficiary)):
            identity = node.roll.identity(person)
            people[bytes(person.subject_locator)] += (identity.SerializeToString(),)
    return people


# Each example registers a whole roll on two real databases.
_ROLLS = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _registered_one_at_a_time(
    offices: Offices, roll: list[Row]
) -> list[desk_pb2.RegisterBeneficiaryRequest]:
    """Both offices emptied, and `roll` registered at the single office one person at a time;
    the requests, for the bulk office."""
    _wipe(offices.bulk)
    _wipe(offices.single)
    requests = [_request(row) for row in roll]
    for request in requests:
        offices.single.registration.register_beneficiary(CLERK, request)
    return requests


@settings(_ROLLS, max_examples=10)
@given(roll=st.lists(rows, min_size=1, max_size=12, unique_by=lambda row: row.person))
def test_the_bulk_roll_import_registers_people_as_one_at_a_time_does(
    offices: Offices, roll: list[Row]
) -> None:
    requests = _registered_one_at_a_time(offices, roll)
    imported = offices.bulk.roll.upsert(CLERK, requests)
    assert [row.outcome for row in imported] == [RowOutcome.CREATED] * len(roll)
    assert _roll_of(offices.bulk) == _roll_of(offices.single)
    # The same rows again register nobody and change nothing.
    again = offices.bulk.roll.upsert(CLERK, requests)
    assert [row.outcome for row in again] == [RowOutcome.UNCHANGED] * len(roll)
    assert [row.beneficiary_id for row in again] == [row.beneficiary_id for row in imported]
    assert _roll_of(offices.bulk) == _roll_of(offices.single)
    # And the day treats both rolls alike.
    for node in (offices.bulk, offices.single):
        node.daily_cycle.run_cycle(CLERK, NOW.date())
    assert _roll_of(offices.bulk) == _roll_of(offices.single)


@settings(_ROLLS, max_examples=6)
@given(roll=st.lists(rows, min_size=2, max_size=12, unique_by=lambda row: row.person))
def test_a_batch_registration_registers_people_as_one_at_a_time_does(
    offices: Offices, roll: list[Row]
) -> None:
    # RegisterBeneficiaries seals a batch together and inserts it set-based; the people, their
    # entitlements and their sealed identities are those of one registration per person, and
    # what the call answers is what it stored.
    requests = _registered_one_at_a_time(offices, roll)
    added = offices.bulk.registration.register_beneficiaries(CLERK, requests)
    assert _roll_of(offices.bulk) == _roll_of(offices.single)
    with Session(offices.bulk.context.engine) as session:
        stored = {person.beneficiary_id: person for person in session.exec(select(Beneficiary))}
    assert added == [
        tuple(getattr(stored[person.beneficiary_id], column) for column in person._fields)
        for person in added
    ]
    # A batch naming someone twice, or someone already registered, stores nothing.
    _wipe(offices.bulk)
    with pytest.raises(AlreadyExistsError):
        offices.bulk.registration.register_beneficiaries(CLERK, [*requests, requests[0]])
    offices.bulk.registration.register_beneficiary(CLERK, requests[-1])
    with pytest.raises(AlreadyExistsError, match="already a beneficiary"):
        offices.bulk.registration.register_beneficiaries(CLERK, requests)
    assert len(_roll_of(offices.bulk)) == 1


def _imported_then_restarted(
    offices: Offices, office: EnrolledOffice, rows: list[Row]
) -> tuple[list[UpsertedRow], Node, list[int]]:
    """The bulk office's roll replaced by `rows`; then a node started afresh on its database
    (nothing cached), and the number of elements each of its registry evaluations held."""
    evaluated: list[int] = []

    def counted(elements: list[bytes]) -> list[bytes]:
        evaluated.append(len(elements))
        return office.evaluate(elements)

    _wipe(offices.bulk)
    imported = offices.bulk.roll.upsert(CLERK, [_request(row) for row in rows])
    url = offices.bulk.context.config.effective_database_url
    return imported, _compose(office, url, Locators(counted)), evaluated


def test_a_roll_imported_again_computes_no_locator_for_the_people_on_it(
    offices: Offices, office: EnrolledOffice
) -> None:
    # A node started afresh (nothing cached) imports its roll again, with newcomers: only they
    # cost the registry an evaluation, and the people already on it keep their locators.
    first = [Row(person, "440604", 100, 250_000, SCHEMES[1], "2015-07", "") for person in range(8)]
    imported, restarted, evaluated = _imported_then_restarted(offices, office, first)
    before = _roll_of(offices.bulk)
    try:
        newcomers = [dataclasses.replace(row, person=row.person + 100) for row in first[:3]]
        again = restarted.roll.upsert(CLERK, [_request(row) for row in first + newcomers])
    finally:
        restarted.context.engine.dispose()
    assert sum(evaluated) == len(newcomers)
    assert [row.outcome for row in again] == [RowOutcome.UNCHANGED] * len(first) + [
        RowOutcome.CREATED
    ] * len(newcomers)
    assert [row.beneficiary_id for row in again[: len(first)]] == [
        row.beneficiary_id for row in imported
    ]
    after = _roll_of(offices.bulk)
    assert {locator: after[locator] for locator in before} == before


def test_registering_someone_already_on_the_roll_is_refused_at_no_registry_cost(
    offices: Offices, office: EnrolledOffice
) -> None:
    # A clerk registers, one at a time or in a batch, a person the roll already holds: refused
    # as before, but found by roll key, so a node started afresh asks the registry nothing.
    roll = [Row(person, "440604", 100, 250_000, SCHEMES[0], "2015-07", "") for person in range(3)]
    _, restarted, evaluated = _imported_then_restarted(offices, office, roll)
    try:
        with pytest.raises(AlreadyExistsError, match="already a beneficiary"):
            restarted.registration.register_beneficiary(CLERK, _request(roll[1]))
        with pytest.raises(AlreadyExistsError, match="already a beneficiary"):
            restarted.registration.register_beneficiaries(
                CLERK, [_request(row) for row in roll[:2]]
            )
        assert evaluated == []
        newcomer = dataclasses.replace(roll[0], person=200)
        restarted.registration.register_beneficiary(CLERK, _request(newcomer))
    finally:
        restarted.context.engine.dispose()
    assert evaluated == [1]
    assert len(_roll_of(offices.bulk)) == len(roll) + 1


def test_a_bulk_import_leaves_the_days_reserve_of_locator_evaluations_to_the_desk(
    offices: Offices, office: EnrolledOffice
) -> None:
    # The registry's latest answer left 10 evaluations for today and the office keeps 5 for its
    # federation work: a roll batch or a batch registration of 6 new people is refused before
    # any evaluation, until the quota starts again; 5 pass; a clerk's registration may use the
    # reserve.
    evaluated: list[int] = []

    def counted(elements: list[bytes]) -> list[bytes]:
        evaluated.append(len(elements))
        return office.evaluate(elements)

    _wipe(offices.bulk)
    kept = dataclasses.replace(office, config=dataclasses.replace(office.config, locator_reserve=5))
    url = offices.bulk.context.config.effective_database_url
    node = _compose(kept, url, Locators(counted, left_today=lambda: 10))
    rows = [Row(person, "440604", 100, 250_000, SCHEMES[0], "2015-07", "") for person in range(7)]
    try:
        with pytest.raises(RateLimitedError, match="locator_reserve") as refused:
            node.roll.upsert(CLERK, [_request(row) for row in rows[:6]])
        assert refused.value.status is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "00:00 UTC" in str(refused.value)
        assert 0 < refused.value.retry_after_s <= 86400
        with pytest.raises(RateLimitedError, match="10 left"):
            node.registration.register_beneficiaries(CLERK, [_request(row) for row in rows[:6]])
        assert evaluated == []
        assert len(_roll_of(offices.bulk)) == 0
        node.roll.upsert(CLERK, [_request(row) for row in rows[:5]])
        node.registration.register_beneficiary(CLERK, _request(rows[6]))
    finally:
        node.context.engine.dispose()
    assert sum(evaluated) == 6
    assert len(_roll_of(offices.bulk)) == 6
