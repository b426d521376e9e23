"""Storage of the locator index: which paying node pays the person behind each subject locator,
and which locators more than one paying node holds (possible duplicate entitlements); and how
many locator evaluations each node had on each UTC day.

Promises: the only code that writes `subject_locator`, `duplicate_entitlement` and
`locator_evaluation_day`. A day's count never passes the quota it is counted against, however
many replicas count at once (one conditional UPDATE). Publishing is
idempotent (a locator a node already holds is left as it was), inserted in bounded batches with
one `INSERT ... ON CONFLICT DO NOTHING` per batch on SQLite and PostgreSQL alike. After every
publish and withdrawal the duplicates table lists exactly the locators held by two or more
nodes, one row per node involved, with the time the duplicate was first seen. Publications and
withdrawals run one at a time (an advisory lock on PostgreSQL, IMMEDIATE transactions on
SQLite), so two nodes publishing the same locator at once cannot both miss the duplicate.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from federation.roles import PAYING_ROLE_NAMES
from registry.db import advisory_lock
from registry.tables import (
    DuplicateEntitlement,
    LocatorEvaluationDay,
    Node,
    NodeState,
    SubjectLocator,
    metadata,
)

# pg_advisory_xact_lock key serialising changes to the locator index ("certfed" + 2).
LOCATORS_LOCK_KEY = 0x6365727466656402
# Rows per statement: well inside SQLite's and PostgreSQL's bound-parameter limits.
BATCH_SIZE = 500


@dataclass(frozen=True)
class Duplicate:
    """A locator held by several paying nodes."""

    locator: bytes
    node_ids: tuple[str, ...]
    detected_at: datetime


@dataclass(frozen=True)
class PublishOutcome:
    # Locators the node did not hold before this publication.
    published: int
    # Duplicates among the published locators that involve the publishing node.
    duplicates: list[Duplicate]


def _batches(items: Sequence[bytes]) -> Iterator[Sequence[bytes]]:
    for start in range(0, len(items), BATCH_SIZE):
        yield items[start : start + BATCH_SIZE]


def _is_postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _locator_array(locators: Sequence[bytes]) -> sa.BindParameter[Any]:
    return sa.bindparam("locators", list(locators), type_=postgresql.ARRAY(sa.LargeBinary))


def _insert_locators_postgresql(
    session: Session, node_id: str, locators: Sequence[bytes], now: datetime
) -> int:
    """A whole publication in one short statement: the locators go as one bytea[] parameter
    (`unnest`), so neither SQLAlchemy nor the driver builds and parses a statement per batch."""
    table = _table(SubjectLocator)
    rows = sa.select(
        sa.func.unnest(_locator_array(locators)),
        sa.literal(node_id, table.c.node_id.type),
        sa.literal(now, table.c.published_at.type),
    )
    statement = (
        postgresql.insert(table)
        .from_select(["locator", "node_id", "published_at"], rows)
        .on_conflict_do_nothing()
        .returning(table.c.node_id)
    )
    return len(session.execute(statement).all())


def _insert_ignoring_conflicts(
    session: Session, table: sa.Table, rows: list[dict[str, Any]]
) -> int:
    if not rows:
        return 0
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    # RETURNING, not rowcount: drivers disagree on rowcount for multi-row inserts. The rows go as
    # parameters of one statement compiled once (SQLAlchemy's "insertmanyvalues" sends them as
    # multi-row VALUES), not as a statement compiled afresh around every batch of literals.
    statement = insert(table).on_conflict_do_nothing().returning(table.c.node_id)
    return len(session.execute(statement, rows).all())


def _table(
    model: type[SubjectLocator] | type[DuplicateEntitlement] | type[LocatorEvaluationDay],
) -> sa.Table:
    return metadata.tables[str(model.__tablename__)]


def _shared(session: Session, locators: Sequence[bytes]) -> dict[bytes, list[str]]:
    """The nodes holding each of these locators that more than one node holds, in node order;
    the database finds them, so a publication of a whole roll reads back only its duplicates."""
    holders: dict[bytes, list[str]] = {}
    postgres = _is_postgresql(session)
    held = col(SubjectLocator.locator)
    # On PostgreSQL one `= ANY(bytea[])` over them all; elsewhere IN lists of bounded size.
    for batch in [locators] if postgres else _batches(locators):
        shared = (
            select(held)
            .where(held == sa.any_(_locator_array(batch)) if postgres else held.in_(batch))
            .group_by(held)
            .having(sa.func.count() > 1)
        )
        rows = session.exec(
            select(SubjectLocator.locator, SubjectLocator.node_id)
            .where(held.in_(shared))
            .order_by(held, col(SubjectLocator.node_id))
        ).all()
        for locator, node_id in rows:
            holders.setdefault(bytes(locator), []).append(node_id)
    return holders


def publish(
    session: Session, node_id: str, locators: Sequence[bytes], now: datetime
) -> PublishOutcome:
    advisory_lock(session, LOCATORS_LOCK_KEY)
    unique = sorted(set(locators))
    published = 0
    if _is_postgresql(session):
        published = _insert_locators_postgresql(session, node_id, unique, now)
    else:
        for batch in _batches(unique):
            published += _insert_ignoring_conflicts(
                session,
                _table(SubjectLocator),
                [
                    {"locator": locator, "node_id": node_id, "published_at": now}
                    for locator in batch
                ],
            )
    shared = _shared(session, unique)
    rows = [
        {"locator": locator, "node_id": holder, "detected_at": now}
        for locator, node_ids in shared.items()
        for holder in node_ids
    ]
    for start in range(0, len(rows), BATCH_SIZE):
        _insert_ignoring_conflicts(
            session, _table(DuplicateEntitlement), rows[start : start + BATCH_SIZE]
        )
    session.flush()
    return PublishOutcome(published, duplicates(session, node_id, list(shared)))


def withdraw(session: Session, node_id: str, locators: Sequence[bytes]) -> int:
    """Remove the node's claim on each locator; returns how many it held."""
    advisory_lock(session, LOCATORS_LOCK_KEY)
    unique = sorted(set(locators))
    withdrawn = 0
    for batch in _batches(unique):
        statement = (
            sa.delete(_table(SubjectLocator))
            .where(
                _table(SubjectLocator).c.node_id == node_id,
                _table(SubjectLocator).c.locator.in_(batch),
            )
            .returning(_table(SubjectLocator).c.locator)
        )
        withdrawn += len(session.execute(statement).all())
    duplicates_table = _table(DuplicateEntitlement)
    for batch in _batches(unique):
        session.execute(
            sa.delete(duplicates_table).where(
                duplicates_table.c.node_id == node_id, duplicates_table.c.locator.in_(batch)
            )
        )
    still_shared = _shared(session, unique)
    resolved = [locator for locator in unique if locator not in still_shared]
    for batch in _batches(resolved):
        session.execute(sa.delete(duplicates_table).where(duplicates_table.c.locator.in_(batch)))
    session.flush()
    return withdrawn


