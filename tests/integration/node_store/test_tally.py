"""The running totals the metrics and the report read: what commits is added once, what rolls
back is not, retention never lowers them, concurrent writers lose nothing, the daily recount of
the roll neither, and the migrations start them from the rows already there."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session

from federation.errors import AlreadyExistsError
from federation_node.ids import new_id
from federation_node.store import (
    beneficiaries,
    feed_store,
    retention_store,
    signals_store,
    tally,
)
from federation_node.store.db import create_engine_for, migrate, session_scope
from federation_node.store.models import SignalOutcome
from tests.integration.node_store.conftest import (
    add_roll,
    issue_rows,
    issued_row,
    migrate_to,
    new_person,
    register,
)

DATA_MATCH, VIDEO_CALL = 7, 2


def _signals(count: int, outcome: SignalOutcome, now: datetime) -> list[feed_store.NewSignal]:
    return [
        feed_store.NewSignal(new_id(), "hospital", new_id(), 1, None, now, outcome, None)
        for _ in range(count)
    ]


def _issue(engine: Engine, first: int, methods: list[int], now: datetime) -> None:
    with session_scope(engine) as session:
        issue_rows(
            session,
            (issued_row(first + n, now, method=method) for n, method in enumerate(methods)),
            now,
        )


def _totals(engine: Engine) -> tuple[dict[str, int], dict[str, int]]:
    with session_scope(engine) as session:
        return (
            tally.totals(session, tally.ATTESTATIONS_ISSUED),
            tally.totals(session, tally.FEED_ROWS),
        )


def test_what_commits_is_counted_once_and_what_rolls_back_not_at_all(
    engine: Engine, now: datetime
) -> None:
    _issue(engine, 0, [DATA_MATCH] * 5 + [VIDEO_CALL] * 2, now)
    with session_scope(engine) as session:
        feed_store.add_signals(
            session,
            _signals(4, SignalOutcome.APPLIED, now)
            + _signals(3, SignalOutcome.UNKNOWN_PERSON, now),
            recorded_by="feed-hospital",
            now=now,
        )
        signals_store.add(
            session,
            source="desk",
            source_record_id=new_id(),
            kind=1,
            beneficiary_id=None,
            observed_at=now,
            outcome=SignalOutcome.IGNORED,
            attestation_id=None,
            recorded_by="clerk",
            now=now,
        )

    def failing_batch() -> None:
        with session_scope(engine) as session:
            feed_store.add_signals(
                session, _signals(9, SignalOutcome.APPLIED, now), recorded_by="feed", now=now
            )
            raise RuntimeError("the batch fails after its rows were written")

    with pytest.raises(RuntimeError):
        failing_batch()
    with Session(engine) as session:
        feed_store.add_signals(
            session, _signals(5, SignalOutcome.APPLIED, now), recorded_by="feed", now=now
        )
        session.rollback()
        # The same session used again after its rollback: what it wrote before is gone.
        session.commit()
    assert _totals(engine) == (
        {str(DATA_MATCH): 5, str(VIDEO_CALL): 2},
        {"applied": 4, "unknown_person": 3, "ignored": 1},
    )
    _issue(engine, 100, [DATA_MATCH] * 3, now)
    assert _totals(engine)[0] == {str(DATA_MATCH): 8, str(VIDEO_CALL): 2}


def test_retention_deleting_the_rows_leaves_the_totals(engine: Engine, now: datetime) -> None:
    with session_scope(engine) as session:
        feed_store.add_signals(
            session, _signals(6, SignalOutcome.UNKNOWN_PERSON, now), recorded_by="feed", now=now
        )
    later = now + timedelta(days=400)
    with session_scope(engine) as session:
        deleted = retention_store.delete_signals(
            session, recorded_before=later, unmatched_before=later
        )
    assert deleted == 6
    # A counter that went down would read to Prometheus as a reset, and a spike.
    assert _totals(engine)[1] == {"unknown_person": 6}


def test_concurrent_writers_to_one_total_lose_nothing(engine: Engine, now: datetime) -> None:
    errors: list[BaseException] = []

    def write(first: int) -> None:
        try:
            for n in range(15):
                _issue(engine, first + n, [DATA_MATCH], now)
        except BaseException as error:  # reported below, not lost in the thread
            errors.append(error)

    threads = [threading.Thread(target=write, args=(1000 * k,)) for k in range(1, 4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert _totals(engine)[0] == {str(DATA_MATCH): 45}


@pytest.fixture
def unmigrated(store_url: str) -> Iterator[Engine]:
    """An engine on a database no migration has run on yet."""
    engine = create_engine_for(store_url)
    yield engine
    engine.dispose()


def _written_before(
    engine: Engine, revision: str, monkeypatch: pytest.MonkeyPatch, write: Callable[[], None]
) -> None:
    """The database at `revision`, `write` run into it as the release before wrote (nothing
    added to the totals), then migrated to the head."""
    migrate_to(engine, revision)
    with monkeypatch.context() as patched:
        patched.setattr(tally, "add", lambda *_args: None)
        write()
    migrate(engine.url.render_as_string(hide_password=False))


def test_the_migration_starts_the_totals_from_the_rows_there_are(
    unmigrated: Engine, now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    def write() -> None:
        _issue(unmigrated, 0, [DATA_MATCH] * 4 + [VIDEO_CALL], now)
        with session_scope(unmigrated) as session:
            feed_store.add_signals(
                session,
                _signals(2, SignalOutcome.APPLIED, now) + _signals(1, SignalOutcome.IGNORED, now),
                recorded_by="feed",
                now=now,
            )
            # Received attestations are not this node's issue: left out of its total.
            session.execute(
                text("UPDATE attestation SET direction = 'received' WHERE attestation_id = :id"),
                {"id": "att-000000"},
            )

    _written_before(unmigrated, "0021", monkeypatch, write)
    assert _totals(unmigrated) == (
        {str(DATA_MATCH): 3, str(VIDEO_CALL): 1},
        {"applied": 2, "ignored": 1},
    )


def _roll_total(engine: Engine) -> tuple[int, int]:
    """The roll's running total and the people there are."""
    with session_scope(engine) as session:
        counted = session.execute(text("SELECT COUNT(*) FROM beneficiary")).scalar_one()
        return tally.roll_size(session), int(counted)


