"""The set-based feed path gives exactly what the one-at-a-time path gives, on SQLite and on
PostgreSQL.

One office, enrolled once through a real registry, is composed twice in this process on two
fresh databases with the same keys, policy and clock: one records signals set-based (the
default), the other one row at a time (`bulk_feed = false`). Hypothesis draws a roll and a
history of feed batches (alive and negative signals, repeats, people the office does not pay,
reviews of proposed terminations between batches); both offices go through the same history,
and everything they hold is compared: the answers to each call, the people, entitlements,
payment instructions, recorded signals, and the attestations with their log, apart from ids
and signatures. People are compared by their locator, the one name both databases share.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlmodel import Session

from certfed.v1 import attestation_pb2, common_pb2, desk_pb2
from cli.bench.feed import person_number
from federation.timestamps import to_timestamp
from federation_node.offices.context import Actor
from federation_node.offices.data_signals import signal_kind_name
from federation_node.offices.node import Node
from federation_node.store.beneficiaries import Registered
from signing import dsse
from tests.conftest import PostgresUrlFactory
from tests.helpers.feed_office import (
    EnrolledOffice,
    add_feed_account,
    compose_office,
    enrolled_office,
)

NOW = datetime.now(UTC).replace(microsecond=0)
CLERK = Actor("operator", "op-feed-clerk")
# Feeds come from a feed account bound to their source (offices/pending_signals.py).
FEED = Actor("operator", "op-feed-account")
SOURCE = "hospital-feed"
REVIEWER = Actor("operator", "op-feed-reviewer")
ALIVE = (
    desk_pb2.SIGNAL_KIND_HOSPITAL_ADMISSION,
    desk_pb2.SIGNAL_KIND_HEALTH_CHECK,
    desk_pb2.SIGNAL_KIND_BANK_IN_PERSON,
)
NEGATIVE = (desk_pb2.SIGNAL_KIND_DEATH_REGISTRATION, desk_pb2.SIGNAL_KIND_CRIMINAL_SENTENCE)
# The policy counts these alive kinds only, so that a signal it does not count is drawn too.
COUNTED = frozenset(
    signal_kind_name(kind)
    for kind in (desk_pb2.SIGNAL_KIND_HOSPITAL_ADMISSION, desk_pb2.SIGNAL_KIND_HEALTH_CHECK)
)
PEOPLE = 6


# Each example runs on two real databases of the engine, both offices composed afresh.
ON_BOTH_ENGINES = pytest.mark.parametrize(
    "engine", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
OFFICES = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def office(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EnrolledOffice]:
    with enrolled_office(tmp_path_factory.mktemp("feed-office")) as enrolled:
        yield enrolled


signal_rows = st.lists(
    st.tuples(
        st.integers(0, 2 * PEOPLE - 1),  # who: the second half are not the office's
        st.sampled_from(ALIVE + NEGATIVE),
        st.integers(1, 400),  # days ago
        st.integers(0, 30),  # record id: a repeated one is a duplicate
    ),
    min_size=1,
    max_size=25,
)
history = st.fixed_dictionaries(
    {
        # Days from now each person's validity ends (some lapsed already).
        "validity": st.lists(st.integers(-200, 300), min_size=PEOPLE, max_size=PEOPLE),
        "batches": st.lists(signal_rows, min_size=1, max_size=3),
        # Per batch after the first, the terminations to confirm (True) or overturn (False).
        "reviews": st.lists(st.booleans(), min_size=PEOPLE, max_size=PEOPLE),
    }
)


def _signal(who: int, kind: int, days_ago: int, record: int) -> desk_pb2.DataSignal:
    return desk_pb2.DataSignal(
        source=SOURCE,
        source_record_id=f"R{record}",
        kind=kind,
        identity_type=common_pb2.IDENTITY_TYPE_RESIDENT_ID,
        identity_number=person_number(who),
        observed_at=to_timestamp(NOW - timedelta(days=days_ago, hours=1)),
    )


def register_people(node: Node, validity: list[int]) -> list[Registered]:
    """People 0, 1, ... on the office's roll, each valid until the given days from now."""
    return node.registration.register_beneficiaries(
        CLERK,
        [
            desk_pb2.RegisterBeneficiaryRequest(
                identity=attestation_pb2.IdentityBundle(
                    identity_type=common_pb2.IDENTITY_TYPE_RESIDENT_ID,
                    identity_number=person_number(index),
                    full_name="Feed Person",
                ),
                residence_region="440600",
                valid_until=to_timestamp(NOW + timedelta(days=days)),
                monthly_amount_fen=300_000,
            )
            for index, days in enumerate(validity)
        ],
    )


