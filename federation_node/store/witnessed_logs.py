"""Storage of this node as a witness: the checkpoint it last cosigned per log origin.

Promises: the only code that writes `witnessed_log`. Every function works inside the caller's
session; nothing here commits. `lock` serialises witness decisions across the node's replicas
sharing one PostgreSQL database (c2sp.org/tlog-witness: checking a submission against the
stored checkpoint and storing the new one are one step, or two concurrent submissions could
roll the stored size back); one process serialises them itself (tlog/node_witness.py).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import text
from sqlmodel import Session

from federation_node.store.db import is_postgres
from federation_node.store.models import WitnessedLog

# pg_advisory_xact_lock key of the witness's decisions (ASCII "cfwitnes").
WITNESS_LOCK_KEY = 0x63667769746E6573


def lock(session: Session) -> None:
    if is_postgres(session):
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": WITNESS_LOCK_KEY})


def latest(session: Session, origin: str) -> WitnessedLog | None:
    """The checkpoint this node last cosigned for `origin`, if any."""
    return session.get(WitnessedLog, origin)


def record_cosigned(
    session: Session, *, origin: str, tree_size: int, root_hash: bytes, note: bytes, at: datetime
) -> None:
    """Make this the last cosigned checkpoint of `origin`, replacing the previous one."""
    row = session.get(WitnessedLog, origin)
    if row is None:
        row = WitnessedLog(
            origin=origin, tree_size=tree_size, root_hash=root_hash, note=note, cosigned_at=at
        )
    else:
        row.tree_size = tree_size
        row.root_hash = root_hash
        row.note = note
        row.cosigned_at = at
    session.add(row)
    session.flush()
