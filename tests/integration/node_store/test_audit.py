"""The audit chain: intact when untouched, and it says which record was edited or deleted."""

from __future__ import annotations

import itertools
import threading
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from federation_node import audit
from federation_node.db import session_scope
from federation_node.models import AuditRecord


def _append(engine: Engine, now: datetime, subject_id: str = "req-1") -> AuditRecord:
    with session_scope(engine) as session:
        return audit.append(
            session,
            actor="op-0a1b2c3d4e5f",
            action="assistance.accept",
            subject_type="assistance_request",
            subject_id=subject_id,
            details={"status": "accepted", "sequence": 1, "methods": ["on_site"], "late": False},
            now=now,
        )


def _problems(engine: Engine) -> list[str]:
    with session_scope(engine) as session:
        return audit.verify_chain(session)


def _execute(engine: Engine, statement: str) -> None:
    with engine.begin() as connection:
        connection.execute(sa.text(statement))


def test_appended_records_form_an_intact_chain(engine: Engine, now: datetime) -> None:
    records = [_append(engine, now + timedelta(seconds=i), f"req-{i}") for i in range(4)]
    assert [r.seq for r in records] == [1, 2, 3, 4]
    assert records[0].prev_hash == AuditRecord.GENESIS_HASH
    assert all(b.prev_hash == a.record_hash for a, b in itertools.pairwise(records))
    assert _problems(engine) == []


def test_empty_chain_is_intact(engine: Engine) -> None:
    assert _problems(engine) == []


def test_a_time_in_another_zone_is_recorded_in_utc_and_verifies(
    engine: Engine, now: datetime
) -> None:
    record = _append(engine, now.astimezone(timezone(timedelta(hours=8))))
    assert record.at == now
    assert record.at.utcoffset() == timedelta(0)
    assert _problems(engine) == []


@pytest.mark.parametrize(
    "edit",
    [
        "UPDATE audit_record SET actor = 'op-someoneelse' WHERE seq = 2",
        "UPDATE audit_record SET subject_id = 'req-99' WHERE seq = 2",
        "UPDATE audit_record SET at = at + interval '1 hour' WHERE seq = 2",
    ],
    ids=["actor", "subject", "time"],
)
def test_an_edited_record_is_detected(engine: Engine, now: datetime, edit: str) -> None:
    for i in range(3):
        _append(engine, now, f"req-{i}")
    if engine.dialect.name == "sqlite":
        edit = edit.replace("at + interval '1 hour'", "datetime(at, '+1 hour')")
    _execute(engine, edit)
    assert _problems(engine) == ["record 2 was altered after it was written"]


def test_edited_details_are_detected(engine: Engine, now: datetime) -> None:
    for i in range(3):
        _append(engine, now, f"req-{i}")
    with session_scope(engine) as session:
        record = session.get(AuditRecord, 3)
        assert record is not None
        record.details = {**record.details, "status": "declined"}
    assert _problems(engine) == ["record 3 was altered after it was written"]


def test_a_rehashed_edit_breaks_the_link_to_the_next_record(engine: Engine, now: datetime) -> None:
    for i in range(3):
        _append(engine, now, f"req-{i}")
    with session_scope(engine) as session:
        record = session.get(AuditRecord, 2)
        assert record is not None
        record.actor = "op-someoneelse"
        record.record_hash = audit.record_hash(record)
    assert _problems(engine) == ["record 3 does not link to the record before it"]


@pytest.mark.parametrize(
    ("deleted", "expected"),
    [
        ("DELETE FROM audit_record WHERE seq = 2", ["record 2 missing (deleted?) before record 3"]),
        ("DELETE FROM audit_record WHERE seq = 1", ["record 1 missing (deleted?) before record 2"]),
        (
            "DELETE FROM audit_record WHERE seq IN (2, 3)",
            ["records 2 to 3 missing (deleted?) before record 4"],
        ),
    ],
)
def test_a_deleted_record_is_detected(
    engine: Engine, now: datetime, deleted: str, expected: list[str]
) -> None:
    for i in range(4):
        _append(engine, now, f"req-{i}")
    _execute(engine, deleted)
    assert _problems(engine) == expected


def test_details_must_be_ids_and_enum_values(engine: Engine, now: datetime) -> None:
    with session_scope(engine) as session, pytest.raises(ValueError, match="float"):
        audit.append(
            session,
            actor="node:qingdao",
            action="payment.suspend",
            subject_type="beneficiary",
            subject_id="b-1",
            details={"amount": 12.5},  # type: ignore[dict-item]
            now=now,
        )


def test_concurrent_appends_make_one_unbroken_chain(engine: Engine, now: datetime) -> None:
    barrier = threading.Barrier(4)

    def writer(index: int) -> None:
        barrier.wait()
        for j in range(5):
            _append(engine, now, f"req-{index}-{j}")

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert _problems(engine) == []
    with session_scope(engine) as session:
        exported = list(audit.export(session))
        head = audit.head(session)
    assert [r["seq"] for r in exported] == list(range(1, 21))
    assert head is not None
    assert exported[-1]["record_hash"] == head.record_hash
    assert exported[0]["at"] == now.isoformat()
