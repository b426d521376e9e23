"""Attestations are kept as signed; receiving is idempotent on the attestation id."""

from __future__ import annotations

import dataclasses
import re
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from certfed.v1 import common_pb2
from federation.errors import AlreadyExistsError, UnknownAttestationError
from federation_node.ids import new_id
from federation_node.offices import attestation_review
from federation_node.store import attestations_store
from federation_node.store.db import session_scope
from federation_node.store.models import Attestation, AttestationDirection
from tests.helpers.statements import assert_read_through, executed_statements
from tests.integration.node_store.conftest import AddBeneficiary, issue_rows, issued_row

ENVELOPE = b'{"payload":"eyJ9","payloadType":"application/vnd.certfed.attestation+protobuf"}'


def _facts(
    attestation_id: str, digest: str, now: datetime, issuer: str, payer: str
) -> attestations_store.AttestationFacts:
    return attestations_store.AttestationFacts(
        attestation_id=attestation_id,
        envelope_json=ENVELOPE,
        issuing_node_id=issuer,
        paying_node_id=payer,
        subject_locator=bytes(32),
        beneficiary_id=None,
        request_id=None,
        method=2,
        outcome=1,
        observed_at=now - timedelta(hours=2),
        valid_until=now + timedelta(days=365),
        signing_key_id=f"{issuer}/2025-1",
        payload_sha256=digest,
    )


def _issue(session: Session, attestation_id: str, digest: str, now: datetime) -> Attestation:
    facts = _facts(attestation_id, digest, now, "qingdao", "foshan")
    return attestations_store.store_issued(session, facts, now)


def _receive(
    session: Session, attestation_id: str, digest: str, now: datetime
) -> tuple[Attestation, bool]:
    facts = _facts(attestation_id, digest, now, "lanzhou-chengguan", "qingdao")
    return attestations_store.store_received(session, facts, now)


def test_issued_attestation_is_kept_byte_for_byte(engine: Engine, now: datetime) -> None:
    attestation_id = new_id()
    with session_scope(engine) as session:
        _issue(session, attestation_id, "aa" * 32, now)
    with session_scope(engine) as session:
        stored = attestations_store.get(session, attestation_id)
        assert stored.envelope_json == ENVELOPE
        assert stored.direction is AttestationDirection.ISSUED
        assert stored.valid_until == now + timedelta(days=365)


def test_redelivered_attestation_is_a_duplicate(engine: Engine, now: datetime) -> None:
    attestation_id = new_id()
    with session_scope(engine) as session:
        first, duplicate = _receive(session, attestation_id, "aa" * 32, now)
        assert not duplicate
        assert first.direction is AttestationDirection.RECEIVED
    with session_scope(engine) as session:
        again, duplicate = _receive(session, attestation_id, "aa" * 32, now + timedelta(hours=1))
        assert duplicate
        assert again.stored_at == now


def test_attestation_id_reused_with_other_content_is_refused(engine: Engine, now: datetime) -> None:
    attestation_id = new_id()
    with session_scope(engine) as session:
        _receive(session, attestation_id, "aa" * 32, now)
    with session_scope(engine) as session, pytest.raises(AlreadyExistsError):
        _receive(session, attestation_id, "bb" * 32, now)


def test_issuing_an_id_twice_is_refused(engine: Engine, now: datetime) -> None:
    attestation_id = new_id()
    with session_scope(engine) as session:
        _issue(session, attestation_id, "aa" * 32, now)
    with session_scope(engine) as session, pytest.raises(AlreadyExistsError):
        _issue(session, attestation_id, "aa" * 32, now)


def test_page_by_direction_and_lookup_by_locator(engine: Engine, now: datetime) -> None:
    issued, received = new_id(), new_id()
    with session_scope(engine) as session:
        _issue(session, issued, "aa" * 32, now)
        _receive(session, received, "bb" * 32, now)
    with session_scope(engine) as session:
        rows, token = attestations_store.page(session, AttestationDirection.RECEIVED, 10, "")
        assert [row.attestation_id for row in rows] == [received]
        assert token == ""
        rows, _ = attestations_store.page(session, None, 10, "")
        assert [row.attestation_id for row in rows] == [issued, received]
        about = attestations_store.for_locator(session, bytes(32))
        assert {row.attestation_id for row in about} == {issued, received}


def test_unknown_attestation_is_reported(engine: Engine) -> None:
    with session_scope(engine) as session, pytest.raises(UnknownAttestationError):
        attestations_store.get(session, "a-404")


def test_a_persons_attestations_are_found_through_an_index_not_by_reading_all(
    engine: Engine, now: datetime, add_beneficiary: AddBeneficiary
) -> None:
    # Every received attestation and every clerk's certification asks these two questions of
    # one person; an office holds a year of data matches (hundreds of thousands).
    person, other = add_beneficiary().beneficiary_id, add_beneficiary().beneficiary_id
    deceased = common_pb2.CERTIFICATION_OUTCOME_DECEASED
    with session_scope(engine) as session:
        issue_rows(
            session,
            [
                # Most are about other offices' people (an agency's) or other people of ours.
                issued_row(n, now - timedelta(days=n % 90), beneficiary_id=(None, other)[n % 2])
                for n in range(3_000)
            ]
            + [
                issued_row(3_000 + n, now - timedelta(days=10 + n), beneficiary_id=person)
                for n in range(3)
            ],
            now,
        )
        reported = _facts(new_id(), "bb" * 32, now, "lanzhou-chengguan", "qingdao")
        attestations_store.store_received(
            session,
            dataclasses.replace(reported, beneficiary_id=person, outcome=deceased),
            now,
        )
    with engine.begin() as connection:
        connection.exec_driver_sql("ANALYZE")
    with executed_statements(engine) as executed, session_scope(engine) as session:
        last = attestation_review.last_certified(session, person)
        reporters = attestations_store.end_reporters(session, person, [deceased])
    assert last == now - timedelta(days=10)
    assert reporters == {"lanzhou-chengguan"}
    plans = assert_read_through(engine, executed, "attestation")
    assert len(plans) == 2, executed
    for plan in plans:
        # The person's index or, for the few received attestations here, the direction's.
        assert re.search(r"ix_attestation_(beneficiary_id|direction)", plan), plan
