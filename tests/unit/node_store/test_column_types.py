"""Column types: datetimes are UTC-aware on every engine, enums are their string values."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy.dialects import postgresql, sqlite

from federation_node.ids import new_id
from federation_node.store.models import AssistanceState, StrEnumType, UtcDateTime

SHANGHAI = timezone(timedelta(hours=8))


def test_sqlite_stores_naive_utc_and_reads_back_aware_utc() -> None:
    column = UtcDateTime()
    moment = datetime(2025, 6, 23, 16, 30, tzinfo=SHANGHAI)
    stored = column.process_bind_param(moment, sqlite.dialect())
    assert stored == datetime(2025, 6, 23, 8, 30)
    read = column.process_result_value(stored, sqlite.dialect())
    assert read == moment
    assert read is not None
    assert read.tzinfo is UTC


def test_postgres_values_are_normalised_to_utc() -> None:
    column = UtcDateTime()
    moment = datetime(2025, 6, 23, 16, 30, tzinfo=SHANGHAI)
    assert column.process_bind_param(moment, postgresql.dialect()) == moment
    read = column.process_result_value(moment, postgresql.dialect())
    assert read is not None
    assert read.tzinfo is UTC


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        UtcDateTime().process_bind_param(datetime(2025, 1, 1), sqlite.dialect())


def test_enum_columns_store_values_and_refuse_strangers() -> None:
    column = StrEnumType(AssistanceState)
    assert column.process_bind_param(AssistanceState.SCHEDULED, sqlite.dialect()) == "scheduled"
    assert column.process_bind_param("declined", sqlite.dialect()) == "declined"
    assert column.process_result_value("queued", sqlite.dialect()) is AssistanceState.QUEUED
    with pytest.raises(ValueError, match="lost"):
        column.process_bind_param("lost", sqlite.dialect())


def test_new_ids_are_uuid7_and_sort_by_creation() -> None:
    ids = [new_id() for _ in range(1000)]
    assert all(uuid.UUID(value).version == 7 for value in ids)
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
