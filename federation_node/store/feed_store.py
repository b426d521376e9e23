"""The feed import's set-based reads and writes: the office's roll as an index by roll key, the
signals a batch holds already, and the batch's signals, attestations and validity changes
written a statement per table.

Everything happens in the caller's transaction, so a batch commits whole or not at all. Rows go
in through `bulk_insert.insert_rows` (COPY on PostgreSQL) and changes through one executemany
UPDATE per table; nothing here builds an ORM object per row.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import bindparam, update
from sqlalchemy import select as sql_select
from sqlmodel import Session, col

from federation_node.rules.entitlement import EntitlementState
from federation_node.store import tally
from federation_node.store.bulk_insert import insert_rows
from federation_node.store.db import is_postgres
from federation_node.store.models import Beneficiary, DataSignal, Entitlement, SignalOutcome

SignalKey = tuple[str, str]
# Keys per IN list: small enough for every engine's parameter limit.
_CHUNK = 500


class RollEntry(NamedTuple):
    """What matching a feed row to a person needs of the roll, read without an ORM object."""

    beneficiary_id: str
    subject_locator: bytes
    paying_region: str
    valid_until: datetime | None
    state: EntitlementState
    termination_pending_review: bool
    withheld_from_month: str | None


class Recorded(NamedTuple):
    beneficiary_id: str | None
    attestation_id: str | None


class NewSignal(NamedTuple):
    signal_id: str
    source: str
    source_record_id: str
    kind: int
    beneficiary_id: str | None
    observed_at: datetime
    outcome: SignalOutcome
    attestation_id: str | None


class Extension(NamedTuple):
    """An alive signal that moved a person's validity: the new end, and since when active."""

    beneficiary_id: str
    valid_until: datetime
    observed_at: datetime


# PostgreSQL: the batch's keys as one array, each looked up through the unique index in a
# LATERAL subquery. A plain IN or join lets the planner hash the whole table when its statistics
# lag behind a bulk import (a fresh table looks empty), which costs a scan per batch: a feed's
# signals all share a few sources, so until autovacuum's next analysis the recorded-signal lookup
# read every signal of the source, each batch slower than the last. `LIMIT 1` (the index is
# unique, so it changes no answer) keeps the subquery from being pulled up into such a join:
# each key is one index probe whatever the statistics say. Arrays go in binary (`%(name)b`):
# psycopg escapes a text array element by element in Python, which for a batch's keys cost more
# than the query.
ROLL_INDEX_QUERY = """
SELECT wanted.roll_key, found.* FROM unnest(%(roll_keys)b::bytea[]) AS wanted(roll_key)
CROSS JOIN LATERAL (
    SELECT b.beneficiary_id, b.subject_locator, b.paying_region, b.valid_until, e.state,
           e.termination_pending_review, e.withheld_from_month
    FROM beneficiary b JOIN entitlement e ON e.beneficiary_id = b.beneficiary_id
    WHERE b.roll_key = wanted.roll_key
    LIMIT 1
) AS found
"""
RECORDED_QUERY = """
SELECT wanted.id, found.beneficiary_id, found.attestation_id
FROM unnest(%(ids)b::varchar[]) AS wanted(id)
CROSS JOIN LATERAL (
    SELECT beneficiary_id, attestation_id FROM data_signal
    WHERE source = %(source)s AND source_record_id = wanted.id
    LIMIT 1
) AS found
"""


def roll_index(session: Session, roll_keys: Sequence[bytes]) -> dict[bytes, RollEntry]:
    """This office's beneficiaries among `roll_keys` (rules/feed_records.roll_key), keyed by
    roll key (the roll's unique index on it), with what their entitlements say."""
    found: dict[bytes, RollEntry] = {}
    if not roll_keys:
        return found
    if is_postgres(session):
        rows = _fetch_on_postgres(session, ROLL_INDEX_QUERY, {"roll_keys": list(roll_keys)})
        for key, beneficiary_id, locator, region, valid_until, state, pending, withheld in rows:
            found[bytes(key)] = RollEntry(
                beneficiary_id,
                bytes(locator),
                region,
                valid_until,
                EntitlementState(state),
                pending,
                withheld,
            )
        return found
    for start in range(0, len(roll_keys), _CHUNK):
        statement = (
            sql_select(
                col(Beneficiary.roll_key),
                col(Beneficiary.beneficiary_id),
                col(Beneficiary.subject_locator),
                col(Beneficiary.paying_region),
                col(Beneficiary.valid_until),
                col(Entitlement.state),
                col(Entitlement.termination_pending_review),
                col(Entitlement.withheld_from_month),
            )
            .join(Entitlement, col(Entitlement.beneficiary_id) == col(Beneficiary.beneficiary_id))
            .where(col(Beneficiary.roll_key).in_(list(roll_keys[start : start + _CHUNK])))
        )
        for key, *row in session.execute(statement):
            found[bytes(key)] = RollEntry(*row)
    return found


def _fetch_on_postgres(
    session: Session, query: str, parameters: Mapping[str, object]
) -> list[tuple[Any, ...]]:
    """`query`'s rows, run on the session's connection by the driver (binary parameters)."""
    driver = session.connection().connection.driver_connection
    if driver is None:
        raise RuntimeError("the session's connection has no driver connection")
    with driver.cursor() as cursor:
        cursor.execute(query, parameters)
        rows: list[tuple[Any, ...]] = cursor.fetchall()
        return rows


