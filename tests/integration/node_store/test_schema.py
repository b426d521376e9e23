"""The migrated schema is the models' schema, and the engine keeps its promises on both engines."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlalchemy.dialects import postgresql

from federation_node.ids import new_id
from federation_node.store import beneficiaries, feed_store
from federation_node.store.db import (
    MIGRATIONS,
    create_engine_for,
    is_postgres,
    migrate,
    session_scope,
)
from federation_node.store.models import Beneficiary, SignalOutcome, metadata
from tests.integration.node_store.conftest import migrate_to, register


def _differences(engine: Engine, target: sa.MetaData) -> list[object]:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, target))


def _head_revision() -> str:
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def test_migrated_schema_has_no_differences_from_the_models(engine: Engine) -> None:
    assert _differences(engine, metadata) == []


def test_partial_indexes_have_the_models_predicates(engine: Engine) -> None:
    # The schema comparison reads an index's columns, not its WHERE clause.
    with engine.connect() as connection:
        if is_postgres(engine):
            found = connection.execute(
                sa.text("SELECT indexdef FROM pg_indexes WHERE indexname = :name"),
                {"name": "ix_beneficiary_without_roll_key"},
            ).scalar_one()
        else:
            found = connection.execute(
                sa.text("SELECT sql FROM sqlite_master WHERE name = :name"),
                {"name": "ix_beneficiary_without_roll_key"},
            ).scalar_one()
    assert "roll_key IS NULL" in found
    assert "length(sealed_identity) > 0" in found


def test_schema_comparison_notices_a_model_the_migrations_lack(engine: Engine) -> None:
    extended = sa.MetaData()
    for table in metadata.tables.values():
        table.to_metadata(extended)
    sa.Table("unmigrated", extended, sa.Column("id", sa.Integer, primary_key=True))
    assert _differences(engine, extended) != []


def _declared_collations() -> dict[tuple[str, str], str | None]:
    """What the models declare for every character column on PostgreSQL."""
    dialect = postgresql.dialect()
    return {
        (table.name, column.name): getattr(column.type.dialect_impl(dialect), "collation", None)
        for table in metadata.sorted_tables
        for column in table.columns
        if isinstance(column.type.dialect_impl(dialect), sa.String)
    }


def _found_collations(engine: Engine) -> dict[tuple[str, str], str | None]:
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text(
                "SELECT table_name, column_name, collation_name FROM information_schema.columns"
                " WHERE table_schema = current_schema()"
            )
        ).all()
    return {(table, column): collation for table, column, collation in rows}


def test_identifier_columns_compare_bytes_whatever_the_database_locale(engine: Engine) -> None:
    # The schema comparison above does not read collations.
    declared = _declared_collations()
    assert declared[("beneficiary", "beneficiary_id")] == "C"
    assert declared[("data_signal", "source_record_id")] == "C"
    assert declared[("beneficiary", "masked_identity_number")] is None
    if is_postgres(engine):
        found = _found_collations(engine)
        assert {key: found.get(key) for key in declared} == declared
    else:
        # SQLite compares bytes (BINARY) unless a column names another collation.
        with engine.connect() as connection:
            schema = connection.execute(sa.text("SELECT group_concat(sql) FROM sqlite_master"))
            assert "COLLATE" not in schema.scalar_one().upper()


def _add_signal(engine: Engine, signal: feed_store.NewSignal, now: datetime) -> None:
    with session_scope(engine) as session:
        feed_store.add_signals(session, [signal], recorded_by="feed", now=now)


def test_the_identifier_migration_keeps_every_row_and_constraint(
    store_url: str, now: datetime
) -> None:
    engine = create_engine_for(store_url)
    try:
        migrate_to(engine, "0023")
        person = register(engine, "before the migration")
        signal = feed_store.NewSignal(
            new_id(),
            "hospital",
            "k1:ab",
            1,
            person.beneficiary_id,
            now,
            SignalOutcome.APPLIED,
            None,
        )
        _add_signal(engine, signal, now)
        migrate(store_url)
        assert _differences(engine, metadata) == []
        with session_scope(engine) as session:
            assert beneficiaries.get(session, person.beneficiary_id).subject_locator == (
                person.subject_locator
            )
            assert feed_store.recorded(session, [("hospital", "k1:ab")]).keys() == {
                ("hospital", "k1:ab")
            }
        # The rebuilt unique constraint and foreign key still hold (the store writes signals
        # with COPY on PostgreSQL: the driver's error, not SQLAlchemy's).
        again = signal._replace(signal_id=new_id())
        with pytest.raises(Exception, match=r"(?i)unique|duplicate key"):
            _add_signal(engine, again, now)
        unknown = signal._replace(signal_id=new_id(), source_record_id="k1:cd", beneficiary_id="x")
        with pytest.raises(Exception, match=r"(?i)foreign key"):
            _add_signal(engine, unknown, now)
    finally:
        engine.dispose()


def test_migrating_twice_changes_nothing(store_url: str, engine: Engine) -> None:
    migrate(store_url)
    assert _differences(engine, metadata) == []
    with engine.connect() as connection:
        versions = connection.execute(sa.text("SELECT version_num FROM alembic_version")).all()
    assert [row[0] for row in versions] == [_head_revision()]


def test_datetimes_come_back_timezone_aware_utc(
    engine: Engine,
    add_beneficiary: Callable[..., Beneficiary],
    now: datetime,
) -> None:
    added = add_beneficiary()
    with session_scope(engine) as session:
        beneficiary = beneficiaries.get(session, added.beneficiary_id)
        beneficiary.valid_until = datetime(2026, 1, 1, 20, 0, tzinfo=timezone(timedelta(hours=8)))
    with session_scope(engine) as session:
        stored = session.get(Beneficiary, added.beneficiary_id)
        assert stored is not None
        assert stored.created_at == now
        assert stored.created_at.tzinfo is not None
        assert stored.created_at.utcoffset() == timedelta(0)
        assert stored.valid_until == datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
        assert stored.valid_until.utcoffset() == timedelta(0)


def test_a_naive_datetime_is_refused(
    engine: Engine,
    add_beneficiary: Callable[..., Beneficiary],
) -> None:
    added = add_beneficiary()

    def store_naive() -> None:
        with session_scope(engine) as session:
            beneficiary = beneficiaries.get(session, added.beneficiary_id)
            beneficiary.valid_until = datetime(2026, 1, 1)
            session.flush()

    with pytest.raises(sa.exc.StatementError, match="naive datetime"):
        store_naive()


class _DeliberateError(Exception):
    pass


def test_session_scope_rolls_back_when_the_block_raises(
    engine: Engine,
    add_beneficiary: Callable[..., Beneficiary],
) -> None:
    added = add_beneficiary()

    def change_then_fail() -> None:
        with session_scope(engine) as session:
            beneficiary = beneficiaries.get(session, added.beneficiary_id)
            beneficiary.masked_identity_number = "changed"
            session.flush()
            raise _DeliberateError

    with pytest.raises(_DeliberateError):
        change_then_fail()
    with session_scope(engine) as session:
        assert beneficiaries.get(session, added.beneficiary_id).masked_identity_number != "changed"


def test_database_refuses_values_outside_a_closed_set(
    engine: Engine,
    add_beneficiary: Callable[..., Beneficiary],
) -> None:
    added = add_beneficiary()
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE beneficiary SET status = 'retired' WHERE beneficiary_id = :id"),
            {"id": added.beneficiary_id},
        )


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    engine = create_engine_for(f"sqlite:///{tmp_path / 'node.db'}")
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
        assert not is_postgres(engine)
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_plain_postgresql_url_uses_psycopg_3(postgres_url: str) -> None:
    engine = create_engine_for(postgres_url.replace("postgresql+psycopg://", "postgresql://", 1))
    try:
        assert engine.dialect.driver == "psycopg"
        assert is_postgres(engine)
        assert engine.pool.size() == 16  # type: ignore[attr-defined]
    finally:
        engine.dispose()
