"""A node killed (SIGKILL) under a long command, and the command finished: the fault tests' steps.

The office's node runs on PostgreSQL, the registry on its embedded store; the command (a feed or
roll import, the daily cycle) runs as `certfed` in a process of its own, under the operator
token it needs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import Session

from cli.desk import TOKEN_ENV
from cli.launcher import LocalFederation, NodeSpec, wait_until
from tests.conftest import PostgresUrlFactory


def office_on_postgres(
    office: NodeSpec, settings: Mapping[str, object] | None = None
) -> Callable[..., Iterator[LocalFederation]]:
    """A test module's `federation` fixture: a registry and `office`'s node, started, the node's
    database a fresh PostgreSQL one (`federation = office_on_postgres(OFFICE)`)."""

    @pytest.fixture
    def federation(
        tmp_path: Path, postgres_url_factory: PostgresUrlFactory
    ) -> Iterator[LocalFederation]:
        with LocalFederation(
            tmp_path / "federation",
            database_url_for=lambda name: "" if name == "registry" else postgres_url_factory(),
            log_level="warning",
        ) as local:
            local.start_registry()
            local.add_node(office, settings=settings)
            yield local

    return federation


def certfed_running(
    local: LocalFederation, node_id: str, operator: str, *arguments: str
) -> subprocess.Popen[bytes]:
    """`certfed ARGUMENTS --config <the node's>` started under `operator`'s token, in a process
    group of its own; its standard error kept for the test."""
    handle = local.nodes[node_id]
    return subprocess.Popen(
        [sys.executable, "-m", "cli", *arguments, "--config", str(handle.config_path)],
        env={**os.environ, TOKEN_ENV: handle.tokens[operator]},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def kill_node_under(
    local: LocalFederation,
    node_id: str,
    running: subprocess.Popen[bytes],
    *,
    command_survives: bool,
    interrupted: Callable[[], bool],
    run_again: Callable[[], subprocess.Popen[bytes]],
) -> str:
    """Kill the node with SIGKILL while `running` works, and `running` with it unless
    `command_survives`; require `interrupted()` (the work was cut short, not over); start the
    node again and let the command end: `running` itself when it survived, else `run_again()`.
    Requires exit status 0 and returns the finishing command's standard error."""
    local.stop_node(node_id, kill=True)
    if not command_survives:
        os.killpg(running.pid, signal.SIGKILL)
        running.wait(timeout=30)
    assert interrupted(), "the work ended before the kill: nothing was interrupted"
    local.start_node(node_id)
    finishing = running if command_survives else run_again()
    _, errors = finishing.communicate(timeout=900)
    assert finishing.returncode == 0, errors.decode()[-2000:]
    return errors.decode()


def import_running(
    local: LocalFederation,
    node_id: str,
    operator: str,
    command: str,
    path: Path,
    mapping: str,
    batch_size: int,
) -> subprocess.Popen[bytes]:
    """`certfed COMMAND import PATH` (`feed` or `roll`) under `operator`'s token."""
    return certfed_running(
        local,
        node_id,
        operator,
        command,
        "import",
        str(path),
        "--mapping",
        mapping,
        "--batch-size",
        str(batch_size),
    )


def kill_node_under_import(
    local: LocalFederation,
    node_id: str,
    importer: subprocess.Popen[bytes],
    *,
    rows_in: Callable[[], int],
    kill_after: int,
    rows: int,
    importer_survives: bool,
    run_again: Callable[[], subprocess.Popen[bytes]],
) -> None:
    """Once `rows_in()` (the file's rows the node holds) reaches `kill_after`, `kill_node_under`
    the import, which must not have reached all `rows`. An importer that survived must have told
    its operator, each time, that it was sending a batch again."""
    wait_until(lambda: rows_in() >= kill_after, 300, f"{kill_after} rows at the node")
    errors = kill_node_under(
        local,
        node_id,
        importer,
        command_survives=importer_survives,
        interrupted=lambda: rows_in() < rows,
        run_again=run_again,
    )
    if importer_survives:
        assert "sending the batch again in" in errors, errors[-2000:]


def count(session: Session, query: str) -> int:
    """The one number a `SELECT count(*) ...` answers."""
    return int(session.execute(text(query)).scalar_one())
