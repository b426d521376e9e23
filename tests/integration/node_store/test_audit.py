"""The audit chain: intact when untouched, and it says which record was edited or deleted.

Records are appended as pending in their business transaction and chained by `audit.flush` (the
sequencer's pass); these tests chain them explicitly before they read the chain.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine, event
from sqlmodel import col, func, select

from federation_node.store import audit
from federation_node.store.db import create_engine_for, migrate, session_scope
from federation_node.store.models import AuditPending, AuditRecord
from tests.helpers.audit_trail import chained_records
from tests.helpers.statements import assert_read_through, executed_statements


def _append(engine: Engine, now: datetime, subject_id: str = "req-1") -> AuditPending:
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


def _pending_count(engine: Engine) -> int:
    with session_scope(engine) as session:
        return session.exec(select(func.count()).select_from(AuditPending)).one()


def _problems(engine: Engine) -> list[str]:
    with session_scope(engine) as session:
        return audit.verify_chain(session)


def _execute(engine: Engine, statement: str) -> None:
    with engine.begin() as connection:
        connection.execute(sa.text(statement))


def test_appended_records_form_an_intact_chain(engine: Engine, now: datetime) -> None:
    for i in range(4):
        _append(engine, now + timedelta(seconds=i), f"req-{i}")
    records = chained_records(engine)
    assert [r.seq for r in records] == [1, 2, 3, 4]
    assert [r.subject_id for r in records] == ["req-0", "req-1", "req-2", "req-3"]
    assert records[0].prev_hash == AuditRecord.GENESIS_HASH
    assert all(b.prev_hash == a.record_hash for a, b in itertools.pairwise(records))
    assert _problems(engine) == []


def test_empty_chain_is_intact(engine: Engine) -> None:
    assert _problems(engine) == []


def test_a_time_in_another_zone_is_recorded_in_utc_and_verifies(
    engine: Engine, now: datetime
) -> None:
    _append(engine, now.astimezone(timezone(timedelta(hours=8))))
    [record] = chained_records(engine)
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
    audit.flush(engine)
    if engine.dialect.name == "sqlite":
        edit = edit.replace("at + interval '1 hour'", "datetime(at, '+1 hour')")
    _execute(engine, edit)
    assert _problems(engine) == ["record 2 was altered after it was written"]


def test_edited_details_are_detected(engine: Engine, now: datetime) -> None:
    for i in range(3):
        _append(engine, now, f"req-{i}")
    audit.flush(engine)
    with session_scope(engine) as session:
        record = session.get(AuditRecord, 3)
        assert record is not None
        record.details = {**record.details, "status": "declined"}
    assert _problems(engine) == ["record 3 was altered after it was written"]


def test_a_rehashed_edit_breaks_the_link_to_the_next_record(engine: Engine, now: datetime) -> None:
    for i in range(3):
        _append(engine, now, f"req-{i}")
    audit.flush(engine)
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
    audit.flush(engine)
    _execute(engine, deleted)
    assert _problems(engine) == expected


def test_a_batch_of_records_is_queued_after_those_before_it_and_chains_the_same(
    engine: Engine, now: datetime
) -> None:
    details: dict[str, audit.DetailValue] = {"change_id": "c-1", "to_fen": 312_000, "ok": True}
    with session_scope(engine) as session:
        audit.append(
            session,
            actor="op-1",
            action="entitlement.amount_proposed",
            subject_type="beneficiary",
            subject_id="b-0",
            details={"methods": ["roll"], "note": None},
            now=now,
        )
        batch = [
            audit.NewRecord("op-2", "entitlement.amount_approved", "beneficiary", f"b-{i}", details)
            for i in (1, 2, 3)
        ]
        assert audit.append_many(session, batch, now) == 3
        assert audit.append_many(session, [], now) == 0
    records = chained_records(engine)
    assert [(r.seq, r.subject_id, r.actor) for r in records] == [
        (1, "b-0", "op-1"),
        (2, "b-1", "op-2"),
        (3, "b-2", "op-2"),
        (4, "b-3", "op-2"),
    ]
    assert records[0].details == {"methods": ["roll"], "note": None}
    assert all(r.details == details and r.at == now for r in records[1:])
    assert _problems(engine) == []
    with session_scope(engine) as session, pytest.raises(ValueError, match="float"):
        audit.append_many(
            session,
            [audit.NewRecord("op-2", "x", "beneficiary", "b-4", {"amount": 1.5})],  # type: ignore[dict-item]
            now,
        )
    assert _pending_count(engine) == 0


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


def _run_together(workers: list[Callable[[], None]]) -> None:
    """Run every worker in its own thread, started together; re-raise the first failure."""
    barrier = threading.Barrier(len(workers))
    failures: list[BaseException] = []

    def run(worker: Callable[[], None]) -> None:
        barrier.wait()
        try:
            worker()
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=run, args=(worker,)) for worker in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a worker did not finish"
    if failures:
        raise failures[0]


def _writer(engine: Engine, now: datetime, index: int, count: int) -> Callable[[], None]:
    def write() -> None:
        for j in range(count):
            _append(engine, now, f"req-{index}-{j}")

    return write


def _written(writers: int, count: int) -> list[str]:
    return sorted(f"req-{i}-{j}" for i in range(writers) for j in range(count))


def test_concurrent_appends_then_a_flush_chain_every_record_exactly_once(
    engine: Engine, now: datetime
) -> None:
    _run_together([_writer(engine, now, i, 10) for i in range(8)])
    assert _pending_count(engine) == 80
    records = chained_records(engine)
    assert _pending_count(engine) == 0
    assert _problems(engine) == []
    assert [r.seq for r in records] == list(range(1, 81))
    assert sorted(r.subject_id for r in records) == _written(8, 10)
    with session_scope(engine) as session:
        exported = list(audit.export(session))
        head = audit.head(session)
    assert head is not None
    assert exported[-1]["record_hash"] == head.record_hash
    assert exported[0]["at"] == now.isoformat()


def test_a_flush_with_nothing_pending_chains_nothing(engine: Engine, now: datetime) -> None:
    assert audit.flush(engine) == 0
    _append(engine, now)
    assert audit.flush(engine) == 1
    assert audit.flush(engine) == 0
    assert [r.seq for r in chained_records(engine)] == [1]


def test_a_pass_chains_at_most_its_limit_oldest_first(engine: Engine, now: datetime) -> None:
    for i in range(5):
        _append(engine, now, f"req-{i}")
    with session_scope(engine) as session:
        assert audit.sequence_pending(session, limit=3) == 3
    assert _pending_count(engine) == 2
    records = chained_records(engine)
    assert [r.subject_id for r in records] == [f"req-{i}" for i in range(5)]
    assert _problems(engine) == []


def test_flush_chains_more_than_one_batch(engine: Engine, now: datetime) -> None:
    for i in range(7):
        _append(engine, now, f"req-{i}")
    assert audit.flush(engine, batch=3) == 7
    assert _pending_count(engine) == 0
    assert _problems(engine) == []


class _BusinessRuleError(Exception):
    pass


def test_a_rolled_back_transaction_leaves_no_pending_or_chained_record(
    engine: Engine, now: datetime
) -> None:
    def append_then_fail() -> None:
        with session_scope(engine) as session:
            audit.append(
                session,
                actor="op-0a1b2c3d4e5f",
                action="assistance.accept",
                subject_type="assistance_request",
                subject_id="req-1",
                details={},
                now=now,
            )
            raise _BusinessRuleError

    with pytest.raises(_BusinessRuleError):
        append_then_fail()
    assert _pending_count(engine) == 0
    assert audit.flush(engine) == 0
    assert chained_records(engine) == []


def test_records_committed_before_a_crash_are_chained_by_a_later_flush(
    restarted: Engine,
) -> None:
    assert _pending_count(restarted) == 3
    assert [r.subject_id for r in chained_records(restarted)] == [
        "crashed-0",
        "crashed-1",
        "crashed-2",
    ]
    assert _pending_count(restarted) == 0
    assert _problems(restarted) == []


@pytest.fixture
def replicas(postgres_url: str) -> Iterator[tuple[Engine, Engine]]:
    """Two engines on one PostgreSQL database, as two replicas of a node have."""
    migrate(postgres_url)
    first, second = create_engine_for(postgres_url), create_engine_for(postgres_url)
    try:
        yield first, second
    finally:
        first.dispose()
        second.dispose()


@pytest.mark.postgres
def test_two_replicas_sequencing_while_appends_go_on_make_one_chain(
    replicas: tuple[Engine, Engine], now: datetime
) -> None:
    appends_done = threading.Event()
    chained: list[int] = []

    def sequencer(engine: Engine) -> Callable[[], None]:
        def run() -> None:
            while True:
                finishing = appends_done.is_set()
                # Small batches, so the two replicas' passes interleave many times.
                with session_scope(engine) as session:
                    count = audit.sequence_pending(session, limit=5)
                chained.append(count)
                if finishing and count == 0:
                    return

        return run

    def appenders() -> None:
        _run_together(
            [_writer(replicas[i % 2], now, i, 30) for i in range(4)],
        )
        appends_done.set()

    _run_together([appenders, sequencer(replicas[0]), sequencer(replicas[1])])
    assert _pending_count(replicas[0]) == 0
    assert sum(chained) == 120
    with session_scope(replicas[1]) as session:
        records = list(session.exec(select(AuditRecord).order_by(col(AuditRecord.seq))))
    assert [r.seq for r in records] == list(range(1, 121))
    assert sorted(r.subject_id for r in records) == _written(4, 30)
    assert _problems(replicas[0]) == []


@pytest.mark.postgres
def test_append_does_not_wait_for_the_chain_lock(pg_engine: Engine, now: datetime) -> None:
    with pg_engine.connect() as holder, holder.begin():
        holder.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": audit.AUDIT_LOCK_KEY})
        appending = threading.Thread(target=_append, args=(pg_engine, now))
        appending.start()
        appending.join(timeout=30)
        assert not appending.is_alive(), "append waited for the chain lock"
    assert _pending_count(pg_engine) == 1
    assert [r.subject_id for r in chained_records(pg_engine)] == ["req-1"]


@pytest.mark.postgres
def test_a_page_and_its_count_agree_while_the_sequencer_commits_between_them(
    pg_engine: Engine, now: datetime
) -> None:
    _append(pg_engine, now, "req-1")
    audit.flush(pg_engine)
    which = audit.AuditFilter(action_prefix="assistance.")
    raced = False

    def sequencer_commits_meanwhile(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        nonlocal raced
        # After the page's first statement, whichever it is.
        if not raced and statement.lstrip().upper().startswith("SELECT"):
            raced = True
            _append(pg_engine, now, "req-2")
            audit.flush(pg_engine)

    event.listen(pg_engine, "after_cursor_execute", sequencer_commits_meanwhile)
    try:
        with session_scope(pg_engine) as session:
            records, token, total = audit.page(session, which, 10, "")
    finally:
        event.remove(pg_engine, "after_cursor_execute", sequencer_commits_meanwhile)
    assert raced
    assert (total, [r.subject_id for r in records], token) == (1, ["req-1"], "")
    with session_scope(pg_engine) as session:
        records, _, total = audit.page(session, which, 10, "")
    assert (total, [r.subject_id for r in records]) == (2, ["req-2", "req-1"])


def _write_chain(engine: Engine, now: datetime) -> None:
    """4,000 records (seq 1 to 4,000) about 500 subjects, by 40 operators and by a rare one
    (five records)."""
    actors = [f"op-{n}" for n in range(40)]
    with session_scope(engine) as session:
        session.execute(
            sa.insert(AuditRecord.__table__),  # type: ignore[attr-defined]
            [
                {
                    "seq": seq,
                    "at": now,
                    "actor": "op-rare" if seq % 800 == 0 else actors[seq % 40],
                    "action": "signals.record",
                    "subject_type": "beneficiary",
                    "subject_id": f"b-{seq % 500}",
                    "details": {},
                    "prev_hash": "0" * 64,
                    "record_hash": "0" * 64,
                }
                for seq in range(1, 4_001)
            ],
        )
    with engine.begin() as connection:
        connection.exec_driver_sql("ANALYZE")


def test_a_page_by_subject_or_actor_reads_the_matching_records_through_an_index(
    engine: Engine, now: datetime
) -> None:
    # A province office's chain holds millions of records; an auditor asks about one person or
    # one operator.
    _write_chain(engine, now)
    for which, index, matching in (
        (audit.AuditFilter(subject_id="b-7"), "ix_audit_record_subject_id_seq", 8),
        (audit.AuditFilter(actor="op-rare"), "ix_audit_record_actor_seq", 5),
    ):
        with executed_statements(engine) as executed, session_scope(engine) as session:
            rows, _, total = audit.page(session, which, 5, "")
        assert total == matching
        assert [row.seq for row in rows] == sorted((row.seq for row in rows), reverse=True)
        assert all(row.subject_id == which.subject_id or row.actor == which.actor for row in rows)
        plans = assert_read_through(engine, executed, "audit_record")
        assert len(plans) == 2, executed
        assert all(index in plan for plan in plans), plans


def test_the_unfiltered_chain_is_counted_by_its_newest_record_not_by_reading_it(
    engine: Engine, now: datetime
) -> None:
    _write_chain(engine, now)
    with executed_statements(engine) as executed, session_scope(engine) as session:
        rows, token, total = audit.page(session, audit.AuditFilter(), 5, "")
    assert (total, [row.seq for row in rows]) == (4_000, [4_000, 3_999, 3_998, 3_997, 3_996])
    assert token
    assert len(assert_read_through(engine, executed, "audit_record")) == 2, executed
