"""How far the audit chain has been verified: a view verifies only what was added since the last
check, a full pass re-reads everything, and what either finds stays found.

Rows are edited behind the node's back with plain SQL, as someone with database access would.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy import Engine
from sqlmodel import col, select

from federation_node.audit_checker import AuditChecker
from federation_node.store import audit, audit_check
from federation_node.store.db import session_scope
from federation_node.store.models import AuditRecord


def _chain(engine: Engine, count: int, now: datetime) -> None:
    """`count` more records, chained as the node's sequencer leaves them."""
    with session_scope(engine) as session:
        for index in range(count):
            audit.append(
                session,
                actor="op-0a1b2c3d4e5f",
                action="assistance.accept",
                subject_type="assistance_request",
                subject_id=f"req-{index}",
                details={"status": "accepted"},
                now=now,
            )
    audit.flush(engine)


def _checked_chain(engine: Engine, count: int, now: datetime) -> None:
    """`count` records, chained and then checked at `now` (the mark at the last of them)."""
    _chain(engine, count, now)
    audit_check.check_new(engine, now)


def _execute(engine: Engine, statement: str) -> None:
    with engine.begin() as connection:
        connection.execute(sa.text(statement))


def _rehash_from(engine: Engine, seq: int) -> None:
    """Rewrite the chain consistently from record `seq` on, as a forger who knows the scheme
    would after editing it: every hash and link recomputed, so a walk finds nothing."""
    with session_scope(engine) as session:
        records = session.exec(
            select(AuditRecord)
            .where(col(AuditRecord.seq) >= seq - 1)
            .order_by(col(AuditRecord.seq))
        )
        previous: AuditRecord | None = None
        for record in records:
            if previous is not None:
                record.prev_hash = previous.record_hash
                record.record_hash = audit.record_hash(record)
            previous = record


def test_a_new_database_has_checked_nothing(engine: Engine, now: datetime) -> None:
    _chain(engine, 3, now)
    with session_scope(engine) as session:
        check = audit_check.current(session)
        assert audit_check.full_pass_due(session, now, timedelta(hours=6))
    assert (check.through_seq, check.newest_seq, check.unverified) == (0, 3, 3)
    assert check.intact
    assert check.full_pass_at is None


def test_a_view_verifies_the_new_records_and_moves_the_mark(engine: Engine, now: datetime) -> None:
    _chain(engine, 5, now)
    first = audit_check.check_new(engine, now)
    assert (first.through_seq, first.newest_seq, first.unverified) == (5, 5, 0)
    assert first.intact
    assert first.checked_at == now
    _chain(engine, 2, now)
    later = now + timedelta(minutes=1)
    second = audit_check.check_new(engine, later)
    assert (second.through_seq, second.newest_seq) == (7, 7)
    assert second.checked_at == later


def test_a_view_reads_only_the_records_after_the_mark(engine: Engine, now: datetime) -> None:
    _checked_chain(engine, 40, now)
    # An edit to a record before the mark is the full pass's to find: the view does not read it.
    _execute(engine, "UPDATE audit_record SET actor = 'op-someoneelse' WHERE seq = 2")
    _chain(engine, 3, now)
    check = audit_check.check_new(engine, now)
    assert (check.through_seq, check.intact) == (43, True)
    assert not audit_check.check_all(engine, now).intact


def test_a_view_verifies_at_most_its_limit_and_says_how_many_are_left(
    engine: Engine, now: datetime
) -> None:
    _chain(engine, 25, now)
    check = audit_check.check_new(engine, now, limit=10)
    assert (check.through_seq, check.unverified) == (10, 15)
    check = audit_check.check_new(engine, now, limit=10)
    check = audit_check.check_new(engine, now, limit=10)
    assert (check.through_seq, check.unverified) == (25, 0)
    assert check.intact


