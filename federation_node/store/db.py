"""Opening the node's database, migrating it, and one transaction per domain operation.

PostgreSQL (psycopg 3) in production, SQLite for a single-machine demo; the same code and the
same migrations serve both. What this module promises:

* `create_engine_for` returns an engine tuned for the node's worker threads. On SQLite every
  transaction starts with BEGIN IMMEDIATE, so writers queue on the database lock (up to the busy
  timeout) instead of failing when a read turns into a write; this keeps read-then-write
  operations such as the audit chain safe on SQLite as they are on PostgreSQL with row locks.
* `migrate` brings a database to the newest schema with alembic, holding an advisory lock on
  PostgreSQL so replicas starting together migrate once.
* `session_scope` is the only way the node opens a transaction: it commits when the block ends
  normally and rolls back on any exception. Objects stay readable after the commit.
* `keyset_page` is the pagination every listing uses: ordered by a unique key, opaque tokens,
  no OFFSET, so concurrent inserts never make a page skip or repeat a row.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Mapped
from sqlmodel import Session
from sqlmodel.sql.expression import SelectOfScalar

from federation.errors import InvalidInputError

MIGRATIONS = "federation_node.store:migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000
# The node serves RPCs from 16 threads and runs a dispatcher; a few spare connections absorb
# bursts without letting one replica exhaust the server's max_connections.
POSTGRES_POOL_SIZE = 16
POSTGRES_MAX_OVERFLOW = 8
POSTGRES_POOL_TIMEOUT_S = 30.0
POSTGRES_CONNECT_TIMEOUT_S = 10
# pg_advisory_xact_lock key serialising migrations across replicas (ASCII "cfmigrat").
MIGRATION_LOCK_KEY = 0x63666D6967726174

_CURSOR_PREFIX = "v1:"

T = TypeVar("T")


def create_engine_for(url: str) -> Engine:
    """An engine for a `sqlite:///path` or `postgresql+psycopg://...` URL.

    A bare `postgresql://` URL is taken to mean psycopg 3, the only PostgreSQL driver certfed
    installs.
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(url)
    if backend == "postgresql":
        if parsed.get_driver_name() != "psycopg":
            parsed = parsed.set(drivername="postgresql+psycopg")
        # No pool_pre_ping: it costs a round trip before every transaction. A connection the
        # server dropped fails its call once (UNAVAILABLE, see federation/rpc.py), and SQLAlchemy
        # then invalidates the pool, so the retry gets a fresh connection.
        return create_engine(
            parsed,
            pool_size=POSTGRES_POOL_SIZE,
            max_overflow=POSTGRES_MAX_OVERFLOW,
            pool_timeout=POSTGRES_POOL_TIMEOUT_S,
            connect_args={
                "connect_timeout": POSTGRES_CONNECT_TIMEOUT_S,
                "application_name": "certfed-node",
            },
        )
    raise InvalidInputError(
        "database_url", f"'{backend}' is not supported; use sqlite:/// or postgresql+psycopg://"
    )


def _sqlite_engine(url: str) -> Engine:
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
    )

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module, which would otherwise begin
        # transactions lazily and in DEFERRED mode; the "begin" hook below starts them instead.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def reader(engine: Engine) -> Engine:
    """The engine for read-only sessions: on PostgreSQL in autocommit, so a read is its SELECTs
    alone, without BEGIN and ROLLBACK around them (READ COMMITTED gives every statement its own
    snapshot either way). SQLite keeps its transactions: its connections are configured for the
    node's explicit BEGIN IMMEDIATE, which autocommit would undo when they go back to the pool."""
    if engine.dialect.name == "postgresql":
        return engine.execution_options(isolation_level="AUTOCOMMIT")
    return engine


def is_postgres(bind: Engine | Connection | Session) -> bool:
    """Whether an engine, connection or session talks to PostgreSQL."""
    if isinstance(bind, Session):
        return bind.get_bind().dialect.name == "postgresql"
    return bind.dialect.name == "postgresql"


def migrate(url: str) -> None:
    """Upgrade the database at `url` to the newest schema (alembic `upgrade head`)."""
    engine = create_engine_for(url)
    try:
        migrate_engine(engine)
    finally:
        engine.dispose()


def migrate_engine(engine: Engine) -> None:
    """Upgrade the database behind `engine` to the newest schema, in one transaction."""
    with engine.begin() as connection:
        if is_postgres(connection):
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
            )
        config = Config()
        config.set_main_option("script_location", MIGRATIONS)
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One transaction: committed when the block ends normally, rolled back on any exception."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def lock_and_refresh(session: Session, row: object) -> None:
    """Re-read `row` from the database under a row lock (SELECT ... FOR UPDATE).

    Used before a state change that depends on the current state, so two operators or replicas
    acting on one row at once are serialised and the second sees what the first wrote. SQLite
    has no row locks; there BEGIN IMMEDIATE already serialises writers.
    """
    if row not in session:
        session.add(row)
    session.refresh(row, with_for_update=True)


def encode_page_token(last_key: str) -> str:
    """An opaque token naming the position after `last_key`."""
    raw = (_CURSOR_PREFIX + last_key).encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_page_token(token: str) -> str | None:
    """The key a token resumes after; None for the empty token (the first page)."""
    if not token:
        return None
    try:
        padded = token + "=" * (-len(token) % 4)
        raw = base64.urlsafe_b64decode(padded.encode("ascii")).decode()
    except (UnicodeError, binascii.Error, ValueError) as error:
        raise InvalidInputError("page_token", "is not a page token this node issued") from error
    key = raw[len(_CURSOR_PREFIX) :]
    # Keys are ids this node issued: printable, short. Anything else (a NUL, which PostgreSQL
    # cannot compare with text) was made up by the caller.
    if not raw.startswith(_CURSOR_PREFIX) or not key or not key.isprintable() or len(key) > 128:
        raise InvalidInputError("page_token", "is not a page token this node issued")
    return key


def keyset_page(
    session: Session,
    statement: SelectOfScalar[T],
    *,
    key: Mapped[str],
    key_of: Callable[[T], str],
    page_size: int,
    page_token: str,
) -> tuple[list[T], str]:
    """One page of `statement` in ascending `key` order, and the token of the next page.

    The next token is empty when this page is the last one.
    """
    if page_size < 1:
        raise InvalidInputError("page_size", "must be at least 1")
    after = decode_page_token(page_token)
    if after is not None:
        statement = statement.where(key > after)
    rows = list(session.exec(statement.order_by(key).limit(page_size + 1)))
    if len(rows) <= page_size:
        return rows, ""
    rows = rows[:page_size]
    return rows, encode_page_token(key_of(rows[-1]))
