"""The audit trail: who did what to which subject and when, as a SHA-256 hash chain.

Each record's hash covers the previous record's hash and a canonical JSON of its own fields
(seq, at, actor, action, subject_type, subject_id, details), so editing a record, deleting one
or reordering them breaks the chain where it happened, and `verify_chain` says where.

A record is written in two steps. `append` inserts it as pending (`audit_pending`) in the
business transaction that causes it, so it commits or rolls back with what it records. Shortly
after, the sequencer (`federation_node.audit_sequencer`, or `flush`) chains pending records in
batches with `sequence_pending`: under a lock (a PostgreSQL transaction-level advisory lock; on
SQLite every transaction already holds the write lock) it reads the head, numbers the records
one more than the last, links their hashes and deletes them from the queue, in one transaction,
so a record is either pending or chained, never both and never lost, and concurrent replicas
extend one chain, never a fork; a missing number can only mean a deleted record. Business
transactions no longer take that lock, so it no longer serialises every state change of the
node: only sequencing passes queue on it, one per batch.

A chain alone cannot show that its newest records were cut off; anchoring the head hash
elsewhere (an export, the transparency log) closes that gap. Details carry ids and enum values
only, never a name or identity number.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple, cast

from sqlalchemy import ColumnElement, CursorResult, Engine, Table, delete, func, text
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from federation.errors import InvalidInputError
from federation_node.store.bulk_insert import insert_rows
from federation_node.store.db import (
    decode_page_token,
    encode_page_token,
    is_postgres,
    session_scope,
)
from federation_node.store.models import AuditPending, AuditRecord

# pg_advisory_xact_lock key serialising appends to the chain (ASCII "cfaudit"). It is the key
# business transactions took before records were queued, so a replica still running that
# version during an upgrade appends to the same chain, never a fork.
AUDIT_LOCK_KEY = 0x63666175646974
# Pending records chained per transaction: big enough that a pass rarely needs two, small
# enough that a pass holds the chain lock only briefly.
SEQUENCE_BATCH = 1000
_BATCH = 1000

DetailValue = str | int | bool | None | list[str]
# The tables themselves, for bulk inserts (COPY on PostgreSQL): the ORM's unit of work costs
# several times as much a row.
_PENDING_TABLE: Table = AuditPending.__table__  # type: ignore[attr-defined]
_RECORD_TABLE: Table = AuditRecord.__table__  # type: ignore[attr-defined]


class ConcurrentSequencingError(Exception):
    """Pending records were removed while being chained: someone sequenced without the lock."""


def append(
    session: Session,
    *,
    actor: str,
    action: str,
    subject_type: str,
    subject_id: str,
    details: Mapping[str, DetailValue],
    now: datetime,
) -> AuditPending:
    """Queue a record for the chain, in the caller's transaction; the sequencer chains it."""
    clean_details = _checked_details(details)
    if now.tzinfo is None:
        raise ValueError("naive datetime: certfed keeps every time in UTC with tzinfo")
    pending = AuditPending(
        at=now.astimezone(UTC),
        actor=actor,
        action=action,
        subject_type=subject_type,
        subject_id=subject_id,
        details=clean_details,
    )
    # No flush: the row goes with the transaction's next flush, with its other writes.
    session.add(pending)
    return pending


class NewRecord(NamedTuple):
    """One record for `append_many`: the fields `append` takes, but the time, which they share."""

    actor: str
    action: str
    subject_type: str
    subject_id: str
    details: Mapping[str, DetailValue]


def append_many(session: Session, records: Sequence[NewRecord], now: datetime) -> int:
    """Queue `records` for the chain, in order, in the caller's transaction, in one bulk insert
    (a batch's decisions: one record each, without an ORM object each); returns how many."""
    if now.tzinfo is None:
        raise ValueError("naive datetime: certfed keeps every time in UTC with tzinfo")
    if not records:
        return 0
    at = now.astimezone(UTC)
    rows = [
        (
            record.actor,
            record.action,
            record.subject_type,
            record.subject_id,
            _checked_details(record.details),
        )
        for record in records
    ]
    # Records `append` queued earlier in the transaction go first, as they happened.
    session.flush()
    return insert_rows(
        session,
        _PENDING_TABLE,
        ("actor", "action", "subject_type", "subject_id", "details"),
        rows,
        same={"at": at},
    )


