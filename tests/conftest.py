"""Fixtures shared by every certfed test folder (unit, integration, faults, security).

Databases
---------
``postgres_url_factory`` (session scope)
    A callable ``() -> str`` that creates a fresh, uniquely named, empty PostgreSQL database and
    returns its SQLAlchemy URL (``postgresql+psycopg://...``). The server is:

    * the one ``DATABASE_URL`` points at, when that variable is set (SQLAlchemy form,
      ``postgresql+psycopg://user:password@host:port/anydb``; its role must be allowed to
      ``CREATE DATABASE``), or otherwise
    * a real PostgreSQL started once per session from the ``pgserver`` package, in a temporary
      data directory, reached over a Unix socket
      (``postgresql+psycopg://postgres@/<db>?host=<socket dir>``).

    Postgres is started lazily, only when a test asks for it. At session end every database the
    factory created is dropped and a server the session started is stopped. Postgres tests never
    skip: if no server can be had, they error.

``postgres_url`` (function scope)
    One fresh PostgreSQL database URL, from ``postgres_url_factory``.

``store_url`` (function scope, parametrized ``sqlite`` / ``postgres``)
    A fresh, empty database URL for code that must behave the same on both engines: a SQLite
    file (``sqlite:///<tmp_path>/store.db``) or a new PostgreSQL database. The postgres case
    carries the ``postgres`` marker, so ``-m "not postgres"`` runs only the SQLite half.

Mark tests that use PostgreSQL directly with ``@pytest.mark.postgres``. Servers under test listen
on 127.0.0.1 port 0 only.
"""

from __future__ import annotations

import itertools
import os
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import URL, make_url

DATABASE_URL_ENV = "DATABASE_URL"

PostgresUrlFactory = Callable[[], str]


def _libpq_conninfo(url: URL) -> str:
    """A SQLAlchemy URL (any postgresql+driver) as a libpq URI psycopg accepts."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


class _PostgresDatabases:
    """Creates throwaway databases on one server and drops them all at the end."""

    def __init__(self, server_url: URL) -> None:
        self._server_url = server_url.set(drivername="postgresql+psycopg")
        self._admin_conninfo = _libpq_conninfo(self._server_url)
        self._prefix = f"certfed_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        self._counter = itertools.count(1)
        self._created: list[str] = []

    def create(self) -> str:
        name = f"{self._prefix}_{next(self._counter)}"
        with psycopg.connect(self._admin_conninfo, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self._created.append(name)
        return self._server_url.set(database=name).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        if not self._created:
            return
        with psycopg.connect(self._admin_conninfo, autocommit=True) as conn:
            for name in reversed(self._created):
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )
        self._created.clear()


def _start_pgserver(data_dir: Path) -> tuple[Any, URL]:
    # Imported here so that sessions without Postgres tests never pay for it. platformdirs warns
    # at import time when XDG_RUNTIME_DIR is unset (CI, containers); pgserver copes without it.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        import pgserver

    server = pgserver.get_server(data_dir, cleanup_mode="stop")
    # get_uri() looks like postgresql://postgres:@/postgres?host=/tmp/xyz
    raw = make_url(server.get_uri())
    url = URL.create(
        "postgresql+psycopg",
        username=raw.username,
        password=raw.password or None,  # URL.set() treats None as "keep", hence create()
        host=raw.host,
        port=raw.port,
        database=raw.database,
        query=raw.query,
    )
    return server, url


@pytest.fixture(scope="session")
def postgres_url_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresUrlFactory]:
    """Fresh PostgreSQL databases on a real server; see the module docstring."""
    server: Any = None
    given = os.environ.get(DATABASE_URL_ENV)
    if given:
        server_url = make_url(given)
    else:
        server, server_url = _start_pgserver(tmp_path_factory.mktemp("pgdata"))
    databases = _PostgresDatabases(server_url)
    try:
        yield databases.create
    finally:
        try:
            databases.drop_all()
        finally:
            if server is not None:
                server.cleanup()


@pytest.fixture
def postgres_url(postgres_url_factory: PostgresUrlFactory) -> str:
    """One fresh, empty PostgreSQL database URL."""
    return postgres_url_factory()


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database URL, once for SQLite and once for PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    factory: PostgresUrlFactory = request.getfixturevalue("postgres_url_factory")
    return factory()
