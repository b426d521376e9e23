"""Storage of the witness aggregate: the last cosigned checkpoint per log, and recorded forks.

Promises: the only code that writes the `witnessed_checkpoint` and `witness_fork` tables. Every
function works inside the caller's session; nothing here commits. `lock` serialises witness
decisions across registry replicas sharing one PostgreSQL database, so checking a submission
against the stored checkpoint and storing the new one happen as one step (c2sp.org/tlog-witness
asks for exactly that: otherwise two concurrent submissions could roll the stored size back).
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, func, select

from registry.db import advisory_lock
from registry.tables import WitnessedCheckpoint, WitnessFork

WITNESS_LOCK_KEY = 0x6365727466656403


def lock(session: Session) -> None:
    advisory_lock(session, WITNESS_LOCK_KEY)


def latest(session: Session, origin: str) -> WitnessedCheckpoint | None:
    """The checkpoint last cosigned for `origin`, if any."""
    return session.get(WitnessedCheckpoint, origin)


def record_cosigned(
    session: Session,
    *,
    origin: str,
    tree_size: int,
    root_hash: bytes,
    note: bytes,
    at: datetime,
) -> WitnessedCheckpoint:
    """Make this the last cosigned checkpoint of `origin`, replacing the previous one."""
    row = session.get(WitnessedCheckpoint, origin)
    if row is None:
        row = WitnessedCheckpoint(
            origin=origin, tree_size=tree_size, root_hash=root_hash, note=note, cosigned_at=at
        )
    else:
        row.tree_size = tree_size
        row.root_hash = root_hash
        row.note = note
        row.cosigned_at = at
    session.add(row)
    session.flush()
    return row


def record_fork(
    session: Session,
    *,
    node_id: str,
    origin: str,
    reason: str,
    cosigned_note: bytes,
    offered_note: bytes,
    at: datetime,
) -> WitnessFork:
    fork = WitnessFork(
        node_id=node_id,
        origin=origin,
        detected_at=at,
        reason=reason,
        cosigned_note=cosigned_note,
        offered_note=offered_note,
    )
    session.add(fork)
    session.flush()
    return fork


def forks(session: Session) -> list[WitnessFork]:
    """Every recorded fork, oldest first."""
    return list(
        session.exec(
            select(WitnessFork).order_by(col(WitnessFork.detected_at), col(WitnessFork.id))
        ).all()
    )


def forks_by_node(session: Session) -> dict[str, tuple[int, datetime]]:
    """For each node with a recorded fork: how many, and when the latest was detected."""
    rows = session.exec(
        select(WitnessFork.node_id, func.count(), func.max(WitnessFork.detected_at)).group_by(
            col(WitnessFork.node_id)
        )
    ).all()
    return {str(node_id): (int(count), latest) for node_id, count, latest in rows}
