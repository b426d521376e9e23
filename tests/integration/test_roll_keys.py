"""Feed rows find the office's people through its own roll keys, never through the registry.

One paying office enrolled through a real registry process, composed in this process on a fresh
SQLite or PostgreSQL database (tests/helpers/feed_office.py), with its locators computed by the
registry's OPRF over mutual TLS and every evaluated element counted. Registering people evaluates
their locators; a feed about them and about people the office does not pay evaluates none, on
the set-based path and on the one-row path alike. Rows written before roll keys existed get them
when the node starts or before a feed batch (`fill_roll_keys`), the keys registration writes; an
identity that does not open is left unkeyed and counted; erasing a person removes their key.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from certfed.v1 import attestation_pb2, common_pb2, desk_pb2
from cli.bench.feed import person_number
from federation.registry_client import RegistryClient
from federation.timestamps import to_timestamp
from federation.transport import TlsMaterial
from federation_node.keystore import KeyPaths
from federation_node.locators import Locators
from federation_node.offices.context import Actor
from federation_node.offices.node import Node
from federation_node.offices.roll import fill_roll_keys
from federation_node.rules.feed_records import roll_key
from federation_node.store import beneficiaries, retention_store
from federation_node.store.db import session_scope
from signing.identity import IdentityKind
from tests.conftest import PostgresUrlFactory
from tests.helpers.feed_office import (
    EnrolledOffice,
    add_feed_account,
    compose_office,
    enrolled_office,
)

NOW = datetime.now(UTC).replace(microsecond=0)
CLERK = Actor("operator", "op-roll-clerk")
FEED = Actor("operator", "op-roll-feed")
SOURCE = "hospital-feed"
PAID = 4


@pytest.fixture(scope="module")
def office(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EnrolledOffice]:
    with enrolled_office(tmp_path_factory.mktemp("roll-keys")) as enrolled:
        yield enrolled


class CountedOffice:
    """The office composed on a fresh database, its registry evaluations counted."""

    def __init__(self, office: EnrolledOffice, url: str, *, bulk_feed: bool) -> None:
        config = office.config
        paths = KeyPaths(config.data_dir)
        tls = TlsMaterial.load(paths.tls_certificate, paths.tls_key, config.ca_certificate)
        self._registry = RegistryClient(
            config.registry_endpoint, tls.channel_credentials(), config.limits
        )
        self.evaluated = 0

        def evaluate(elements: Sequence[bytes]) -> list[bytes]:
            self.evaluated += len(elements)
            return self._registry.evaluate_locators(elements)

        counted = dataclasses.replace(office, locators=Locators(evaluate))
        self.node: Node = compose_office(counted, url, bulk_feed=bulk_feed, clock=lambda: NOW)

    def close(self) -> None:
        self.node.context.engine.dispose()
        self._registry.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / uuid.uuid4().hex}.db"
    factory: PostgresUrlFactory = request.getfixturevalue("postgres_url_factory")
    return factory()


def _register(node: Node) -> dict[int, str]:
    """PAID people (numbers 0 to PAID - 1) on the roll, and a feed account; their ids by number."""
    people = node.registration.register_beneficiaries(
        CLERK,
        [
            desk_pb2.RegisterBeneficiaryRequest(
                identity=attestation_pb2.IdentityBundle(
                    identity_type=common_pb2.IDENTITY_TYPE_RESIDENT_ID,
                    identity_number=person_number(index),
                    full_name="Roll Person",
                ),
                residence_region="440600",
                valid_until=to_timestamp(NOW + timedelta(days=20)),
                monthly_amount_fen=300_000,
            )
            for index in range(PAID)
        ],
    )
    add_feed_account(node, FEED.name, SOURCE, NOW)
    return {index: person.beneficiary_id for index, person in enumerate(people)}


def _signal(who: int, record: str, kind: int) -> desk_pb2.DataSignal:
    return desk_pb2.DataSignal(
        source=SOURCE,
        source_record_id=record,
        kind=kind,
        identity_type=common_pb2.IDENTITY_TYPE_RESIDENT_ID,
        identity_number=person_number(who),
        observed_at=to_timestamp(NOW - timedelta(days=2)),
    )


def _keys(node: Node) -> dict[str, bytes | None]:
    with node.context.session() as session:
        rows = session.execute(text("SELECT beneficiary_id, roll_key FROM beneficiary"))
        return {row[0]: None if row[1] is None else bytes(row[1]) for row in rows}


@pytest.mark.parametrize("bulk_feed", [True, False], ids=["set-based", "one-row"])
def test_a_feed_matches_the_roll_without_asking_the_registry(
    office: EnrolledOffice, database_url: str, bulk_feed: bool
) -> None:
    counted = CountedOffice(office, database_url, bulk_feed=bulk_feed)
    try:
        node = counted.node
        ids = _register(node)
        assert counted.evaluated == PAID
        alive = desk_pb2.SIGNAL_KIND_HOSPITAL_ADMISSION
        signals = [
            _signal(0, "A0", alive),
            _signal(1, "A1", alive),
            # People the office does not pay: most of a city's feed.
            *(_signal(100 + n, f"X{n}", alive) for n in range(20)),
            _signal(2, "D2", desk_pb2.SIGNAL_KIND_DEATH_REGISTRATION),
        ]
        results = node.data_signals.record_signals(FEED, signals, feed_account=True)

        assert counted.evaluated == PAID, "a feed row asked the registry for a locator"
        assert [result.beneficiary_id for result in results] == [
            ids[0],
            ids[1],
            *([""] * 20),
            ids[2],
        ]
        assert [result.outcome for result in results[2:22]] == [
            desk_pb2.SIGNAL_OUTCOME_UNKNOWN_PERSON
        ] * 20
        assert results[0].outcome == desk_pb2.SIGNAL_OUTCOME_APPLIED
        assert results[0].attestation_id
        assert results[22].outcome == desk_pb2.SIGNAL_OUTCOME_APPLIED
        with node.context.session() as session:
            suspended = session.execute(
                text(
                    "SELECT termination_pending_review FROM entitlement WHERE beneficiary_id = :b"
                ),
                {"b": ids[2]},
            ).scalar_one()
        assert suspended
    finally:
        counted.close()


def test_roll_keys_missing_from_older_rows_are_filled_in_and_erasure_removes_one(
    office: EnrolledOffice, database_url: str
) -> None:
    counted = CountedOffice(office, database_url, bulk_feed=True)
    try:
        node = counted.node
        ids = _register(node)
        written = _keys(node)
        hpke = node.context.keys.hpke
        for index, beneficiary_id in ids.items():
            assert written[beneficiary_id] == roll_key(
                hpke, IdentityKind.RESIDENT_ID, person_number(index)
            )
        # As rows from before roll keys: none keyed; one of them with an identity that does
        # not open (its sealed bytes altered).
        with session_scope(node.context.engine) as session:
            session.execute(text("UPDATE beneficiary SET roll_key = NULL"))
            session.execute(
                text("UPDATE beneficiary SET sealed_identity = :s WHERE beneficiary_id = :b"),
                {"s": b"not a sealed identity", "b": ids[3]},
            )

        assert fill_roll_keys(node.context) == (PAID - 1, 1)

        filled = _keys(node)
        assert {person: filled[person] for person in ids.values()} == {
            **{ids[index]: written[ids[index]] for index in range(PAID - 1)},
            ids[3]: None,
        }
        # A second start finds nothing left it can key.
        assert fill_roll_keys(node.context) == (0, 1)
        # A person registered by the release before, during an upgrade: keyed before a feed.
        with session_scope(node.context.engine) as session:
            session.execute(
                text("UPDATE beneficiary SET roll_key = NULL WHERE beneficiary_id = :b"),
                {"b": ids[0]},
            )
        results = node.data_signals.record_signals(
            FEED, [_signal(0, "A0", desk_pb2.SIGNAL_KIND_HOSPITAL_ADMISSION)], feed_account=True
        )
        assert results[0].beneficiary_id == ids[0]
        assert _keys(node)[ids[0]] == written[ids[0]]
        assert counted.evaluated == PAID

        with session_scope(node.context.engine) as session:
            retention_store.erase_person(session, beneficiaries.get(session, ids[1]), NOW)
        assert _keys(node)[ids[1]] is None
        # An erased person has no identity left to key.
        assert fill_roll_keys(node.context) == (0, 1)
    finally:
        counted.close()
