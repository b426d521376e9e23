"""The registry signs each directory for a day and re-signs it every hour by default, so a node
cut off from it trusts a suspension it missed for a day at most; and re-signs at half-life when
the lifetime is shorter than the re-signing interval."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine

from registry.config import RegistryConfig
from registry.db import create_engine_for, migrate_engine, transaction
from registry.directory_store import latest
from registry.operations import Registry, RegistryKeys
from registry.provision import init_registry

START = datetime(2030, 1, 1, tzinfo=UTC)


@contextmanager
def _registry(
    tmp_path: Path, store_url: str, lifetime_s: float = RegistryConfig.directory_lifetime_s
) -> Iterator[tuple[Registry, list[datetime], Engine]]:
    """A registry whose clock is `now[0]`."""
    init_registry(tmp_path, "test-federation")
    config = RegistryConfig(
        federation_id="test-federation",
        data_dir=tmp_path,
        database_url=store_url,
        directory_lifetime_s=lifetime_s,
    )
    now = [START]
    engine = create_engine_for(store_url)
    try:
        migrate_engine(engine)
        keys = RegistryKeys.load(config.paths)
        yield Registry(engine, keys, config, clock=lambda: now[0]), now, engine
    finally:
        engine.dispose()


def test_by_default_a_directory_lives_a_day_and_is_re_signed_every_hour(
    tmp_path: Path, store_url: str
) -> None:
    with _registry(tmp_path, store_url) as (registry, now, engine):
        assert registry.ensure_directory() == 1
        now[0] = START + timedelta(minutes=59)
        assert registry.republish_if_due() is None
        now[0] = START + timedelta(minutes=61)
        assert registry.republish_if_due() == 2
        with transaction(engine) as session:
            published = latest(session)
        assert published is not None
        assert published.expires_at - published.issued_at == timedelta(days=1)
        now[0] += timedelta(minutes=30)
        assert registry.republish_if_due() is None


def test_a_lifetime_shorter_than_the_re_signing_interval_is_re_signed_at_half_life(
    tmp_path: Path, store_url: str
) -> None:
    with _registry(tmp_path, store_url, lifetime_s=600.0) as (registry, now, _engine):
        assert registry.ensure_directory() == 1
        now[0] = START + timedelta(seconds=299)
        assert registry.republish_if_due() is None
        now[0] = START + timedelta(seconds=301)
        assert registry.republish_if_due() == 2
