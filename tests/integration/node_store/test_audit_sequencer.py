"""The audit sequencer thread: it chains what transactions queue, when woken or on its interval,
picks up what a crash left pending, survives a failed pass, and flushes the rest when stopped."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import col, func, select
from structlog.testing import capture_logs

from federation_node.audit_sequencer import AuditSequencer
from federation_node.store import audit
from federation_node.store.db import create_engine_for, migrate, session_scope
from federation_node.store.models import AuditPending, AuditRecord

# Long enough that a test passing within it was not helped by the interval.
NEVER_S = 3600.0
DEADLINE_S = 20.0


def _append(engine: Engine, now: datetime, subject_id: str) -> None:
    with session_scope(engine) as session:
        audit.append(
            session,
            actor="node:qingdao",
            action="beneficiary.register",
            subject_type="beneficiary",
            subject_id=subject_id,
            details={},
            now=now,
        )


def _chained(engine: Engine) -> list[str]:
    with session_scope(engine) as session:
        records = session.exec(select(AuditRecord).order_by(col(AuditRecord.seq)))
        return [record.subject_id for record in records]


def _pending_count(engine: Engine) -> int:
    with session_scope(engine) as session:
        return session.exec(select(func.count()).select_from(AuditPending)).one()


def _wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.01)
    raise AssertionError(f"not within {DEADLINE_S} s: {what}")


@pytest.fixture
def start_sequencer() -> Iterator[Callable[[Engine, float], AuditSequencer]]:
    """`start(engine, interval_s)`: a running sequencer, stopped at the end of the test."""
    started: list[AuditSequencer] = []

    def start(engine: Engine, interval_s: float) -> AuditSequencer:
        sequencer = AuditSequencer(engine, interval_s)
        sequencer.start()
        started.append(sequencer)
        return sequencer

    yield start
    for sequencer in started:
        sequencer.stop()


def test_records_appended_after_the_sequencer_starts_are_chained_on_its_interval(
    engine: Engine, now: datetime, start_sequencer: Callable[[Engine, float], AuditSequencer]
) -> None:
    sequencer = start_sequencer(engine, 0.05)
    assert sequencer.daemon
    assert sequencer.name == "audit-sequencer"
    for i in range(3):
        _append(engine, now, f"b-{i}")
    _wait_until(lambda: _chained(engine) == ["b-0", "b-1", "b-2"], "three records chained")
    assert _pending_count(engine) == 0


def test_a_woken_sequencer_chains_at_once(
    engine: Engine, now: datetime, start_sequencer: Callable[[Engine, float], AuditSequencer]
) -> None:
    _append(engine, now, "b-before")
    sequencer = start_sequencer(engine, NEVER_S)
    # Its first pass, on starting, chains what was there; after that only wake() can help.
    _wait_until(lambda: _chained(engine) == ["b-before"], "the first pass")
    _append(engine, now, "b-after")
    sequencer.wake()
    _wait_until(lambda: _chained(engine) == ["b-before", "b-after"], "the woken pass")


def test_stop_chains_what_is_still_pending(engine: Engine, now: datetime) -> None:
    sequencer = AuditSequencer(engine, NEVER_S)
    sequencer.start()
    for i in range(3):
        _append(engine, now, f"b-{i}")
    sequencer.stop()
    assert not sequencer.is_alive()
    assert _chained(engine) == ["b-0", "b-1", "b-2"]
    assert _pending_count(engine) == 0
    with session_scope(engine) as session:
        assert audit.verify_chain(session) == []


@pytest.fixture
def unmigrated_engine(tmp_path: Path) -> Iterator[Engine]:
    engine = create_engine_for(f"sqlite:///{tmp_path / 'node.db'}")
    try:
        yield engine
    finally:
        engine.dispose()


def test_a_sequencer_started_after_a_crash_chains_what_was_left_pending(
    restarted: Engine, start_sequencer: Callable[[Engine, float], AuditSequencer]
) -> None:
    assert _pending_count(restarted) == 3
    start_sequencer(restarted, NEVER_S)
    _wait_until(
        lambda: _chained(restarted) == ["crashed-0", "crashed-1", "crashed-2"], "the first pass"
    )
    assert _pending_count(restarted) == 0


def test_a_failed_pass_is_logged_and_the_next_one_chains(
    unmigrated_engine: Engine,
    now: datetime,
    start_sequencer: Callable[[Engine, float], AuditSequencer],
) -> None:
    with capture_logs() as logs:
        # No tables yet: every pass fails until the database is migrated.
        start_sequencer(unmigrated_engine, 0.02)
        _wait_until(
            lambda: any(entry["event"] == "audit.sequence_failed" for entry in logs),
            "a failed pass logged",
        )
    migrate(unmigrated_engine.url.render_as_string())
    _append(unmigrated_engine, now, "b-0")
    _wait_until(lambda: _chained(unmigrated_engine) == ["b-0"], "a pass after the failures")