def fresh_databases(
    engine: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Callable[[], str]:
    """URLs of fresh, empty databases of `engine` (SQLite files in `tmp_path`)."""

    def fresh_url() -> str:
        if engine == "sqlite":
            return f"sqlite:///{tmp_path / uuid.uuid4().hex}.db"
        factory: PostgresUrlFactory = request.getfixturevalue("postgres_url_factory")
        return factory()

    return fresh_url


def _run(node: Node, drawn: dict[str, Any]) -> list[list[tuple[object, ...]]]:
    """The drawn history at one office; the answer to each RecordSignals, ids as locators."""
    node.context.policy = dataclasses.replace(node.context.policy, extending_signal_kinds=COUNTED)
    people = register_people(node, drawn["validity"])
    locators = {person.beneficiary_id: person.subject_locator.hex() for person in people}
    add_feed_account(node, FEED.name, SOURCE, NOW)
    answers = []
    for number, batch in enumerate(drawn["batches"]):
        if number:
            _review(node, people, drawn["reviews"])
        results = node.data_signals.record_signals(
            FEED, [_signal(*row) for row in batch], feed_account=True
        )
        answers.append(
            [
                (
                    result.outcome,
                    result.message,
                    locators.get(result.beneficiary_id, ""),
                    bool(result.attestation_id),
                )
                for result in results
            ]
        )
    return answers


def _review(node: Node, people: list[Any], confirms: list[bool]) -> None:
    with node.context.session() as session:
        pending = {
            row[0]
            for row in session.execute(
                text("SELECT beneficiary_id FROM entitlement WHERE termination_pending_review")
            )
        }
    for person, confirm in zip(people, confirms, strict=True):
        if person.beneficiary_id in pending:
            node.lifecycle.review_termination(
                REVIEWER, person.beneficiary_id, confirm, "" if confirm else "seen alive"
            )


def _rows(session: Session, query: str) -> list[tuple[object, ...]]:
    return sorted((tuple(row) for row in session.execute(text(query))), key=repr)


def _holdings(node: Node) -> dict[str, object]:
    """Everything the feed path writes, with ids replaced by what both offices share."""
    with node.context.session() as session:
        holdings: dict[str, object] = {
            "people": _rows(
                session,
                "SELECT subject_locator, status, status_effective_at, valid_until, updated_at "
                "FROM beneficiary",
            ),
            "entitlements": _rows(
                session,
                "SELECT b.subject_locator, e.state, e.state_since, e.termination_pending_review, "
                "e.pending_status, e.pending_effective_at, e.withheld_from_month, "
                "e.overpayment_fen, e.updated_at "
                "FROM entitlement e JOIN beneficiary b ON b.beneficiary_id = e.beneficiary_id",
            ),
            "payments": _rows(
                session,
                "SELECT b.subject_locator, p.action, p.effective_month, p.back_pay_fen, "
                "p.back_pay_months, p.overpayment_fen, p.created_at FROM payment_instruction p "
                "JOIN beneficiary b ON b.beneficiary_id = p.beneficiary_id",
            ),
            "signals": _rows(
                session,
                "SELECT s.source, s.source_record_id, s.kind, b.subject_locator, s.observed_at, "
                "s.outcome, s.attestation_id IS NOT NULL, s.recorded_by, s.recorded_at "
                "FROM data_signal s LEFT JOIN beneficiary b ON b.beneficiary_id = s.beneficiary_id",
            ),
            "attestations": _rows(
                session,
                "SELECT b.subject_locator, a.direction, a.issuing_node_id, a.paying_node_id, "
                "a.subject_locator, a.method, a.outcome, a.observed_at, a.valid_until, "
                "a.signing_key_id, a.stored_at "
                "FROM attestation a JOIN beneficiary b ON b.beneficiary_id = a.beneficiary_id",
            ),
            "outbox": _rows(session, "SELECT kind, destination FROM outbox_message"),
        }
        envelopes = session.execute(
            text("SELECT envelope_json FROM log_entry ORDER BY leaf_index")
        ).scalars()
        logged = []
        for envelope in envelopes:
            statement = attestation_pb2.CertificationAttestation.FromString(
                dsse.Envelope.from_json(bytes(envelope)).payload
            )
            statement.ClearField("attestation_id")
            logged.append(json.dumps(statement.SerializeToString(deterministic=True).hex()))
        holdings["log"] = logged
        holdings["log_size"] = session.execute(text("SELECT tree_size FROM log_head")).scalar_one()
    return holdings


@ON_BOTH_ENGINES
@settings(OFFICES, max_examples=8)
@given(drawn=history)
def test_bulk_feed_path_gives_what_the_one_at_a_time_path_gives(
    engine: str,
    office: EnrolledOffice,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    drawn: dict[str, Any],
) -> None:
    assert_paths_agree(engine, office, request, tmp_path, drawn)


def assert_paths_agree(
    engine: str,
    office: EnrolledOffice,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    drawn: dict[str, Any],
) -> None:
    """The drawn history through a set-based office and a one-at-a-time office, each on a
    fresh database of `engine`: the same answers, and the same holdings afterwards."""
    fresh_url = fresh_databases(engine, request, tmp_path)
    offices = [
        compose_office(office, fresh_url(), bulk_feed=bulk, clock=lambda: NOW)
        for bulk in (True, False)
    ]
    try:
        answers = [_run(node, drawn) for node in offices]
        assert answers[0] == answers[1]
        bulk, one_at_a_time = (_holdings(node) for node in offices)
        for name in bulk:
            assert bulk[name] == one_at_a_time[name], name
    finally:
        for node in offices:
            node.context.engine.dispose()
