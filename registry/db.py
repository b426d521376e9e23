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

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine
from sqlmodel import Session

from federation.database import EngineSettings, open_engine

SCRIPT_LOCATION = "registry:migrations"
VERSION_TABLE = "registry_alembic_version"


# The registry answers every node's directory refreshes and locator calls: a modest pool; SQLite
# commits are fully synchronous, since the registry's key material and directory versions must
# survive a power cut.
REGISTRY_ENGINE = EngineSettings(
    application_name="certfed-registry",
    pool_size=10,
    max_overflow=10,
    sqlite_synchronous="FULL",
)


def create_engine_for(url: str) -> Engine:
    return open_engine(url, REGISTRY_ENGINE)


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
