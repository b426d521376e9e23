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
    skip: if no server can be had, they error. The bootstrap is the benchmarks' own
    (``cli.bench.kit.postgres_server``), so the suite and the benchmarks run on PostgreSQL alike.

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

import os
import uuid
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest

from cli.bench.kit import postgres_server

PostgresUrlFactory = Callable[[], str]


@pytest.fixture(scope="session")
def postgres_url_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresUrlFactory]:
    """Fresh PostgreSQL databases on a real server; see the module docstring."""
    prefix = f"certfed_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with postgres_server(tmp_path_factory.mktemp("pgdata"), prefix) as postgres:
        yield postgres.create_database


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


# What a failed test's processes logged at warning level or above, shown with the failure: a
# run that fails on a loaded CI machine is then explained by its report, not only by a re-run.
LOG_LINES_PER_FILE = 30


def _process_log_problems(workdir: Path) -> str:
    sections: list[str] = []
    for log_path in sorted(workdir.rglob("*.log")):
        try:
            lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        problems = [
            line
            for line in lines
            if '"level": "error"' in line
            or '"level": "warning"' in line
            or '"level": "critical"' in line
            or "Traceback" in line
        ]
        if problems:
            tail = "\n".join(line[:2000] for line in problems[-LOG_LINES_PER_FILE:])
            sections.append(f"--- {log_path.relative_to(workdir)}\n{tail}")
    return "\n".join(sections)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed and call.when in ("setup", "call"):
        from cli.launcher import LocalFederation

        funcargs = getattr(item, "funcargs", {})
        for name, value in funcargs.items():
            # A federation fixture, or a fixture holding one (`local`).
            if not isinstance(value, LocalFederation):
                value = getattr(value, "local", None)
            if isinstance(value, LocalFederation):
                problems = _process_log_problems(value.workdir)
                if problems:
                    report.sections.append((f"process logs of {name}", problems))
    return report
