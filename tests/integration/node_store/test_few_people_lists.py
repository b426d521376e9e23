"""The desk's lists of overpayments and of possible duplicates read only the people on them,
however large the roll (SQLite and PostgreSQL)."""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy import Engine, text

from federation_node.store import beneficiaries, entitlements_store, reports_store
from federation_node.store.db import session_scope
from federation_node.store.entitlements_store import EntitlementFilter
from tests.helpers.statements import executed_statements, query_plan
from tests.integration.node_store.conftest import add_roll, locator_for

ROLL = 3_000


def _roll(engine: Engine, now: datetime) -> list[str]:
    with session_scope(engine) as session:
        return add_roll(session, ROLL, now)


def _plans(engine: Engine, executed: list[tuple[str, object]], marker: str) -> list[str]:
    """The plans of the statements that ask for `marker` (a list's own condition)."""
    return [
        query_plan(engine, statement, parameters)
        for statement, parameters in executed
        if statement.startswith("SELECT") and marker in statement
    ]


def test_the_overpayments_list_and_total_read_only_the_overpaid(
    engine: Engine, now: datetime
) -> None:
    people = _roll(engine, now)
    overpaid = sorted(people[n] for n in (7, 1_500, 2_999))
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE entitlement SET overpayment_fen = 320000 WHERE beneficiary_id = :id"),
            [{"id": person} for person in overpaid],
        )
        connection.execute(text("ANALYZE"))
    which = EntitlementFilter(with_overpayment=True)
    with executed_statements(engine) as executed, session_scope(engine) as session:
        listed, token = entitlements_store.page(session, which, 50, "")
        total = entitlements_store.count(session, which)
        reported = reports_store.overpayments_total(session)
    assert [entitlement.beneficiary_id for entitlement, _person in listed] == overpaid
    assert (token, total, reported) == ("", 3, 3 * 320000)
    plans = _plans(engine, executed, "overpayment_fen >")
    assert len(plans) == 3, executed
    for plan in plans:
        assert re.search(r"ix_entitlement_overpaid", plan), plan


def test_the_duplicates_list_and_count_read_only_the_flagged(engine: Engine, now: datetime) -> None:
    people = _roll(engine, now)
    with session_scope(engine) as session:
        for n in (11, 2_222):
            assert beneficiaries.flag_duplicate(session, locator_for(f"locator-{n}"), now)
    with engine.begin() as connection:
        connection.execute(text("ANALYZE"))
    which = EntitlementFilter(possible_duplicate=True)
    with executed_statements(engine) as executed, session_scope(engine) as session:
        listed, _token = entitlements_store.page(session, which, 50, "")
        total = entitlements_store.count(session, which)
        reported = reports_store.possible_duplicates(session)
    assert [person.beneficiary_id for _entitlement, person in listed] == sorted(
        [people[11], people[2_222]]
    )
    assert (total, reported) == (2, 2)
    plans = _plans(engine, executed, "possible_duplicate IS")
    assert len(plans) == 3, executed
    for plan in plans:
        assert re.search(r"ix_beneficiary_possible_duplicate", plan), plan