def test_the_roll_total_counts_registrations_that_commit(engine: Engine, now: datetime) -> None:
    register(engine)
    with session_scope(engine) as session:
        add_roll(session, 30, now)
    assert _roll_total(engine) == (31, 31)

    # A registration rolled back adds nothing; one refused as a duplicate neither.
    def rolled_back() -> None:
        with session_scope(engine) as session:
            beneficiaries.add_many(session, [new_person("rolled-back")], now)
            raise RuntimeError("the caller's transaction fails after the insert")

    with pytest.raises(RuntimeError):
        rolled_back()
    person = register(engine)
    with pytest.raises(AlreadyExistsError), session_scope(engine) as session:
        beneficiaries.add(
            session,
            **{
                **dataclasses.asdict(new_person("again")),
                "subject_locator": person.subject_locator,
            },
            now=now,
        )
    assert _roll_total(engine) == (32, 32)


def test_the_daily_recount_corrects_a_total_that_drifted(engine: Engine, now: datetime) -> None:
    with session_scope(engine) as session:
        add_roll(session, 12, now)
    # People a replica of the release before registered during an upgrade: not in the total.
    with engine.begin() as connection:
        connection.execute(text("UPDATE tally SET total = 5 WHERE counter = 'roll'"))
    assert _roll_total(engine) == (5, 12)
    with session_scope(engine) as session:
        assert beneficiaries.recount(session) == 12
    assert _roll_total(engine) == (12, 12)


def test_registrations_during_a_recount_are_neither_lost_nor_counted_twice(
    engine: Engine, now: datetime
) -> None:
    errors: list[BaseException] = []
    stop = threading.Event()

    def recount() -> None:
        try:
            while not stop.is_set():
                with session_scope(engine) as session:
                    beneficiaries.recount(session)
        except BaseException as error:
            errors.append(error)

    recounting = threading.Thread(target=recount)
    recounting.start()
    try:
        for index in range(20):
            with session_scope(engine) as session:
                beneficiaries.add_many(
                    session, [new_person(f"during-{index}-{n}") for n in range(5)], now
                )
    finally:
        stop.set()
        recounting.join()
    assert errors == []
    assert _roll_total(engine) == (100, 100)


def test_the_migration_starts_the_roll_total_from_the_people_there_are(
    unmigrated: Engine, now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    def write() -> None:
        with session_scope(unmigrated) as session:
            add_roll(session, 7, now)

    _written_before(unmigrated, "0026", monkeypatch, write)
    assert _roll_total(unmigrated) == (7, 7)
