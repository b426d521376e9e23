"""A node killed (SIGKILL) in the middle of a bulk feed import loses nothing and applies nothing
twice: after a restart, the import ends where an uninterrupted one would.

Real processes: a registry and a paying office on PostgreSQL, `certfed feed import` in a process
of its own. The node is killed while the import is under way (some batches committed, one most
likely in flight) and started again. Either the importer was killed with it and the file is
imported again, or the importer was left running and rides the restart out on its own (the
batches in flight, and any the node stored but never answered, sent again). Then every row is
recorded once, each person's validity is what the rows in file order give, each
validity-moving row has one attestation, logged once, and the log's head is the root of its
entries, which the registry witness cosigns as a consistent extension of what it cosigned
before the crash.
"""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import Session

from cli.bench.feed import OFFICE, register_people, write_admissions
from cli.launcher import LocalFederation, wait_until
from federation_node.keystore import KeyPaths
from federation_node.rules.entitlement import add_months
from federation_node.rules.feed_records import keyed_record_id
from federation_node.rules.policy import Policy
from federation_node.store import db, log_store
from signing import merkle
from signing.keys import HpkeKey
from tests.helpers.crash import (
    count,
    import_running,
    kill_node_under_import,
    office_on_postgres,
)

PEOPLE = 1_500
ROWS = 30_000
BATCH = 500
# Killed once this many rows are recorded: a few batches in, many to go.
KILL_AFTER = 3 * BATCH


federation = office_on_postgres(OFFICE)


def _import(local: LocalFederation, feed: Path) -> subprocess.Popen[bytes]:
    return import_running(local, OFFICE.node_id, "feed", "feed", feed, "hospital_admissions", BATCH)


@pytest.mark.postgres
@pytest.mark.parametrize(
    "importer_survives", [False, True], ids=["importer-killed-too", "importer-rides-it-out"]
)
def test_a_feed_import_whose_node_is_killed_midway_loses_and_repeats_nothing(
    federation: LocalFederation, tmp_path: Path, importer_survives: bool
) -> None:
    register_people(federation, OFFICE.node_id, PEOPLE)
    feed = tmp_path / "admissions.csv"
    write_admissions(feed, ROWS, 2 * PEOPLE, datetime.now(UTC).date())
    engine = db.create_engine_for(federation.nodes[OFFICE.node_id].config.effective_database_url)
    try:
        with Session(engine) as session:
            initial = dict(
                session.execute(text("SELECT subject_locator, valid_until FROM beneficiary")).all()
            )
        importer = _import(federation, feed)

        def recorded() -> int:
            with Session(engine) as session:
                return count(session, "SELECT count(*) FROM data_signal")

        kill_node_under_import(
            federation,
            OFFICE.node_id,
            importer,
            rows_in=recorded,
            kill_after=KILL_AFTER,
            rows=ROWS,
            importer_survives=importer_survives,
            run_again=lambda: _import(federation, feed),
        )

        with Session(engine) as session:
            # Every row once.
            assert recorded() == ROWS
            assert (
                count(
                    session,
                    "SELECT count(*) FROM (SELECT DISTINCT source, source_record_id "
                    "FROM data_signal) AS rows",
                )
                == ROWS
            )
            # The rows in file order, as recorded, and what they should have done. The node
            # keeps record ids keyed (rules/feed_records.py): file order from the keyed ids.
            hpke = HpkeKey.load(KeyPaths(federation.nodes[OFFICE.node_id].config.data_dir).hpke_key)
            in_file_order = {
                keyed_record_id(hpke, "hospital-admissions", f"ADM{index:09d}"): index
                for index in range(ROWS)
            }
            recorded_rows = session.execute(
                text(
                    "SELECT s.source_record_id, b.subject_locator, s.observed_at, s.outcome, "
                    "s.attestation_id FROM data_signal s LEFT JOIN beneficiary b "
                    "ON b.beneficiary_id = s.beneficiary_id"
                )
            ).all()
            rows = [
                tuple(row[1:]) for row in sorted(recorded_rows, key=lambda r: in_file_order[r[0]])
            ]
            validity = dict(initial)
            expected_applied = 0
            for locator, observed_at, outcome, attestation_id in rows:
                if locator is None:
                    assert outcome == "unknown_person"
                    continue
                extended = add_months(observed_at, Policy().validity_months)
                if extended > validity[locator]:
                    validity[locator] = extended
                    expected_applied += 1
                    assert outcome == "applied"
                    assert attestation_id
                else:
                    assert outcome == "ignored"
                    assert attestation_id is None
            final = dict(
                session.execute(text("SELECT subject_locator, valid_until FROM beneficiary")).all()
            )
            assert final == validity
            # One attestation per applied row, each logged once, and nothing else logged.
            issued = set(
                session.execute(
                    text("SELECT attestation_id FROM attestation WHERE direction = 'issued'")
                ).scalars()
            )
            applied = {attestation_id for *_, attestation_id in rows if attestation_id}
            logged = list(
                session.execute(
                    text("SELECT attestation_id FROM log_entry ORDER BY leaf_index")
                ).scalars()
            )
            assert len(applied) == expected_applied
            assert issued == applied
            assert sorted(logged) == sorted(applied)
            # The head is the root of the entries, each entry hashed as stored.
            head = log_store.head(session)
            leaves = session.execute(
                text("SELECT leaf_hash, envelope_json FROM log_entry ORDER BY leaf_index")
            ).all()
            assert all(
                merkle.leaf_hash(bytes(envelope)) == bytes(leaf) for leaf, envelope in leaves
            )
            assert head.tree_size == len(leaves)
            assert head.root_hash == merkle.root_from_leaves(bytes(leaf) for leaf, _ in leaves)[1]

        # The witness cosigns the whole log only as a consistent extension of what it cosigned.
        def cosigned() -> bool:
            with Session(engine) as session:
                latest = log_store.latest_checkpoint(session)
            return latest is not None and latest.tree_size == head.tree_size

        wait_until(cosigned, 60, "a cosigned checkpoint of the whole log")
    finally:
        engine.dispose()
