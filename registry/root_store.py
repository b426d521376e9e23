"""Storage of the registry root key's rotations: the signed RootStatements, oldest first.

Promises: the only code that writes `root_statement`. Statements are only ever added, numbered
one above the latest (the federation's first root is version 1 and has no statement), in the
transaction that publishes the first directory signed by the new root.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session, col, select

from federation.root_chain import FIRST_VERSION
from registry.tables import RootStatementRecord
from signing import dsse


def latest(session: Session) -> RootStatementRecord | None:
    return session.exec(
        select(RootStatementRecord).order_by(col(RootStatementRecord.version).desc()).limit(1)
    ).first()


def latest_version(session: Session) -> int:
    """The current root's version: FIRST_VERSION until the first rotation."""
    value = session.exec(select(sa.func.max(col(RootStatementRecord.version)))).one()
    return int(value) if value is not None else FIRST_VERSION


def add(
    session: Session,
    *,
    version: int,
    key_id: str,
    previous_key_id: str,
    envelope: dsse.Envelope,
    issued_at: datetime,
) -> RootStatementRecord:
    record = RootStatementRecord(
        version=version,
        key_id=key_id,
        previous_key_id=previous_key_id,
        envelope_json=envelope.to_json(),
        issued_at=issued_at,
    )
    session.add(record)
    session.flush()
    return record


def since(session: Session, known_key_id: str) -> list[dsse.Envelope]:
    """The statements after the one that introduced `known_key_id`; all of them when no
    statement introduced it (the first root, or a key this registry does not know)."""
    records = list(
        session.exec(select(RootStatementRecord).order_by(col(RootStatementRecord.version))).all()
    )
    for index, record in enumerate(records):
        if record.key_id == known_key_id:
            records = records[index + 1 :]
            break
    return [
        dsse.Envelope.from_json(record.envelope_json, max_bytes=len(record.envelope_json))
        for record in records
    ]
