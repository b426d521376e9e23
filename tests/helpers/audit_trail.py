"""A node's audit records as a test reads them from its database while the node runs."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from federation_node.store import audit
from federation_node.store.models import AuditRecord


def chained_records(engine: Engine, *criteria: Any) -> list[AuditRecord]:
    """The records matching `criteria`, in chain order, once every queued record is chained.

    Chaining first, under the sequencer's own lock, puts every committed record in one table:
    reading the queue and the chain one after the other could miss a record the node's sequencer
    moved between the two reads.
    """
    audit.flush(engine)
    with Session(engine, expire_on_commit=False) as session:
        return list(
            session.exec(select(AuditRecord).where(*criteria).order_by(col(AuditRecord.seq)))
        )