def sequence_pending(session: Session, *, limit: int = SEQUENCE_BATCH) -> int:
    """Chain up to `limit` pending records, oldest first, in the caller's transaction.

    Returns how many were chained. The head and the queue are read only once the chain lock is
    held, so what another replica chained and committed meanwhile is seen (under READ COMMITTED
    every statement sees what committed before it began).
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    if is_postgres(session):
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": AUDIT_LOCK_KEY})
    # Columns, not ORM objects: a pass runs several times a second on a busy node.
    pending = session.execute(
        sa_select(
            col(AuditPending.pending_id),
            col(AuditPending.at),
            col(AuditPending.actor),
            col(AuditPending.action),
            col(AuditPending.subject_type),
            col(AuditPending.subject_id),
            col(AuditPending.details),
        )
        .order_by(col(AuditPending.pending_id))
        .limit(limit)
    ).all()
    if not pending:
        return 0
    last = session.execute(
        sa_select(col(AuditRecord.seq), col(AuditRecord.record_hash))
        .order_by(col(AuditRecord.seq).desc())
        .limit(1)
    ).first()
    seq, prev_hash = (0, AuditRecord.GENESIS_HASH) if last is None else tuple(last)
    records: list[tuple[Any, ...]] = []
    for _, at, actor, action, subject_type, subject_id, details in pending:
        seq += 1
        fields = _Fields(seq, at, actor, action, subject_type, subject_id, details)
        linked = _linked_hash(prev_hash, fields)
        records.append((*fields, prev_hash, linked))
        prev_hash = linked
    insert_rows(session, _RECORD_TABLE, _RECORD_COLUMNS, records)
    ids = [row[0] for row in pending]
    result = session.execute(delete(AuditPending).where(col(AuditPending.pending_id).in_(ids)))
    deleted = cast(CursorResult[Any], result).rowcount
    if deleted != len(ids):
        raise ConcurrentSequencingError(
            f"{len(ids) - deleted} of {len(ids)} pending audit records vanished while they were "
            "chained"
        )
    return len(ids)


def flush(engine: Engine, *, batch: int = SEQUENCE_BATCH) -> int:
    """Chain every pending record, one transaction per batch; returns how many were chained."""
    total = 0
    while True:
        with session_scope(engine) as session:
            chained = sequence_pending(session, limit=batch)
        total += chained
        if chained < batch:
            return total


def head(session: Session) -> AuditRecord | None:
    """The newest record, whose hash stands for the whole chain."""
    return session.exec(select(AuditRecord).order_by(col(AuditRecord.seq).desc()).limit(1)).first()


def record_hash(record: AuditRecord) -> str:
    """SHA-256 (hex) over the previous record's hash and this record's canonical JSON."""
    fields = _Fields(
        record.seq,
        record.at,
        record.actor,
        record.action,
        record.subject_type,
        record.subject_id,
        record.details,
    )
    return _linked_hash(record.prev_hash, fields)


class _Fields(NamedTuple):
    """What a record's hash covers besides the previous record's hash."""

    seq: int
    at: datetime
    actor: str
    action: str
    subject_type: str
    subject_id: str
    details: dict[str, Any]


# A chained record's columns, in the order `sequence_pending` writes them.
_RECORD_COLUMNS = (*_Fields._fields, "prev_hash", "record_hash")


def _linked_hash(prev_hash: str, fields: _Fields) -> str:
    return hashlib.sha256(prev_hash.encode("ascii") + b"\n" + _canonical(fields)).hexdigest()


class ChainEnd(NamedTuple):
    """A record of the chain and its hash as verified: where a walk starts or stopped."""

    seq: int
    record_hash: str


# Where a walk over the whole chain starts: before record 1.
START = ChainEnd(0, AuditRecord.GENESIS_HASH)


def verify_chain(session: Session) -> list[str]:
    """What is wrong with the chain, one sentence per problem; empty when it is intact."""
    problems: list[str] = []
    walk(session, START, problems.append)
    return problems


def walk(
    session: Session,
    start: ChainEnd,
    on_problem: Callable[[str], None],
    *,
    limit: int | None = None,
) -> tuple[ChainEnd, int]:
    """Verify the records after `start`, in order, up to `limit` of them (all without one).

    Each record must follow the one before without a gap, link to its hash, and hash to what it
    holds; `on_problem` is told each problem, one sentence each. Returns the last record read
    (`start` when there was none) and how many were read. Reads columns, not ORM objects: a
    full pass reads every record the node ever chained.
    """
    expected_seq, prev_hash = start.seq + 1, start.record_hash
    read = 0
    for fields, stored_prev, stored_hash in _chain_rows(session, start.seq, limit):
        seq = fields.seq
        if seq != expected_seq:
            missing = (
                f"record {expected_seq}"
                if seq == expected_seq + 1
                else f"records {expected_seq} to {seq - 1}"
            )
            on_problem(f"{missing} missing (deleted?) before record {seq}")
        elif stored_prev != prev_hash:
            on_problem(f"record {seq} does not link to the record before it")
        if _linked_hash(stored_prev, fields) != stored_hash:
            on_problem(f"record {seq} was altered after it was written")
        expected_seq, prev_hash = seq + 1, stored_hash
        read += 1
    return ChainEnd(expected_seq - 1, prev_hash), read


def newest_seq(session: Session) -> int:
    """The newest record's number, 0 for an empty chain; read from the end of the key."""
    return session.exec(select(func.max(col(AuditRecord.seq)))).one() or 0


@dataclass(frozen=True)
class AuditFilter:
    """Each field optional ("" for any): an exact actor, an action prefix, an exact subject id."""

    actor: str = ""
    action_prefix: str = ""
    subject_id: str = ""


