"""Reads on `reader`'s engine: on SQLite and PostgreSQL they neither wait for nor see a write in
progress; on SQLite they cannot write, and leave their pooled connection able to."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import Engine, exc, func
from sqlmodel import Session, select

from federation.database import reader
from federation_node.store import beneficiaries
from federation_node.store.db import create_engine_for, migrate, session_scope
from federation_node.store.models import Beneficiary

from .conftest import NOW, new_person


def _people(session: Session) -> int:
    return session.exec(select(func.count()).select_from(Beneficiary)).one()


def test_a_read_neither_waits_for_nor_sees_a_write_in_progress(engine: Engine) -> None:
    with session_scope(engine) as session:
        beneficiaries.add_many(session, [new_person(1)], NOW)
    written = threading.Event()
    release = threading.Event()

    def write() -> None:
        with session_scope(engine) as session:
            beneficiaries.add_many(session, [new_person(2)], NOW)
            session.flush()
            written.set()
            # Holds the write (SQLite: the database's write lock) until the read is done.
            release.wait(10)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        assert written.wait(10)
        with Session(reader(engine)) as session:
            seen = _people(session)
        read_while_writing = not release.is_set()
    finally:
        release.set()
        writer.join()
    assert seen == 1
    assert read_while_writing
    with Session(reader(engine)) as session:
        assert _people(session) == 2


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Engine:
    url = f"sqlite:///{tmp_path / 'node.db'}"
    migrate(url)
    return create_engine_for(url)


def test_a_read_on_sqlite_cannot_write_and_its_connection_writes_again_after(
    sqlite_engine: Engine,
) -> None:
    with Session(reader(sqlite_engine)) as session:
        connection = session.connection()
        with pytest.raises(exc.OperationalError, match="readonly"):
            connection.exec_driver_sql("DELETE FROM beneficiary")
    # The pool hands the same connection to the writer next: query_only is off again.
    for label in (2, 3):
        with session_scope(sqlite_engine) as session:
            beneficiaries.add_many(session, [new_person(label)], NOW)
        with Session(reader(sqlite_engine)) as session:
            assert _people(session) == label - 1
    sqlite_engine.dispose()
