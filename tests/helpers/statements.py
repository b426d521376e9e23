"""The SQL statements an engine runs inside a block, for tests that bound a path's queries, and
the plans the database chooses for them."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, event


@contextmanager
def _listening(engine: Engine, record: Callable[[str, Any], None]) -> Iterator[None]:
    def seen(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_args: Any) -> None:
        record(statement, parameters)

    event.listen(engine, "before_cursor_execute", seen)
    try:
        yield
    finally:
        event.remove(engine, "before_cursor_execute", seen)


@contextmanager
def counted_statements(engine: Engine) -> Iterator[list[str]]:
    """Yields a list that collects the text of every statement `engine` runs until the block
    ends."""
    statements: list[str] = []
    with _listening(engine, lambda statement, _parameters: statements.append(statement)):
        yield statements


@contextmanager
def executed_statements(engine: Engine) -> Iterator[list[tuple[str, Any]]]:
    """`counted_statements` with each statement's parameters, as the driver got them."""
    executed: list[tuple[str, Any]] = []
    with _listening(engine, lambda statement, parameters: executed.append((statement, parameters))):
        yield executed


def query_plan(engine: Engine, statement: str, parameters: Any) -> str:
    """The plan the database chooses for a statement `executed_statements` saw, as text:
    PostgreSQL's EXPLAIN or SQLite's EXPLAIN QUERY PLAN."""
    postgres = engine.dialect.name == "postgresql"
    explain = "EXPLAIN " if postgres else "EXPLAIN QUERY PLAN "
    with engine.connect() as connection:
        rows = connection.exec_driver_sql(explain + statement, parameters).fetchall()
    return "\n".join(str(row[0] if postgres else row[-1]) for row in rows)


def assert_read_through(engine: Engine, executed: list[tuple[str, Any]], table: str) -> list[str]:
    """Each SELECT in `executed` reads `table` through an index, never whole (PostgreSQL's
    sequential scan, SQLite's SCAN); the plans, for the caller's own checks."""
    plans = []
    for statement, parameters in executed:
        if not statement.startswith("SELECT"):
            continue
        plan = query_plan(engine, statement, parameters)
        assert not re.search(rf"(Seq Scan on|SCAN) {table}\b", plan), plan
        plans.append(plan)
    return plans
