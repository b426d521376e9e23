"""The registry's storage on SQLite and PostgreSQL: the migrated schema is the one the code
declares, and the directory is re-signed when half of its lifetime has passed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from registry.config import RegistryConfig
from registry.db import VERSION_TABLE, create_engine_for, migrate, migrate_engine, transaction
from registry.directory_store import latest
from registry.operations import Registry, RegistryKeys
from registry.provision import init_registry
from registry.tables import metadata


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