def test_the_full_pass_finds_an_old_edit_and_the_problem_stays(
    engine: Engine, now: datetime
) -> None:
    _checked_chain(engine, 6, now)
    _execute(engine, "UPDATE audit_record SET subject_id = 'req-99' WHERE seq = 2")
    told: list[str] = []
    full = audit_check.check_all(engine, now + timedelta(hours=6), told.append)
    assert told == ["record 2 was altered after it was written"]
    assert full.problems == ("record 2 was altered after it was written",)
    assert full.full_pass_at == now + timedelta(hours=6)
    assert full.full_pass_through == 6
    # Found again by the next pass: kept once. A view after it still shows it.
    again = audit_check.check_all(engine, now + timedelta(hours=12))
    assert again.problems == full.problems
    _chain(engine, 1, now)
    assert audit_check.check_new(engine, now).problems == full.problems


def test_a_chain_cut_back_after_a_check_is_found_by_the_next_one(
    engine: Engine, now: datetime
) -> None:
    _checked_chain(engine, 5, now)
    _execute(engine, "DELETE FROM audit_record WHERE seq >= 4")
    with session_scope(engine) as session:
        assert audit.verify_chain(session) == []  # what is left is a valid chain
    gone = f"record 5, verified on {now:%Y-%m-%d %H:%M} UTC, is gone (the chain was cut back?)"
    assert audit_check.check_new(engine, now + timedelta(minutes=1)).problems == (gone,)
    full = audit_check.check_all(engine, now + timedelta(hours=6))
    assert full.problems == (gone,)
    assert not full.intact


def test_a_chain_rewritten_consistently_after_a_check_is_found(
    engine: Engine, now: datetime
) -> None:
    _checked_chain(engine, 4, now)
    _execute(engine, "UPDATE audit_record SET actor = 'op-someoneelse' WHERE seq = 2")
    _rehash_from(engine, 2)
    with session_scope(engine) as session:
        assert audit.verify_chain(session) == []  # a walk alone sees a valid chain
    rewritten = (
        f"record 4 is not the one verified on {now:%Y-%m-%d %H:%M} UTC: the chain was "
        "rewritten from it or from a record before it"
    )
    check = audit_check.check_new(engine, now)
    assert check.problems == (rewritten,)
    # A full pass over the rewritten chain finds nothing new and clears nothing.
    assert audit_check.check_all(engine, now + timedelta(hours=6)).problems == (rewritten,)


def test_the_row_keeps_the_first_problems_and_says_more_were_dropped(
    engine: Engine, now: datetime
) -> None:
    count = audit_check.KEPT_PROBLEMS + 5
    _chain(engine, count, now)
    _execute(engine, "UPDATE audit_record SET actor = 'op-someoneelse'")
    told: list[str] = []
    check = audit_check.check_all(engine, now, told.append)
    assert len(told) == count
    assert len(check.problems) == audit_check.KEPT_PROBLEMS
    assert check.problems[0] == "record 1 was altered after it was written"
    assert check.problems_dropped


def test_a_full_pass_is_due_after_the_interval(engine: Engine, now: datetime) -> None:
    _chain(engine, 2, now)
    audit_check.check_all(engine, now)
    interval = timedelta(hours=6)
    with session_scope(engine) as session:
        assert not audit_check.full_pass_due(session, now + timedelta(hours=5), interval)
        assert audit_check.full_pass_due(session, now + interval, interval)


def test_the_background_checker_makes_a_full_pass_when_due_and_verifies_new_records_between(
    engine: Engine, now: datetime
) -> None:
    clock = [now]
    checker = AuditChecker(engine, 3600.0, lambda: clock[0])
    _chain(engine, 3, now)
    checker.run_pass()  # never checked: a full pass
    with session_scope(engine) as session:
        first = audit_check.current(session)
    assert (first.full_pass_at, first.full_pass_through, first.through_seq) == (now, 3, 3)
    _chain(engine, 2, now)
    clock[0] = now + timedelta(minutes=1)
    checker.run_pass()  # not due: only the new records
    with session_scope(engine) as session:
        second = audit_check.current(session)
    assert (second.full_pass_at, second.through_seq, second.checked_at) == (now, 5, clock[0])
    clock[0] = now + timedelta(hours=1)
    checker.run_pass()
    with session_scope(engine) as session:
        third = audit_check.current(session)
    assert (third.full_pass_at, third.full_pass_through) == (clock[0], 5)
