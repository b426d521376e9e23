"""Received attestations are keyed by (issuer, attestation id), on SQLite and PostgreSQL, and
migration 0011 keeps what the previous schema held."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Connection, Engine, Table, insert, inspect
from sqlalchemy import column as sa_column
from sqlalchemy import table as sa_table
from sqlmodel import Session, SQLModel

from federation.errors import AlreadyExistsError, PreconditionError, UnknownAttestationError
from federation_node.ids import new_id
from federation_node.store import attestations_store
from federation_node.store.db import create_engine_for, migrate, session_scope
from federation_node.store.models import (
    Attestation,
    AttestationDirection,
    RevocationFinding,
    RevocationReview,
)
from tests.integration.node_store.conftest import migrate_to

ENVELOPE = b'{"payload":"eyJ9","payloadType":"application/vnd.certfed.attestation+protobuf"}'


def _facts(
    attestation_id: str, issuer: str, digest: str, now: datetime
) -> attestations_store.AttestationFacts:
    return attestations_store.AttestationFacts(
        attestation_id=attestation_id,
        envelope_json=ENVELOPE,
        issuing_node_id=issuer,
        paying_node_id="lanzhou",
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


def _receive(
    session: Session, attestation_id: str, issuer: str, digest: str, now: datetime
) -> tuple[Attestation, bool]:
    return attestations_store.store_received(
        session, _facts(attestation_id, issuer, digest, now), now
    )


def _insert_at_revision(connection: Connection, row: SQLModel) -> None:
    """Insert one row with only the columns the database's current revision has, through the
    model's column types (so enums and UTC datetimes are written as the store writes them)."""
    model_table: Table = type(row).__table__  # type: ignore[attr-defined]
    present = {column["name"] for column in inspect(connection).get_columns(model_table.name)}
    columns = [column for column in model_table.columns if column.name in present]
    table = sa_table(model_table.name, *(sa_column(c.name, c.type) for c in columns))
    connection.execute(insert(table).values({c.name: getattr(row, c.name) for c in columns}))


def test_one_id_from_two_issuers_is_kept_twice_and_neither_replaces_the_other(
    engine: Engine, now: datetime
) -> None:
    attestation_id = new_id()
    with session_scope(engine) as session:
        _, duplicate = _receive(session, attestation_id, "qingdao", "aa" * 32, now)
        assert not duplicate
    with session_scope(engine) as session:
        _, duplicate = _receive(session, attestation_id, "datong", "bb" * 32, now)
        assert not duplicate
    with session_scope(engine) as session:
        assert attestations_store.get(session, attestation_id, "qingdao").payload_sha256 == (
            "aa" * 32
        )
        assert attestations_store.get(session, attestation_id, "datong").payload_sha256 == (
            "bb" * 32
        )
        with pytest.raises(PreconditionError, match="datong, qingdao"):
            attestations_store.get(session, attestation_id)
        with pytest.raises(UnknownAttestationError):
            attestations_store.get(session, attestation_id, "foshan")


def test_an_issuer_reusing_its_id_is_refused_and_the_first_kept(
    engine: Engine, now: datetime
) -> None:
    attestation_id = new_id()
    with session_scope(engine) as session:
        _receive(session, attestation_id, "datong", "aa" * 32, now)
    with (
        session_scope(engine) as session,
        pytest.raises(attestations_store.AttestationIdReusedError) as refused,
    ):
        _receive(session, attestation_id, "datong", "bb" * 32, now)
    assert isinstance(refused.value, AlreadyExistsError)
    assert (refused.value.issuing_node_id, refused.value.attestation_id) == (
        "datong",
        attestation_id,
    )
    with session_scope(engine) as session:
        assert attestations_store.get(session, attestation_id).payload_sha256 == "aa" * 32
        _, duplicate = _receive(session, attestation_id, "datong", "aa" * 32, now)
        assert duplicate


def test_pages_never_split_one_id_across_issuers(engine: Engine, now: datetime) -> None:
    first, shared, last = sorted(new_id() for _ in range(3))
    with session_scope(engine) as session:
        _receive(session, first, "qingdao", "aa" * 32, now)
        for issuer in ("qingdao", "datong", "anshan"):
            _receive(session, shared, issuer, "bb" * 32, now)
        _receive(session, last, "qingdao", "cc" * 32, now)
    seen: list[tuple[str, str]] = []
    token = ""
    with session_scope(engine) as session:
        while True:
            rows, token = attestations_store.page(session, AttestationDirection.RECEIVED, 2, token)
            seen += [(row.attestation_id, row.issuing_node_id) for row in rows]
            if not token:
                break
    assert seen == [
        (first, "qingdao"),
        (shared, "anshan"),
        (shared, "datong"),
        (shared, "qingdao"),
        (last, "qingdao"),
    ]


def test_migration_0011_keeps_attestations_and_their_revocation_reviews(store_url: str) -> None:
    engine = create_engine_for(store_url)
    now = datetime(2026, 11, 30, tzinfo=UTC)
    attestation_id = new_id()
    try:
        migrate_to(engine, "0010")
        # What the previous release wrote: an attestation and its revocation review, in the
        # columns the schema has at 0010 (today's models have columns added after it).
        with engine.begin() as connection:
            facts = dataclasses.asdict(_facts(attestation_id, "qingdao", "aa" * 32, now))
            _insert_at_revision(
                connection,
                Attestation(**facts, direction=AttestationDirection.RECEIVED, stored_at=now),
            )
            _insert_at_revision(
                connection,
                RevocationReview(
                    attestation_id=attestation_id,
                    issuing_node_id="qingdao",
                    signing_key_id="qingdao/2025-1",
                    finding=RevocationFinding.SIGNED_BY_SINCE_REVOKED_KEY,
                    issued_at=now,
                    key_revoked_at=now,
                    revocation_reason="key compromise",
                    directory_version=7,
                    flagged_at=now,
                ),
            )
        migrate(store_url)
        with session_scope(engine) as session:
            _receive(session, attestation_id, "datong", "bb" * 32, now)
        with session_scope(engine) as session:
            kept = attestations_store.get(session, attestation_id, "qingdao")
            review = session.get(RevocationReview, (attestation_id, "qingdao"))
            both = {
                a.issuing_node_id
                for a in attestations_store.for_locator(session, bytes(32))
                if a.attestation_id == attestation_id
            }
    finally:
        engine.dispose()
    assert kept.payload_sha256 == "aa" * 32
    assert review is not None
    assert review.directory_version == 7
    assert both == {"qingdao", "datong"}
