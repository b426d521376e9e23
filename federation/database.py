"""Opening a service's database: SQLite for a single machine, PostgreSQL (psycopg 3) in production.

Both services open their databases here, so they share one reading of a URL and one SQLite
setup: every transaction starts with BEGIN IMMEDIATE, so writers queue on the database lock (up
to the busy timeout) instead of failing when a read turns into a write; a session on `reader`'s
engine starts with a plain BEGIN under `PRAGMA query_only`, so with the write-ahead log it reads
its snapshot while a writer holds the lock, and cannot write. A bare `postgresql://` URL means
psycopg 3, the only PostgreSQL driver certfed installs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from federation.errors import InvalidInputError

SQLITE_BUSY_TIMEOUT_MS = 30_000
# The execution option that marks `reader`'s engine on SQLite.
_READ_ONLY = "certfed_read_only"


@dataclass(frozen=True)
class EngineSettings:
    """How a service's engine is tuned: its name in PostgreSQL's activity view and its pool."""

    application_name: str
    pool_size: int
    max_overflow: int
    pool_timeout_s: float = 30.0
    connect_timeout_s: int = 10
    # FULL also survives a power cut between a commit and the next checkpoint, at a cost per
    # commit; NORMAL (with the write-ahead log) survives a killed process.
    sqlite_synchronous: str = "NORMAL"


def database_url(url: str) -> sa.URL:
    """Parse a database URL; plain postgresql:// URLs are pointed at the psycopg 3 driver."""
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError:
        raise InvalidInputError(
            "database_url", "is not a database URL (sqlite:///path or postgresql+psycopg://...)"
        ) from None
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        return parsed
    raise InvalidInputError(
        "database_url", f"'{backend}' is not supported; use sqlite:/// or postgresql+psycopg://"
    )


def open_engine(url: str, settings: EngineSettings) -> Engine:
    """An engine for a `sqlite:///path` or `postgresql+psycopg://...` URL, tuned by `settings`."""
    parsed = database_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed, settings)
    return sa.create_engine(
        parsed,
        pool_size=settings.pool_size,
        max_overflow=settings.max_overflow,
        pool_timeout=settings.pool_timeout_s,
        # No ping before each checkout (an empty statement a transaction): a connection the
        # server dropped fails one call with UNAVAILABLE (rpc.py), and SQLAlchemy then
        # invalidates the whole pool, so the retry gets a fresh connection.
        pool_pre_ping=False,
        connect_args={
            "connect_timeout": settings.connect_timeout_s,
            "application_name": settings.application_name,
        },
    )


def _sqlite_engine(url: sa.URL, settings: EngineSettings) -> Engine:
    engine = sa.create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
    )

    @sa.event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module, which would otherwise begin
        # transactions lazily and in DEFERRED mode; the "begin" hook below starts them instead.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute(f"PRAGMA synchronous={settings.sqlite_synchronous}")
        finally:
            cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(connection: sa.Connection) -> None:
        if connection.get_execution_options().get(_READ_ONLY):
            # A read takes no lock: it sees the snapshot of its first statement, whatever a
            # writer does meanwhile, and query_only turns a write into an error at once.
            connection.exec_driver_sql("PRAGMA query_only=ON")
            connection.exec_driver_sql("BEGIN")
            return
        # IMMEDIATE takes the write lock up front: a transaction that reads and then writes
        # cannot fail on upgrade because another writer committed in between.
        connection.exec_driver_sql("PRAGMA query_only=OFF")
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def reader(engine: Engine) -> Engine:
    """The engine for read-only sessions. On PostgreSQL in autocommit, so a read is its SELECTs
    alone, without BEGIN and ROLLBACK around them (READ COMMITTED gives every statement its own
    snapshot either way). On SQLite a read is a deferred transaction under `PRAGMA query_only`
    (see `_sqlite_engine`): it neither waits for the write lock nor holds it, so a page view
    does not queue behind a roll import or a day's cycle, and a long read (a full pass over the
    audit chain, a backup's figures) holds up no writer."""
    if engine.dialect.name == "postgresql":
        return engine.execution_options(isolation_level="AUTOCOMMIT")
    return engine.execution_options(**{_READ_ONLY: True})
