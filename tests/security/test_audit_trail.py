"""`certfed audit verify` and `export` as an operator runs them: a subprocess against the node's
database, SQLite and PostgreSQL, after someone edited or deleted audit rows behind its back."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from cli.operator_commands import create_operator, disable_operator
from federation_node.config import load_node_config, render_node_config
from federation_node.store import audit, db
from federation_node.store.models import AuditRecord, OperatorRole
from tests.helpers.commands import certfed


@pytest.fixture
def node_config(store_url: str, tmp_path: Path) -> Path:
    """A node configuration whose database holds a chain of five audit records, all chained (as
    the node's sequencer leaves them)."""
    path = tmp_path / "node.toml"
    path.write_text(
        render_node_config(
            {
                "node_id": "qingdao",
                "region_codes": ["370200"],
                "roles": ["residence_agency"],
                "registry_endpoint": "127.0.0.1:1",
                "registry_enrol_endpoint": "127.0.0.1:2",
                "data_dir": ".",
                "database_url": store_url,
            }
        ),
        encoding="utf-8",
    )
    db.migrate(store_url)
    engine = db.create_engine_for(store_url)
    try:
        with db.session_scope(engine) as session:
            now = datetime.now(UTC)
            for index in range(4):
                operator, _token = create_operator(
                    session,
                    label=f"counter {index}",
                    roles=[OperatorRole.CLERK],
                    actor="host:test",
                    now=now,
                )
            disable_operator(session, operator.operator_id, actor="host:test", now=now)
        audit.flush(engine)
    finally:
        engine.dispose()
    return path


def _engine(config: Path) -> Engine:
    return db.create_engine_for(load_node_config(config, environ={}).effective_database_url)


def _execute(config: Path, statement: str) -> None:
    engine = _engine(config)
    try:
        with engine.begin() as connection:
            connection.execute(text(statement))
    finally:
        engine.dispose()


def _create_operator_unsequenced(config: Path) -> None:
    """An administrative action committed while no sequencer runs: its record stays pending."""
    engine = _engine(config)
    try:
        with db.session_scope(engine) as session:
            create_operator(
                session,
                label="late counter",
                roles=[OperatorRole.CLERK],
                actor="host:test",
                now=datetime.now(UTC),
            )
    finally:
        engine.dispose()


def test_an_intact_chain_verifies(node_config: Path) -> None:
    result = certfed("audit", "verify", "--config", str(node_config))
    assert result.returncode == 0, result.stderr
    assert "intact: 5 records" in result.stdout


def test_verify_chains_committed_records_still_pending_before_it_checks(node_config: Path) -> None:
    _create_operator_unsequenced(node_config)
    result = certfed("audit", "verify", "--config", str(node_config))
    assert result.returncode == 0, result.stderr
    assert "intact: 6 records" in result.stdout


def test_export_includes_committed_records_still_pending(node_config: Path, tmp_path: Path) -> None:
    _create_operator_unsequenced(node_config)
    out = tmp_path / "audit.jsonl"
    result = certfed("audit", "export", "--config", str(node_config), "--out", str(out))
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["action"] for r in records][-2:] == ["operator.create", "audit.export"]
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5, 6, 7]


def test_verify_catches_an_edited_row(node_config: Path) -> None:
    _execute(node_config, "UPDATE audit_record SET actor = 'host:someone-else' WHERE seq = 2")
    result = certfed("audit", "verify", "--config", str(node_config))
    assert result.returncode == 2
    assert "record 2 was altered after it was written" in result.stderr
    assert "BROKEN: 1 problem" in result.stderr


def test_verify_catches_a_deleted_row(node_config: Path) -> None:
    _execute(node_config, "DELETE FROM audit_record WHERE seq = 3")
    result = certfed("audit", "verify", "--config", str(node_config))
    assert result.returncode == 2
    assert "record 3 missing (deleted?) before record 4" in result.stderr


def test_verify_catches_newest_rows_cut_off_after_an_earlier_check(node_config: Path) -> None:
    assert certfed("audit", "verify", "--config", str(node_config)).returncode == 0
    _execute(node_config, "DELETE FROM audit_record WHERE seq = 5")
    # What is left is a valid chain; the node's record of its last check says it was longer.
    result = certfed("audit", "verify", "--config", str(node_config))
    assert result.returncode == 2
    assert "record 5, verified on" in result.stderr
    assert "is gone (the chain was cut back?)" in result.stderr
    # Found once, it stays found: the next verify says an earlier check found it.
    again = certfed("audit", "verify", "--config", str(node_config))
    assert again.returncode == 2
    assert "record 5, verified on" in again.stderr


def test_verify_catches_newest_rows_cut_off_given_a_noted_head(node_config: Path) -> None:
    noted = certfed("audit", "verify", "--config", str(node_config))
    head = noted.stdout.split("head ")[1].split()[0]
    # Someone who can write the database can cut the tail and reset the node's record of its
    # checks too: then only a head noted elsewhere catches it.
    _execute(node_config, "DELETE FROM audit_record WHERE seq = 5")
    _execute(
        node_config,
        "UPDATE audit_check SET through_seq = 0, "
        "through_hash = (SELECT prev_hash FROM audit_record WHERE seq = 1)",
    )
    assert certfed("audit", "verify", "--config", str(node_config)).returncode == 0
    result = certfed("audit", "verify", "--config", str(node_config), "--head", head)
    assert result.returncode == 2
    assert f"no record has the hash {head}" in result.stderr


def test_export_writes_every_record_as_json_lines_an_inspector_can_rechain(
    node_config: Path, tmp_path: Path
) -> None:
    out = tmp_path / "audit.jsonl"
    result = certfed("audit", "export", "--config", str(node_config), "--out", str(out))
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    # Five records, then the export itself, recorded before the file was written.
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert [r["action"] for r in records][-2:] == ["operator.disable", "audit.export"]
    previous = "0" * 64
    for record in records:
        assert record["prev_hash"] == previous
        row = AuditRecord(
            seq=record["seq"],
            at=datetime.fromisoformat(record["at"]),
            actor=record["actor"],
            action=record["action"],
            subject_type=record["subject_type"],
            subject_id=record["subject_id"],
            details=record["details"],
            prev_hash=record["prev_hash"],
            record_hash="",
        )
        assert audit.record_hash(row) == record["record_hash"]
        previous = record["record_hash"]
    assert f"head {previous}" in result.stdout


def test_export_of_a_broken_chain_still_writes_it_and_says_so(
    node_config: Path, tmp_path: Path
) -> None:
    _execute(node_config, "UPDATE audit_record SET subject_id = 'x' WHERE seq = 1")
    out = tmp_path / "audit.jsonl"
    result = certfed("audit", "export", "--config", str(node_config), "--out", str(out))
    assert result.returncode == 2
    assert "problem" in result.stderr
    assert len(out.read_text(encoding="utf-8").splitlines()) == 6
