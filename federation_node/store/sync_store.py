"""Other nodes' log entries that this node verified, and how far it has verified each log.

Promises: entries are stored only together with the new verified head of their log, in one
transaction, so what is stored is exactly a verified prefix of the origin's log and an
interrupted sync resumes from the last stored head. A step must start where the stored head
ends: two syncs of one log at once cannot interleave (the head row is locked; on SQLite
BEGIN IMMEDIATE serialises them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, func, select

from federation.errors import PreconditionError
from federation_node.store.bulk_insert import insert_rows
from federation_node.store.log_store import join_state, split_state
from federation_node.store.models import SyncedEntry, SyncedLog

SyncedRow = tuple[str, int, bytes, str]


@dataclass(frozen=True)
class VerifiedHead:
    """A verified prefix of an origin's log: its size, root, compact state and checkpoint."""

    tree_size: int
    root_hash: bytes
    state: tuple[bytes, ...]
    checkpoint_note: bytes


class ConcurrentSyncError(PreconditionError):
    """Another sync of the same log stored entries first."""


def head(session: Session, origin_node_id: str) -> VerifiedHead | None:
    row = session.get(SyncedLog, origin_node_id)
    if row is None:
        return None
    return VerifiedHead(
        row.tree_size, row.root_hash, tuple(split_state(row.compact_state)), row.checkpoint_note
    )


def store_step(
    session: Session,
    origin_node_id: str,
    start: int,
    rows: Sequence[SyncedRow],
    verified: VerifiedHead,
    now: datetime,
) -> None:
    """Store verified entries [start, verified.tree_size) of a log and its new verified head."""
    row = session.exec(
        select(SyncedLog)
        .where(SyncedLog.origin_node_id == origin_node_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()
    stored_size = 0 if row is None else row.tree_size
    if stored_size != start:
        raise ConcurrentSyncError(
            f"the log of {origin_node_id} is verified up to {stored_size} here, not {start}: "
            "another sync stored entries meanwhile; sync again"
        )
    if len(rows) != verified.tree_size - start:
        raise ValueError("a step stores exactly the entries between the two verified sizes")
    insert_rows(
        session,
        SyncedEntry.__table__,  # type: ignore[attr-defined]
        ("origin_node_id", "leaf_index", "envelope_json", "paying_region"),
        rows,
    )
    if row is None:
        row = SyncedLog(
            origin_node_id=origin_node_id,
            tree_size=0,
            root_hash=b"",
            compact_state=b"",
            checkpoint_note=b"",
            updated_at=now,
        )
    row.tree_size = verified.tree_size
    row.root_hash = verified.root_hash
    row.compact_state = join_state(verified.state)
    row.checkpoint_note = verified.checkpoint_note
    row.updated_at = now
    session.add(row)
    session.flush()


def record_checkpoint(
    session: Session, origin_node_id: str, verified: VerifiedHead, now: datetime
) -> None:
    """Keep a newer checkpoint note of the same size (a fresher cosignature), nothing else."""
    row = session.get(SyncedLog, origin_node_id)
    if row is not None and row.tree_size == verified.tree_size:
        row.checkpoint_note = verified.checkpoint_note
        row.updated_at = now
        session.add(row)


def count(session: Session, origin_node_id: str) -> int:
    total = session.exec(
        select(func.count())
        .select_from(SyncedEntry)
        .where(SyncedEntry.origin_node_id == origin_node_id)
    ).one()
    return int(total)


def entries(session: Session, origin_node_id: str, start: int, end: int) -> list[SyncedEntry]:
    return list(
        session.exec(
            select(SyncedEntry)
            .where(
                SyncedEntry.origin_node_id == origin_node_id,
                col(SyncedEntry.leaf_index) >= start,
                col(SyncedEntry.leaf_index) < end,
            )
            .order_by(col(SyncedEntry.leaf_index))
        )
    )


def verified_logs(session: Session) -> list[SyncedLog]:
    """How far each followed log is verified (for monitoring)."""
    return list(session.exec(select(SyncedLog).order_by(col(SyncedLog.origin_node_id))).all())
