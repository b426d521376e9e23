"""A consistent snapshot of a node's database, and putting one back.

SQLite: the online backup API (sqlite3.Connection.backup, https://www.sqlite.org/backup.html)
copies the database page by page as of one moment while the node keeps running, and writes it
back the same way. PostgreSQL: `pg_dump --format=custom`, which reads everything in one
repeatable-read snapshot while the node keeps running, and `pg_restore --single-transaction`
into a database emptied first, so a restore that fails leaves nothing half-written.

The PostgreSQL tools are looked up on PATH and in the `pgserver` package's binaries; the newest
major version found is used, since pg_dump refuses a server newer than itself. Passwords go to
the tools through PGPASSWORD, never on their command line.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy.engine import URL, make_url

from federation.errors import PreconditionError

SQLITE_FILE = "database.sqlite"
PGDUMP_FILE = "database.pgdump"
# pg_dump and pg_restore: how long either may run before it is stopped (a bound, not a target).
TOOL_TIMEOUT_S = 6 * 3600.0


class SnapshotToolError(PreconditionError):
    """A PostgreSQL tool is missing, too old for the server, or failed."""


@dataclass(frozen=True)
class Snapshot:
    """A snapshot file in a work folder, and which kind of database it is from."""

    path: Path
    engine: str


def take(database_url: str, folder: Path) -> Snapshot:
    """Snapshot the database at `database_url` into `folder`."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        target = folder / SQLITE_FILE
        _sqlite_copy(_sqlite_path(url), target)
        return Snapshot(target, "sqlite")
    if url.get_backend_name() == "postgresql":
        target = folder / PGDUMP_FILE
        conninfo, environment = _libpq(url)
        _run(
            [
                str(tool_path("pg_dump")),
                "--format=custom",
                # Uncompressed: the backup archive compresses everything once.
                "--compress=0",
                "--no-owner",
                "--no-privileges",
                f"--file={target}",
                f"--dbname={conninfo}",
            ],
            environment,
        )
        return Snapshot(target, "postgresql")
    raise PreconditionError(f"cannot back up a {url.get_backend_name()} database")


def put_back(snapshot: Snapshot, database_url: str) -> None:
    """Replace the database at `database_url` with the snapshot's content."""
    url = make_url(database_url)
    kind = url.get_backend_name()
    if kind != snapshot.engine:
        raise PreconditionError(
            f"the backup holds a {snapshot.engine} database; this node is configured for {kind}"
        )
    if kind == "sqlite":
        target = _sqlite_path(url)
        target.parent.mkdir(parents=True, exist_ok=True)
        _sqlite_copy(snapshot.path, target)
        return
    conninfo, environment = _libpq(url)
    _empty_schema(conninfo, url.password)
    _run(
        [
            str(tool_path("pg_restore")),
            "--single-transaction",
            "--exit-on-error",
            "--no-owner",
            "--no-privileges",
            f"--dbname={conninfo}",
            str(snapshot.path),
        ],
        environment,
    )


def _sqlite_path(url: URL) -> Path:
    if not url.database or url.database == ":memory:":
        raise PreconditionError("an in-memory SQLite database has nothing to back up")
    return Path(url.database)


def _sqlite_copy(source: Path, target: Path) -> None:
    if not source.exists():
        raise PreconditionError(f"no database at {source}")
    reading = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        writing = sqlite3.connect(target)
        try:
            # Pages in steps, so the node's writers are held up for one step at a time.
            reading.backup(writing, pages=1024)
        finally:
            writing.close()
    finally:
        reading.close()


def _libpq(url: URL) -> tuple[str, dict[str, str]]:
    """The URL as libpq takes it, without its password, and the environment that carries it."""
    environment = dict(os.environ)
    if url.password:
        environment["PGPASSWORD"] = str(url.password)
    plain = url.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), environment


def _empty_schema(conninfo: str, password: str | None) -> None:
    """Drop every table, sequence and view of the node's schema, in one transaction."""
    with psycopg.connect(conninfo, password=password) as connection:
        rows = connection.execute(
            "SELECT c.relname, c.relkind FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'v', 'm', 'S')"
        ).fetchall()
        kinds = {"r": "TABLE", "p": "TABLE", "v": "VIEW", "m": "MATERIALIZED VIEW", "S": "SEQUENCE"}
        for name, kind in rows:
            connection.execute(
                sql.SQL("DROP {} IF EXISTS {} CASCADE").format(
                    sql.SQL(kinds[kind]), sql.Identifier(name)
                )
            )


def tool_path(name: str) -> Path:
    """The newest `name` (pg_dump, pg_restore) on PATH or shipped with `pgserver`."""
    candidates: list[Path] = []
    found = shutil.which(name)
    if found:
        candidates.append(Path(found))
    package = importlib.util.find_spec("pgserver")
    if package is not None and package.origin is not None:
        bundled = Path(package.origin).parent / "pginstall" / "bin" / name
        if bundled.exists():
            candidates.append(bundled)
    versions = [(version, path) for path in candidates if (version := _major(path)) is not None]
    if not versions:
        raise SnapshotToolError(
            f"{name} was not found on PATH (install the PostgreSQL client tools of the server's "
            "major version or newer)"
        )
    return max(versions)[1]


def _major(path: Path) -> int | None:
    try:
        answer = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except OSError:
        return None
    match = re.search(r"\(PostgreSQL\) (\d+)", answer.stdout)
    return int(match.group(1)) if match else None


def _run(arguments: list[str], environment: dict[str, str]) -> None:
    finished = subprocess.run(
        arguments,
        capture_output=True,
        text=True,
        env=environment,
        timeout=TOOL_TIMEOUT_S,
        check=False,
    )
    if finished.returncode != 0:
        tool = Path(arguments[0]).name
        raise SnapshotToolError(f"{tool} failed: {finished.stderr.strip()[-2000:]}")
