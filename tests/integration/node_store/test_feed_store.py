"""The feed's batch lookups and updates on PostgreSQL stay one index probe per key while a bulk
import runs ahead of the table's statistics.

A feed's signals share a few sources, and autovacuum analyses a table at most once a minute, so
for the first minute of an import the planner believes the signal table nearly empty. A lookup
it may rewrite into a join then reads every signal of the source for each batch, each batch
slower than the last. The plans are checked with autovacuum off on the tables, so the statistics
are those of a fresh table however long the test takes.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import psycopg
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from federation_node.store import entitlements_store, feed_store
from federation_node.store.db import create_engine_for, migrate, session_scope
from federation_node.store.models import SignalOutcome
from tests.integration.node_store.conftest import NOW, add_roll, locator_for

pytestmark = pytest.mark.postgres

SOURCE = "hospital-records"
# Enough rows that a hash of the whole table is what the planner picks for the pulled-up join
# (checked: the recorded-signal lookup without its LIMIT plans a Hash Join here).
SIGNALS = 20_000
PEOPLE = 5_000


@pytest.fixture
def stale_engine(postgres_url: str) -> Iterator[tuple[Engine, str]]:
    migrate(postgres_url)
    url = make_url(postgres_url)
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as connection:
        for table in ("data_signal", "beneficiary", "entitlement"):
            connection.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
    engine = create_engine_for(postgres_url)
    with session_scope(engine) as session:
        feed_store.add_signals(
            session,
            (
                feed_store.NewSignal(
                    f"signal-{n}",
                    SOURCE,
                    f"record-{n}",
                    1,
                    None,
                    NOW,
                    SignalOutcome.UNKNOWN_PERSON,
                    None,
                )
                for n in range(SIGNALS)
            ),
            recorded_by="feed-hospital",
            now=NOW,
        )
        add_roll(session, PEOPLE, NOW)
    try:
        yield engine, dsn
    finally:
        engine.dispose()


def _plan(dsn: str, query: str, parameters: dict[str, object]) -> str:
    with psycopg.connect(dsn) as connection:
        rows = connection.execute(f"EXPLAIN {query}", parameters).fetchall()
    return "\n".join(row[0] for row in rows)


def _assert_probes_per_key(plan: str) -> None:
    """A nested loop of index scans: no whole-table read (sequential, bitmap) and no hash."""
    for whole_table in ("Hash", "Seq Scan", "Bitmap"):
        assert whole_table not in plan, plan
    assert "Nested Loop" in plan, plan


def test_the_recorded_signal_lookup_probes_the_unique_index_per_key(
    stale_engine: tuple[Engine, str],
) -> None:
    engine, dsn = stale_engine
    wanted = [f"record-{n}" for n in range(0, 4_000, 2)] + ["record-never-sent"]
    plan = _plan(dsn, feed_store.RECORDED_QUERY, {"ids": wanted, "source": SOURCE})
    _assert_probes_per_key(plan)
    assert "Index Scan using uq_data_signal_source_source_record_id" in plan, plan
    with session_scope(engine) as session:
        found = feed_store.recorded(session, [(SOURCE, record_id) for record_id in wanted])
    assert set(found) == {(SOURCE, record_id) for record_id in wanted[:-1]}


def test_the_roll_lookup_probes_the_roll_key_index_per_key(
    stale_engine: tuple[Engine, str],
) -> None:
    engine, dsn = stale_engine
    wanted = [locator_for(f"roll-{n}") for n in range(0, 4_000, 2)] + [locator_for("nobody")]
    plan = _plan(dsn, feed_store.ROLL_INDEX_QUERY, {"roll_keys": wanted})
    _assert_probes_per_key(plan)
    with session_scope(engine) as session:
        found = feed_store.roll_index(session, wanted)
    assert set(found) == set(wanted[:-1])


def test_a_batch_of_extensions_probes_each_person_by_key_not_the_whole_roll(
    stale_engine: tuple[Engine, str],
) -> None:
    engine, _dsn = stale_engine
    keys = [locator_for(f"roll-{n}") for n in range(0, 4_000, 2)]
    with session_scope(engine) as session:
        people = [entry.beneficiary_id for entry in feed_store.roll_index(session, keys).values()]
    until, since = NOW + timedelta(days=400), NOW - timedelta(days=3)
    with session_scope(engine) as session:
        feed_store.extend_validities(
            session, [feed_store.Extension(person, until, since) for person in people], NOW
        )
        # This transaction's own scans, counted as they start (not yet flushed to the views
        # other sessions read).
        scans = dict(
            session.execute(
                text(
                    "SELECT relname, seq_scan FROM pg_stat_xact_user_tables "
                    "WHERE relname IN ('beneficiary', 'entitlement')"
                )
            ).all()
        )
        # Later statements of the transaction plan as they would have.
        join_settings = session.execute(
            text("SELECT current_setting('enable_hashjoin'), current_setting('enable_mergejoin')")
        ).one()
    assert scans == {"beneficiary": 0, "entitlement": 0}
    assert tuple(join_settings) == ("on", "on")
    with session_scope(engine) as session:
        after = feed_store.roll_index(session, keys).values()
        assert {entry.valid_until for entry in after} == {until}
        assert {entitlements_store.get(session, p).state_since for p in people[:20]} == {since}
