"""The desk's lists of overpayments and of possible duplicates read only the people on them,
however large the roll (SQLite and PostgreSQL)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Engine, text
from sqlmodel import Session

from federation_node.store import beneficiaries, entitlements_store, reports_store
from federation_node.store.db import session_scope
from federation_node.store.entitlements_store import EntitlementFilter
from tests.helpers.statements import executed_statements, query_plan
from tests.integration.node_store.conftest import add_roll, locator_for

ROLL = 3_000


def _roll(engine: Engine, now: datetime) -> list[str]:
    with session_scope(engine) as session:
        return add_roll(session, ROLL, now)


class _Read(NamedTuple):
    """A list's first page, its next token, its count and the report's figure for it, with the
    plans of the statements that asked for the list's own condition."""

    listed: list[Any]
    token: str
    total: int
    reported: int
    plans: list[str]


def _read(
    engine: Engine, which: EntitlementFilter, report: Callable[[Session], int], marker: str
) -> _Read:
    with executed_statements(engine) as executed, session_scope(engine) as session:
        listed, token = entitlements_store.page(session, which, 50, "")
        total = entitlements_store.count(session, which)
        reported = report(session)
    plans = [
        query_plan(engine, statement, parameters)
        for statement, parameters in executed
        if statement.startswith("SELECT") and marker in statement
    ]
    # The page, the count and the report: each read through the list's partial index.
    assert len(plans) == 3, executed
    return _Read(listed, token, total, reported, plans)


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
    read = _read(
        engine,
        EntitlementFilter(with_overpayment=True),
        reports_store.overpayments_total,
        "overpayment_fen >",
    )
    assert [entitlement.beneficiary_id for entitlement, _person in read.listed] == overpaid
    assert (read.token, read.total, read.reported) == ("", 3, 3 * 320000)
    for plan in read.plans:
        assert re.search(r"ix_entitlement_overpaid", plan), plan


def test_the_duplicates_list_and_count_read_only_the_flagged(engine: Engine, now: datetime) -> None:
    people = _roll(engine, now)
    with session_scope(engine) as session:
        for n in (11, 2_222):
            assert beneficiaries.flag_duplicate(session, locator_for(f"locator-{n}"), now)
    with engine.begin() as connection:
        connection.execute(text("ANALYZE"))
    read = _read(
        engine,
        EntitlementFilter(possible_duplicate=True),
        reports_store.possible_duplicates,
        "possible_duplicate IS",
    )
    assert [person.beneficiary_id for _entitlement, person in read.listed] == sorted(
        [people[11], people[2_222]]
    )
    assert (read.total, read.reported) == (2, 2)
    for plan in read.plans:
        assert re.search(r"ix_beneficiary_possible_duplicate", plan), plan