def locate(session: Session, locator: bytes) -> list[str]:
    """The active paying nodes that hold `locator`, by node id."""
    rows = session.exec(
        select(Node)
        .join(SubjectLocator, col(SubjectLocator.node_id) == col(Node.node_id))
        .where(SubjectLocator.locator == locator, Node.status == NodeState.ACTIVE)
        .order_by(col(Node.node_id))
    ).all()
    return [node.node_id for node in rows if PAYING_ROLE_NAMES.intersection(node.roles)]


def duplicates(
    session: Session, node_id: str, among: Sequence[bytes] | None = None
) -> list[Duplicate]:
    """Duplicates involving `node_id`, all of them or only those among the given locators."""
    involving = select(DuplicateEntitlement.locator).where(DuplicateEntitlement.node_id == node_id)
    if among is None:
        locators: list[bytes] = [bytes(value) for value in session.exec(involving).all()]
    else:
        # Only the given locators are looked up: a batch's, not every duplicate of the node.
        locators = [
            bytes(value)
            for batch in _batches(sorted(set(among)))
            for value in session.exec(
                involving.where(col(DuplicateEntitlement.locator).in_(batch))
            ).all()
        ]
    found: dict[bytes, tuple[list[str], datetime]] = {}
    for batch in _batches(sorted(locators)):
        rows = session.exec(
            select(DuplicateEntitlement)
            .where(col(DuplicateEntitlement.locator).in_(batch))
            .order_by(col(DuplicateEntitlement.locator), col(DuplicateEntitlement.node_id))
        ).all()
        for row in rows:
            key = bytes(row.locator)
            node_ids, detected_at = found.get(key, ([], row.detected_at))
            node_ids.append(row.node_id)
            found[key] = (node_ids, min(detected_at, row.detected_at))
    return [
        Duplicate(locator, tuple(node_ids), detected_at)
        for locator, (node_ids, detected_at) in sorted(found.items())
    ]


def evaluations_on(session: Session, node_id: str, day: str) -> int:
    """Locator evaluations counted for the node on `day` (YYYY-MM-DD, UTC)."""
    row = session.get(LocatorEvaluationDay, (node_id, day))
    return 0 if row is None else int(row.evaluated)


def count_evaluations(
    session: Session, node_id: str, day: str, count: int, quota: int
) -> int | None:
    """Count `count` more evaluations for the node on `day` if its total stays within `quota`:
    the new total, or None when it would not (nothing is counted then).

    One statement: the day's first count inserts the row (only when `count` alone is within
    the quota), a later one adds to it under the row's lock (only when the sum is)."""
    table = _table(LocatorEvaluationDay)
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    first = sa.select(
        sa.literal(node_id, sa.String()),
        sa.literal(day, sa.String()),
        sa.literal(count, sa.BigInteger()),
    ).where(sa.literal(count, sa.BigInteger()) <= quota)
    statement = insert(table).from_select(["node_id", "day", "evaluated"], first)
    total = table.c.evaluated + statement.excluded.evaluated
    counted = statement.on_conflict_do_update(
        index_elements=[table.c.node_id, table.c.day],
        set_={"evaluated": total},
        where=total <= quota,
    ).returning(table.c.evaluated)
    found = session.execute(counted).scalar_one_or_none()
    return None if found is None else int(found)