def recorded(session: Session, keys: Sequence[SignalKey]) -> dict[SignalKey, Recorded]:
    """The signals among `keys` recorded before, with whom and what they named: one query per
    source on PostgreSQL, per source and 500 ids on SQLite."""
    found: dict[SignalKey, Recorded] = {}
    by_source: dict[str, list[str]] = {}
    for source, record_id in keys:
        by_source.setdefault(source, []).append(record_id)
    postgres = is_postgres(session)
    for source, record_ids in sorted(by_source.items()):
        if postgres:
            parameters = {"ids": record_ids, "source": source}
            for record_id, beneficiary_id, attestation_id in _fetch_on_postgres(
                session, RECORDED_QUERY, parameters
            ):
                found[(source, record_id)] = Recorded(beneficiary_id, attestation_id)
            continue
        for start in range(0, len(record_ids), _CHUNK):
            rows = session.execute(
                sql_select(
                    col(DataSignal.source_record_id),
                    col(DataSignal.beneficiary_id),
                    col(DataSignal.attestation_id),
                ).where(
                    col(DataSignal.source) == source,
                    col(DataSignal.source_record_id).in_(record_ids[start : start + _CHUNK]),
                )
            )
            for record_id, beneficiary_id, attestation_id in rows:
                found[(source, record_id)] = Recorded(beneficiary_id, attestation_id)
    return found


def add_signals(
    session: Session, signals: Iterable[NewSignal], *, recorded_by: str, now: datetime
) -> int:
    """Record signals; the (source, source_record_id) pair stays unique: a pair recorded
    meanwhile by another import raises IntegrityError, as the ORM would."""
    return insert_rows(
        session,
        DataSignal.__table__,  # type: ignore[attr-defined]
        (
            "signal_id",
            "source",
            "source_record_id",
            "kind",
            "beneficiary_id",
            "observed_at",
            "outcome",
            "attestation_id",
            "recorded_by",
            "recorded_at",
        ),
        (
            (*signal, recorded_by, now)
            for signal in tally.counted(
                session, tally.FEED_ROWS, signals, lambda signal: signal.outcome.value
            )
        ),
    )


def extend_validities(session: Session, extensions: Sequence[Extension], now: datetime) -> None:
    """Move each person's validity to its new end and mark the entitlement active since the
    signal (what `lifecycle.certified` does for an entitlement with no suspension in effect).

    One extension per person: the caller passes each person's last."""
    if not extensions:
        return
    if is_postgres(session):
        _extend_on_postgres(session, extensions, now)
        return
    # Core statements on the tables: an executemany, not the ORM's bulk update by primary key.
    people = Beneficiary.__table__  # type: ignore[attr-defined]
    entitlements = Entitlement.__table__  # type: ignore[attr-defined]
    connection = session.connection()
    connection.execute(
        update(people)
        .where(people.c.beneficiary_id == bindparam("b_id"))
        .values(valid_until=bindparam("b_valid_until"), updated_at=now),
        [{"b_id": e.beneficiary_id, "b_valid_until": e.valid_until} for e in extensions],
    )
    connection.execute(
        update(entitlements)
        .where(entitlements.c.beneficiary_id == bindparam("b_id"))
        .values(state=EntitlementState.ACTIVE, state_since=bindparam("b_since"), updated_at=now),
        [{"b_id": e.beneficiary_id, "b_since": e.observed_at} for e in extensions],
    )


# One UPDATE ... FROM per table, the new values as arrays unnested into rows. GREATEST: a
# validity another transaction moved further since the batch read it is never moved back.
# Each row is found by one probe of the primary key: the planner, left to itself, hashes the
# whole table whenever a batch looks large beside it (a 5,000-row batch against a roll of
# 300,000 people, or any batch while the statistics still describe the roll before its import),
# which costs three times the probes. Hash and merge joins are switched off for these two
# statements only (SET LOCAL, back to the default after them, within the batch's transaction).
_KEY_PROBES_ONLY = "SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off"
_ANY_JOIN = "SET LOCAL enable_hashjoin TO DEFAULT; SET LOCAL enable_mergejoin TO DEFAULT"
_EXTEND_PEOPLE = """
UPDATE beneficiary
SET valid_until = GREATEST(beneficiary.valid_until, changed.valid_until), updated_at = %(now)s
FROM unnest(%(ids)b::text[], %(valid_until)b::timestamptz[]) AS changed(id, valid_until)
WHERE beneficiary.beneficiary_id = changed.id
"""
_ACTIVATE_ENTITLEMENTS = """
UPDATE entitlement SET state = %(state)s, state_since = changed.since, updated_at = %(now)s
FROM unnest(%(ids)b::text[], %(since)b::timestamptz[]) AS changed(id, since)
WHERE entitlement.beneficiary_id = changed.id
"""


def _extend_on_postgres(session: Session, extensions: Sequence[Extension], now: datetime) -> None:
    driver = session.connection().connection.driver_connection
    if driver is None:
        raise RuntimeError("the session's connection has no driver connection")
    ids = [extension.beneficiary_id for extension in extensions]
    with driver.cursor() as cursor:
        cursor.execute(_KEY_PROBES_ONLY)
        cursor.execute(
            _EXTEND_PEOPLE,
            {"now": now, "ids": ids, "valid_until": [e.valid_until for e in extensions]},
        )
        cursor.execute(
            _ACTIVATE_ENTITLEMENTS,
            {
                "now": now,
                "ids": ids,
                "since": [e.observed_at for e in extensions],
                "state": EntitlementState.ACTIVE.value,
            },
        )
        cursor.execute(_ANY_JOIN)
