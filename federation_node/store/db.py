"""Opening the node's database, migrating it, and one transaction per domain operation.

PostgreSQL (psycopg 3) in production, SQLite for a single-machine demo; the same code and the
same migrations serve both. What this module promises:

* `create_engine_for` returns an engine tuned for the node's worker threads. On SQLite every
  transaction starts with BEGIN IMMEDIATE, so writers queue on the database lock (up to the busy
  timeout) instead of failing when a read turns into a write; this keeps read-then-write
  operations such as the audit chain safe on SQLite as they are on PostgreSQL with row locks.
* `migrate` brings a database to the newest schema with alembic, holding an advisory lock on
  PostgreSQL so replicas starting together migrate once. A database a newer release migrated
  already is left as it is: schema changes are additive (a release runs on the schema of the
  next one), so a replica of the previous release can still start during a rolling upgrade.
* `session_scope` is the only way the node opens a transaction: it commits when the block ends
  normally and rolls back on any exception. Objects stay readable after the commit.
* `keyset_page` is the pagination every listing uses: ordered by a unique key, opaque tokens,
  no OFFSET, so concurrent inserts never make a page skip or repeat a row; `count_of` counts
  what a listing's statement selects, for the total a first page reports.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import structlog
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, Row, Select, func, text
from sqlalchemy.orm import Mapped
from sqlmodel import Session, select
from sqlmodel.sql.expression import SelectOfScalar

from federation.database import EngineSettings, open_engine
from federation.errors import InvalidInputError

MIGRATIONS = "federation_node.store:migrations"

log = structlog.get_logger("certfed.store")
# The node serves RPCs from 16 threads and runs a dispatcher; a few spare connections absorb
# bursts without letting one replica exhaust the server's max_connections. No ping before each
# transaction: a connection the server dropped fails its call once (UNAVAILABLE, see
# federation/rpc.py), and the retry gets a fresh connection.
NODE_ENGINE = EngineSettings(application_name="certfed-node", pool_size=16, max_overflow=8)
# pg_advisory_xact_lock key serialising migrations across replicas (ASCII "cfmigrat").
MIGRATION_LOCK_KEY = 0x63666D6967726174

_CURSOR_PREFIX = "v1:"

T = TypeVar("T")
P = TypeVar("P")
R = TypeVar("R", bound=tuple[Any, ...])
S = TypeVar("S", bound=Select[Any])


def create_engine_for(url: str) -> Engine:
    """An engine for a `sqlite:///path` or `postgresql+psycopg://...` URL, tuned for the node."""
    return open_engine(url, NODE_ENGINE)


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
        known = {script.revision for script in ScriptDirectory.from_config(config).walk_revisions()}
        current = set(MigrationContext.configure(connection).get_current_heads())
        if current - known:
            log.warning(
                "database.newer_schema",
                revisions=sorted(current - known),
                newest_known=ScriptDirectory.from_config(config).get_current_head(),
            )
            return
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
    rows = list(session.exec(_keyset(statement, key, page_size, page_token)))
    return _paged(rows, key_of, page_size)


def keyset_rows(
    session: Session,
    statement: Select[R],
    *,
    key: Mapped[str],
    key_of: Callable[[Row[R]], str],
    page_size: int,
    page_token: str,
) -> tuple[list[Row[R]], str]:
    """`keyset_page` for a statement of columns: rows, not ORM objects (a listing's hot path)."""
    rows = list(session.execute(_keyset(statement, key, page_size, page_token)))
    return _paged(rows, key_of, page_size)


def _keyset(statement: S, key: Mapped[str], page_size: int, page_token: str) -> S:
    """`statement` past the page token's key, in `key` order, one row more than the page."""
    if page_size < 1:
        raise InvalidInputError("page_size", "must be at least 1")
    after = decode_page_token(page_token)
    if after is not None:
        statement = statement.where(key > after)
    return statement.order_by(key).limit(page_size + 1)


def _paged(rows: list[P], key_of: Callable[[P], str], page_size: int) -> tuple[list[P], str]:
    """A page read with one row more than it holds: the page, and the next page's token (empty
    when there is no more)."""
    if len(rows) <= page_size:
        return rows, ""
    rows = rows[:page_size]
    return rows, encode_page_token(key_of(rows[-1]))


def count_of(session: Session, statement: SelectOfScalar[T]) -> int:
    """How many rows `statement` selects."""
    counted = select(func.count()).select_from(statement.order_by(None).subquery())
    return int(session.exec(counted).one())
