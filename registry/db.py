"""The registry's database: engines for SQLite and PostgreSQL, migrations, and transactions.

Promises: an engine from `create_engine_for` behaves the same way on both databases where the
stores depend on it. SQLite runs in WAL mode with foreign keys enforced and a busy timeout, and
every transaction begins IMMEDIATE, so two writers queue for the lock instead of one failing
half-way with "database is locked"; PostgreSQL is reached through psycopg 3. The schema is only
ever created or changed by `migrate` (alembic, to head), never by `create_all`. `transaction`
yields a session whose work commits together or not at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session

from federation.errors import InvalidInputError

SCRIPT_LOCATION = "registry:migrations"
VERSION_TABLE = "registry_alembic_version"
SQLITE_BUSY_TIMEOUT_MS = 30_000


def normalise_url(url: str) -> sa.URL:
    """Parse a database URL; plain postgresql:// URLs are pointed at the psycopg 3 driver."""
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError:
        raise InvalidInputError(
            "database_url", "is not a database URL (sqlite:///path or postgresql+psycopg://...)"
        ) from None
    if parsed.get_backend_name() == "postgresql":
        return parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite":
        return parsed
    raise InvalidInputError(
        "database_url", f"{parsed.get_backend_name()} is not supported; use sqlite or postgresql"
    )


def _configure_sqlite(engine: Engine) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide where transactions begin (see "begin").
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA synchronous=FULL")
        finally:
            cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        # IMMEDIATE takes the write lock up front: a transaction that reads and then writes
        # cannot fail on upgrade because another writer committed in between.
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def create_engine_for(url: str) -> Engine:
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = sa.create_engine(
            parsed, connect_args={"check_same_thread": False, "timeout": 30.0}
        )
        _configure_sqlite(engine)
        return engine
    return sa.create_engine(parsed, pool_pre_ping=True, pool_size=10, max_overflow=10)


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    return config


def migrate_engine(engine: Engine) -> None:
    """Bring the schema behind `engine` to the newest migration."""
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def migrate(url: str) -> None:
    """Bring the schema at `url` to the newest migration."""
    engine = create_engine_for(url)
    try:
        migrate_engine(engine)
    finally:
        engine.dispose()


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """A session inside one transaction: committed on success, rolled back on any error."""
    with Session(engine, expire_on_commit=False) as session, session.begin():
        yield session


def advisory_lock(session: Session, key: int) -> None:
    """Serialise a critical section across registry replicas sharing one PostgreSQL database.

    A transaction-level advisory lock, released at commit or rollback. SQLite needs none: its
    transactions begin IMMEDIATE and so already run one at a time.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
