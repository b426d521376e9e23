"""A node killed (SIGKILL) in the middle of a roll import loses nothing and registers nobody
twice: after a restart, the same import run again ends where an uninterrupted one would, and
the registry knows each person's locator once, from this office.

Real processes: a registry and a paying office on PostgreSQL, `certfed roll import` in a process
of its own. The node is killed while the import is under way (some batches committed, one most
likely in flight with its locators evaluated by the registry but not stored) and started again.
Either the importer was killed with it and the file is imported again, or the importer was left
running and rides the restart out on its own. Then each row's person is on
the roll once, with one entitlement at the file's amount, and the locators the node published
through its outbox (committed with the people, delivered after the restart) are exactly its
people's, with no duplicate entitlement reported.
"""

from __future__ import annotations

import subprocess
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import Session

from cli.bench.kit import resident_id
from cli.bench.roll import MAPPING, OFFICE, write_roll
from cli.launcher import LocalFederation, wait_until
from federation_node.keystore import KeyPaths
from federation_node.rules.feed_records import roll_key
from federation_node.store import db
from registry import db as registry_db
from signing.identity import IdentityKind
from signing.keys import HpkeKey
from tests.helpers.crash import (
    count,
    import_running,
    kill_node_under_import,
    office_on_postgres,
)

ROWS = 8_000
BATCH = 500
# Killed once this many people are stored: a few batches in, many to go.
KILL_AFTER = 3 * BATCH


federation = office_on_postgres(OFFICE)


def _import(local: LocalFederation, roll: Path) -> subprocess.Popen[bytes]:
    return import_running(local, OFFICE.node_id, "clerk", "roll", roll, MAPPING, BATCH)


@pytest.mark.postgres
@pytest.mark.parametrize(
    "importer_survives", [False, True], ids=["importer-killed-too", "importer-rides-it-out"]
)
def test_a_roll_import_whose_node_is_killed_midway_loses_and_repeats_nothing(
    federation: LocalFederation, tmp_path: Path, importer_survives: bool
) -> None:
    roll = tmp_path / "roll.csv"
    write_roll(roll, ROWS)
    node = federation.nodes[OFFICE.node_id]
    engine = db.create_engine_for(node.config.effective_database_url)
    registry = registry_db.create_engine_for(federation.registry_database_url)
    try:
        importer = _import(federation, roll)

        def stored() -> int:
            with Session(engine) as session:
                return count(session, "SELECT count(*) FROM beneficiary")

        kill_node_under_import(
            federation,
            OFFICE.node_id,
            importer,
            rows_in=stored,
            kill_after=KILL_AFTER,
            rows=ROWS,
            importer_survives=importer_survives,
            run_again=lambda: _import(federation, roll),
        )

        # Each row's person once, found by the roll key of the row's number, with one
        # entitlement at the row's monthly amount (the layout write_roll gives).
        hpke = HpkeKey.load(KeyPaths(node.config.data_dir).hpke_key)
        expected = {
            roll_key(
                hpke, IdentityKind.RESIDENT_ID, resident_id("440604", date(1940, 1, 1), index)
            ): 200_000 + index % 50 * 1_000
            for index in range(ROWS)
        }
        with Session(engine) as session:
            assert stored() == ROWS
            amounts = session.execute(
                text(
                    "SELECT b.roll_key, e.monthly_amount_fen FROM beneficiary b "
                    "JOIN entitlement e ON e.beneficiary_id = b.beneficiary_id"
                )
            ).all()
            assert len(amounts) == ROWS
            assert {bytes(key): amount for key, amount in amounts} == expected
            locators = {
                bytes(locator)
                for locator in session.execute(
                    text("SELECT subject_locator FROM beneficiary")
                ).scalars()
            }
            assert len(locators) == ROWS

        # The publications committed with the people before the kill went out after it.
        def published() -> bool:
            with Session(engine) as session:
                return (
                    count(
                        session,
                        "SELECT count(*) FROM outbox_message "
                        "WHERE kind = 'publish_locators' AND state <> 'delivered'",
                    )
                    == 0
                )

        wait_until(published, 120, "every locator publication delivered")
        with Session(registry) as session:
            at_registry = [
                bytes(locator)
                for locator in session.execute(
                    text("SELECT locator FROM subject_locator WHERE node_id = :node"),
                    {"node": OFFICE.node_id},
                ).scalars()
            ]
            assert len(at_registry) == ROWS
            assert set(at_registry) == locators
            assert count(session, "SELECT count(*) FROM duplicate_entitlement") == 0
    finally:
        engine.dispose()
        registry.dispose()