def page(
    session: Session, which: AuditFilter, page_size: int, page_token: str
) -> tuple[list[AuditRecord], str, int]:
    """One page of chained records, newest first; the next page's token; how many match.

    The count is taken first, with the newest matching seq, and the page reads no record past
    that seq: the chain only grows, so the page and its count describe the same chain even when
    the sequencer commits between the two statements (each has its own snapshot on PostgreSQL).
    Unfiltered, the count is the newest record's seq: the chain numbers its records from 1
    without a gap (`verify` names any that went missing), and counting the rows read all of them
    for each page (44 ms at a million records on PostgreSQL, 0.3 ms this way).
    """
    after = decode_page_token(page_token)
    if after is not None and not after.isdigit():
        raise InvalidInputError("page_token", "is not a page token this node issued")
    criteria = _matching(which)
    if criteria:
        total, newest = session.exec(
            select(func.count(), func.max(col(AuditRecord.seq))).where(*criteria)
        ).one()
    else:
        newest = newest_seq(session)
        total = newest
    if not total:
        return [], "", 0
    statement = select(AuditRecord).where(*criteria, col(AuditRecord.seq) <= newest)
    if after is not None:
        statement = statement.where(col(AuditRecord.seq) < int(after))
    rows = list(session.exec(statement.order_by(col(AuditRecord.seq).desc()).limit(page_size + 1)))
    if len(rows) <= page_size:
        return rows, "", total
    rows = rows[:page_size]
    return rows, encode_page_token(str(rows[-1].seq)), total


def _matching(which: AuditFilter) -> list[ColumnElement[bool]]:
    """The WHERE criteria of a filter."""
    criteria: list[ColumnElement[bool]] = []
    if which.actor:
        criteria.append(col(AuditRecord.actor) == which.actor)
    if which.action_prefix:
        escaped = which.action_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        criteria.append(col(AuditRecord.action).like(escaped + "%", escape="\\"))
    if which.subject_id:
        criteria.append(col(AuditRecord.subject_id) == which.subject_id)
    return criteria


def export(session: Session) -> Iterator[dict[str, Any]]:
    """Every record in chain order, as JSON-ready dicts (times in ISO 8601 UTC)."""
    for record in _all_records(session):
        yield {
            "seq": record.seq,
            "at": record.at.astimezone(UTC).isoformat(),
            "actor": record.actor,
            "action": record.action,
            "subject_type": record.subject_type,
            "subject_id": record.subject_id,
            "details": record.details,
            "prev_hash": record.prev_hash,
            "record_hash": record.record_hash,
        }


def _all_records(session: Session) -> Iterator[AuditRecord]:
    after = 0
    while True:
        batch = list(
            session.exec(
                select(AuditRecord)
                .where(AuditRecord.seq > after)
                .order_by(col(AuditRecord.seq))
                .limit(_BATCH)
            )
        )
        yield from batch
        if len(batch) < _BATCH:
            return
        after = batch[-1].seq


def _chain_rows(
    session: Session, after: int, limit: int | None
) -> Iterator[tuple[_Fields, str, str]]:
    """The records after `after`, in order: what each hash covers, prev_hash, record_hash."""
    left = limit
    while left is None or left > 0:
        size = _BATCH if left is None else min(_BATCH, left)
        batch = session.execute(
            sa_select(
                col(AuditRecord.seq),
                col(AuditRecord.at),
                col(AuditRecord.actor),
                col(AuditRecord.action),
                col(AuditRecord.subject_type),
                col(AuditRecord.subject_id),
                col(AuditRecord.details),
                col(AuditRecord.prev_hash),
                col(AuditRecord.record_hash),
            )
            .where(col(AuditRecord.seq) > after)
            .order_by(col(AuditRecord.seq))
            .limit(size)
        ).all()
        for row in batch:
            yield _Fields._make(row[:7]), row[7], row[8]
        if len(batch) < size:
            return
        after = batch[-1][0]
        if left is not None:
            left -= size


def canonical_details(details: Mapping[str, Any]) -> str:
    """A record's details as canonical JSON text (sorted keys, no spaces), for display."""
    return json.dumps(details, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _canonical(fields: _Fields) -> bytes:
    canonical = {**fields._asdict(), "at": fields.at.astimezone(UTC).isoformat()}
    return json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _checked_details(details: Mapping[str, DetailValue]) -> dict[str, DetailValue]:
    # Floats and nested objects are refused: their JSON text may not survive a database round
    # trip byte for byte, and the hash must.
    clean: dict[str, DetailValue] = {}
    for key, value in details.items():
        if isinstance(value, list):
            if not all(isinstance(item, str) for item in value):
                raise ValueError(f"audit detail {key!r}: a list may hold strings only")
            clean[key] = list(value)
        elif value is None or isinstance(value, str | int | bool):
            clean[key] = value
        else:
            raise ValueError(f"audit detail {key!r}: {type(value).__name__} is not allowed")
    return clean
