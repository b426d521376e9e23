"""Re-signed every hour, the registry would keep about 8,760 directory versions a year: versions
older than `directory_retention_s` are deleted when a new one is published, never the latest, so
version numbers keep growing and nodes' rollback protection (no version below the highest seen)
holds across the pruning."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from registry.config import RegistryConfig
from registry.db import create_engine_for, migrate_engine
from registry.operations import Registry, RegistryKeys
from registry.provision import init_registry

START = datetime(2030, 1, 1, tzinfo=UTC)


def test_versions_past_the_retention_window_are_pruned_and_numbering_continues(
    tmp_path: Path, store_url: str
) -> None:
    init_registry(tmp_path, "test-federation")
    config = RegistryConfig(
        federation_id="test-federation",
        data_dir=tmp_path,
        database_url=store_url,
        directory_retention_s=2 * 24 * 3600.0,
    )
    now = [START]
    engine = create_engine_for(store_url)
    try:
        migrate_engine(engine)
        registry = Registry(engine, RegistryKeys.load(config.paths), config, clock=lambda: now[0])
        assert registry.ensure_directory() == 1
        # Five days of hourly re-signing.
        for hour in range(1, 5 * 24 + 1):
            now[0] = START + timedelta(hours=hour, minutes=1)
            assert registry.republish_if_due() == hour + 1
        with engine.connect() as connection:
            versions = [
                row[0]
                for row in connection.execute(
                    sa.text("SELECT version FROM directory_version ORDER BY version")
                )
            ]
        latest = 5 * 24 + 1
        assert versions[-1] == latest
        # Two days kept (48 hourly versions, give or take the one at the boundary), no more.
        assert 48 <= len(versions) <= 50
        assert versions == list(range(versions[0], latest + 1))

        # A retention shorter than everything published still keeps the latest.
        short = RegistryConfig(
            federation_id="test-federation",
            data_dir=tmp_path,
            database_url=store_url,
            directory_lifetime_s=600.0,
            republish_interval_s=300.0,
            directory_retention_s=600.0,
        )
        pruning = Registry(engine, RegistryKeys.load(config.paths), short, clock=lambda: now[0])
        now[0] += timedelta(days=30)
        assert pruning.republish_if_due() == latest + 1
        with engine.connect() as connection:
            remaining = connection.execute(sa.text("SELECT version FROM directory_version")).all()
        assert [row[0] for row in remaining] == [latest + 1]
    finally:
        engine.dispose()
