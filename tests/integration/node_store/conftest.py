"""Fixtures for the node store tests: a migrated database on SQLite and on PostgreSQL.

Every store test takes `engine` (built on the shared `store_url` fixture, so it runs once per
engine) and opens its transactions with `session_scope`, as the node does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine
from sqlmodel import Session

from federation_node.ids import new_id
from federation_node.store import (
    assistance,
    attestations_store,
    audit,
    beneficiaries,
    entitlements_store,
)
from federation_node.store.attestations_store import IssuedRow
from federation_node.store.db import MIGRATIONS, create_engine_for, migrate, session_scope
from federation_node.store.models import AssistanceRequest, Beneficiary, IdentityType

NOW = datetime(2025, 6, 23, 8, 30, tzinfo=UTC)
ISSUER = "qingdao"


@pytest.fixture
def engine(store_url: str) -> Iterator[Engine]:
    migrate(store_url)
    engine = create_engine_for(store_url)
    try:
        yield engine
    finally:
        engine.dispose()


def migrate_to(engine: Engine, revision: str) -> None:
    """Bring the database to an older schema, as a release before this one left it."""
    with engine.begin() as connection:
        config = Config()
        config.set_main_option("script_location", MIGRATIONS)
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


@pytest.fixture
def now() -> datetime:
    return NOW


def locator_for(label: str) -> bytes:
    """A 32-byte stand-in for a subject locator (the real one is an HMAC of the identity)."""
    return hashlib.sha256(label.encode()).digest()


@pytest.fixture
def make_locator() -> Callable[[str], bytes]:
    return locator_for


def new_person(
    label: int | str, valid_until: datetime | None = None
) -> beneficiaries.NewBeneficiary:
    """A person to register, with the locator of "locator-<label>" and the roll key of
    "roll-<label>"."""
    return beneficiaries.NewBeneficiary(
        subject_locator=locator_for(f"locator-{label}"),
        identity_type=IdentityType.RESIDENT_ID,
        masked_identity_number="3702**********0012",
        sealed_identity=b"sealed",
        residence_region="370200",
        paying_region="370200",
        valid_until=valid_until,
        roll_key=locator_for(f"roll-{label}"),
    )


def add_roll(session: Session, count: int, now: datetime) -> list[str]:
    """`count` people with their entitlements, registered set-based as a roll import does; the
    nth is `new_person(n)`. Their ids, in order."""
    people = beneficiaries.add_many(session, [new_person(n, now) for n in range(count)], now)
    entitlements_store.open_many(session, [(person, 150_000) for person in people], now)
    return people


AddBeneficiary = Callable[..., Beneficiary]
AddInbound = Callable[..., AssistanceRequest]


def register(engine: Engine, label: str | None = None) -> Beneficiary:
    """Registers a beneficiary in its own transaction and returns it."""
    locator = locator_for(label or new_id())
    with session_scope(engine) as session:
        return beneficiaries.add(
            session,
            subject_locator=locator,
            identity_type=IdentityType.RESIDENT_ID,
            masked_identity_number="3702**********123X",
            sealed_identity=b"sealed:" + (label or "x").encode(),
            residence_region="620102",
            paying_region="370200",
            valid_until=NOW + timedelta(days=30),
            roll_key=hashlib.sha256(b"roll key:" + locator).digest(),
            now=NOW,
        )


@pytest.fixture
def add_beneficiary(engine: Engine) -> AddBeneficiary:
    """`add(label=None)`: a new beneficiary in `engine`'s database."""
    return lambda label=None: register(engine, label)


@pytest.fixture
def register_beneficiary() -> Callable[[Engine], Beneficiary]:
    """`register(engine)`: a new beneficiary in any migrated database."""
    return register


@pytest.fixture
def pg_engine(postgres_url: str) -> Iterator[Engine]:
    """A migrated PostgreSQL database, for behaviour only PostgreSQL has (row locks)."""
    migrate(postgres_url)
    engine = create_engine_for(postgres_url)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def add_inbound(engine: Engine) -> AddInbound:
    """Stores an inbound assistance request from node `qingdao` and returns it."""

    def add(request_id: str | None = None, payload_sha256: str = "ab" * 32) -> AssistanceRequest:
        with session_scope(engine) as session:
            request, _ = assistance.receive_inbound(
                session,
                request_id=request_id or new_id(),
                peer_node_id="qingdao",
                paying_node_id="qingdao",
                paying_region="370200",
                residence_region="620102",
                subject_locator=locator_for("inbound"),
                sealed_identity=b"hpke-sealed",
                deadline=NOW + timedelta(days=14),
                acceptable_methods=[2, 3],
                note="home visit preferred",
                payload_sha256=payload_sha256,
                now=NOW,
            )
            return request

    return add


@pytest.fixture
def restarted(store_url: str, now: datetime) -> Iterator[Engine]:
    """A node's database reopened after a crash: three audit records were committed and the
    node died before sequencing them."""
    migrate(store_url)
    crashed = create_engine_for(store_url)
    try:
        for index in range(3):
            with session_scope(crashed) as session:
                audit.append(
                    session,
                    actor="node:qingdao",
                    action="beneficiary.register",
                    subject_type="beneficiary",
                    subject_id=f"crashed-{index}",
                    details={},
                    now=now,
                )
    finally:
        crashed.dispose()
    engine = create_engine_for(store_url)
    try:
        yield engine
    finally:
        engine.dispose()


def issued_row(
    number: int, observed_at: datetime, *, method: int = 2, beneficiary_id: str | None = None
) -> IssuedRow:
    """An alive attestation this node issued (`att-<number>`), valid a year, as the bulk path
    stores it."""
    return (
        f"att-{number:06d}",
        b'{"payload":"eyJ9"}',
        ISSUER,
        bytes(32),
        beneficiary_id,
        None,
        method,
        1,
        observed_at,
        observed_at + timedelta(days=365),
        "aa" * 32,
        None,
    )


def issue_rows(session: Session, rows: Iterable[IssuedRow], now: datetime) -> None:
    """Store `rows` through the bulk path, signed by the issuer's one key."""
    attestations_store.store_issued_many(
        session, rows, issuing_node_id=ISSUER, signing_key_id=f"{ISSUER}/2025-1", now=now
    )
