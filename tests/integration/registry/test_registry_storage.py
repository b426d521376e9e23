"""The registry's storage on SQLite and PostgreSQL: the migrated schema is the one the code
declares, and the directory is re-signed when half of its lifetime has passed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from registry import nodes_store
from registry.config import RegistryConfig
from registry.db import VERSION_TABLE, create_engine_for, migrate, migrate_engine, transaction
from registry.directory_store import latest
from registry.operations import Registry, RegistryKeys
from registry.provision import init_registry
from registry.tables import Node, NodeCertificate, metadata


def test_migrated_schema_matches_the_table_metadata(store_url: str) -> None:
    migrate(store_url)
    migrate(store_url)  # a second run finds nothing to do
    engine = create_engine_for(store_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "version_table": VERSION_TABLE}
            )
            assert compare_metadata(context, metadata) == []
    finally:
        engine.dispose()


def test_directory_is_resigned_as_a_new_version_when_less_than_half_its_lifetime_is_left(
    tmp_path: Path, store_url: str
) -> None:
    init_registry(tmp_path, "test-federation")
    config = RegistryConfig(
        federation_id="test-federation",
        data_dir=tmp_path,
        database_url=store_url,
        directory_lifetime_s=1000.0,
        republish_interval_s=100.0,
    )
    start = datetime(2030, 1, 1, tzinfo=UTC)
    now = [start]
    engine = create_engine_for(store_url)
    try:
        migrate_engine(engine)
        registry = Registry(engine, RegistryKeys.load(config.paths), config, clock=lambda: now[0])
        assert registry.ensure_directory() == 1
        assert registry.ensure_directory() == 1

        now[0] = start + timedelta(seconds=400)
        assert registry.republish_if_due() is None

        now[0] = start + timedelta(seconds=600)
        assert registry.republish_if_due() == 2
        with transaction(engine) as session:
            published = latest(session)
        assert published is not None
        assert published.issued_at == now[0]
        assert published.expires_at == now[0] + timedelta(seconds=1000)
        assert published.expires_at.tzinfo is not None
    finally:
        engine.dispose()


def test_a_caller_is_found_only_by_a_certificate_accepted_now(store_url: str) -> None:
    # The one-query check every node call passes: the node's current certificate, and a renewed
    # one until the end of its overlap window; never another node's, never an unknown node.
    start = datetime(2030, 1, 1, tzinfo=UTC)
    overlap_ends = start + timedelta(days=7)
    migrate(store_url)
    engine = create_engine_for(store_url)
    try:
        with transaction(engine) as session:
            session.add(_node("qingdao-paying", ["paying_office"], "active"))
            session.add(_node("lanzhou-residence", ["residence_agency"], "suspended"))
            session.add(_certificate("a" * 64, "qingdao-paying", start, superseded_at=overlap_ends))
            session.add(_certificate("b" * 64, "qingdao-paying", start))
            session.add(_certificate("c" * 64, "lanzhou-residence", start))
        with engine.connect() as connection:
            during = start + timedelta(days=1)
            assert nodes_store.caller(connection, "qingdao-paying", "b" * 64, during) == (
                nodes_store.Caller("qingdao-paying", ["paying_office"], "active", "")
            )
            assert nodes_store.caller(connection, "qingdao-paying", "a" * 64, during) is not None
            after = overlap_ends + timedelta(seconds=1)
            assert nodes_store.caller(connection, "qingdao-paying", "a" * 64, after) is None
            assert nodes_store.caller(connection, "qingdao-paying", "c" * 64, during) is None
            assert nodes_store.caller(connection, "nanjing-paying", "b" * 64, during) is None
            suspended = nodes_store.caller(connection, "lanzhou-residence", "c" * 64, during)
            assert suspended == (
                nodes_store.Caller("lanzhou-residence", ["residence_agency"], "suspended", "")
            )
    finally:
        engine.dispose()


def _node(node_id: str, roles: list[str], status: str) -> Node:
    at = datetime(2029, 12, 1, tzinfo=UTC)
    return Node(
        node_id=node_id,
        display_name=node_id,
        region_codes=["370200"],
        roles=roles,
        endpoint="127.0.0.1:1",
        signing_public_key=b"k",
        hpke_public_key=b"h",
        tls_csr_pem=b"csr",
        application_digest="0" * 64,
        application_envelope=b"{}",
        applied_at=at,
        received_at=at,
        status=status,
        status_reason="",
        status_changed_at=at,
    )


def _certificate(
    sha256: str, node_id: str, issued_at: datetime, superseded_at: datetime | None = None
) -> NodeCertificate:
    return NodeCertificate(
        sha256=sha256,
        node_id=node_id,
        certificate_pem=b"pem",
        serial_number=sha256[:16],
        not_before=issued_at,
        not_after=issued_at + timedelta(days=365),
        issued_at=issued_at,
        superseded_at=superseded_at,
    )
