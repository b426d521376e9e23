"""A node killed (SIGKILL) in the middle of its daily cycle loses nothing and applies nothing
twice: after a restart, the same day run again ends where an uninterrupted run would.

Real processes: a registry and a paying office on PostgreSQL, `certfed node cycle` in a process
of its own. The office's roll is written straight into its database (`cli.bench.cycle.seed_roll`,
several of the cycle's batches); the node is killed once a batch of the day has committed and
before the day finished, and started again; the cycle is run again for the same day. Then every
person is in the state the rules give, each suspension has one payment instruction, each due
reminder is queued once, the run's counts are what the tables hold, the day is finished and
audited once, and the audit chain verifies.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlmodel import Session

from cli.bench.cycle import OFFICE, seed_roll
from cli.launcher import LocalFederation, wait_until
from federation_node.offices.daily_cycle import BATCH_SIZE, start_of_day
from federation_node.rules.entitlement import (
    EntitlementState,
    advance,
    month_label,
    month_start,
    phases,
    reminder_kind,
    reminder_offset,
)
from federation_node.rules.policy import Policy
from federation_node.store import audit, db
from tests.helpers.crash import certfed_running, kill_node_under, office_on_postgres

# Several batches of the cycle: killed after the first commits, most still to go.
PEOPLE = 4 * BATCH_SIZE
DAY = datetime.now(UTC).date() - timedelta(days=1)


federation = office_on_postgres(
    OFFICE, {"cycle_hour_utc": -1, "routing": {"440600": OFFICE.node_id}}
)


def _cycle(local: LocalFederation) -> subprocess.Popen[bytes]:
    return certfed_running(
        local, OFFICE.node_id, "admin", "node", "cycle", "--day", DAY.isoformat()
    )


def _expected(valid_until: datetime, policy: Policy) -> tuple[str, datetime | None, str | None]:
    """The state, state-since (None: unchanged) and reminder kind the day gives a person who
    was active with nothing queued, by the rules' pure functions."""
    timeline = phases(valid_until, policy)
    moment = start_of_day(DAY)
    moved_to = advance(EntitlementState.ACTIVE, timeline.on(moment))
    offset = reminder_offset(DAY, valid_until.date(), policy.reminder_days)
    kind = reminder_kind(offset, valid_until, policy).value if offset is not None else None
    if moved_to is None:
        return EntitlementState.ACTIVE.value, None, kind
    return moved_to.value, timeline.start_of(moved_to), kind


@pytest.mark.postgres
def test_a_cycle_killed_midway_and_run_again_loses_and_repeats_nothing(
    federation: LocalFederation,
) -> None:
    handle = federation.nodes[OFFICE.node_id]
    engine = db.create_engine_for(handle.config.effective_database_url)
    try:
        seed_roll(engine, handle.config.data_dir, PEOPLE, DAY)

        def run_row() -> tuple[str | None, datetime | None]:
            with Session(engine) as session:
                row = session.execute(
                    text("SELECT resume_after, finished_at FROM cycle_run WHERE day = :day"),
                    {"day": DAY.isoformat()},
                ).first()
            return (row[0], row[1]) if row is not None else (None, None)

        cycle = _cycle(federation)
        wait_until(lambda: run_row()[0] is not None, 600, "a batch of the day committed")
        kill_node_under(
            federation,
            OFFICE.node_id,
            cycle,
            command_survives=False,
            interrupted=lambda: run_row()[1] is None,
            run_again=lambda: _cycle(federation),
        )
        assert run_row()[1] is not None

        policy = Policy()
        with Session(engine) as session:
            people = session.execute(
                text(
                    "SELECT b.beneficiary_id, b.valid_until, e.state, e.state_since, "
                    "e.withheld_from_month, e.updated_at, b.created_at "
                    "FROM beneficiary b JOIN entitlement e USING (beneficiary_id)"
                )
            ).all()
            payments = Counter(
                session.execute(
                    text("SELECT beneficiary_id, action, effective_month FROM payment_instruction")
                ).all()
            )
            reminders = Counter(
                session.execute(text("SELECT beneficiary_id, kind, expires_at FROM reminder")).all()
            )
            run = session.execute(
                text(
                    "SELECT became_due, warned, suspended, reminders_queued FROM cycle_run "
                    "WHERE day = :day"
                ),
                {"day": DAY.isoformat()},
            ).one()
            assert len(people) == PEOPLE
            suspended_month = month_label(month_start(DAY))
            moved: Counter[str] = Counter()
            queued = 0
            for beneficiary_id, valid_until, state, since, withheld, updated, created in people:
                want_state, want_since, want_kind = _expected(valid_until, policy)
                assert state == want_state, beneficiary_id
                if want_since is None:
                    assert since == created, beneficiary_id
                    assert updated == created, beneficiary_id
                else:
                    assert since == want_since, beneficiary_id
                    moved[want_state] += 1
                if want_state == EntitlementState.SUSPENDED.value:
                    assert withheld == suspended_month
                    assert payments[(beneficiary_id, "suspend", suspended_month)] == 1
                else:
                    assert withheld is None
                if want_kind is not None:
                    assert reminders[(beneficiary_id, want_kind, valid_until)] == 1, beneficiary_id
                    queued += 1
            # Nothing else was written, and the run counted what it wrote, once.
            assert sum(payments.values()) == moved[EntitlementState.SUSPENDED.value]
            assert sum(reminders.values()) == queued
            assert tuple(run) == (
                moved[EntitlementState.DUE.value],
                moved[EntitlementState.WARNING.value],
                moved[EntitlementState.SUSPENDED.value],
                queued,
            )

        def chained() -> bool:
            with Session(engine) as session:
                return session.execute(text("SELECT count(*) FROM audit_pending")).scalar_one() == 0

        wait_until(chained, 60, "the audit records chained")
        with Session(engine) as session:
            assert audit.verify_chain(session) == []
            runs = session.execute(
                text(
                    "SELECT count(*) FROM audit_record WHERE action = 'cycle.run' "
                    "AND subject_id = :day"
                ),
                {"day": DAY.isoformat()},
            ).scalar_one()
            assert runs == 1
    finally:
        engine.dispose()
