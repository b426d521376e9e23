"""Storage of the registry's audit trail: who approved, suspended, reinstated or revoked which
node, when, and which node applied.

Promises: the only code that writes `audit_event`; events are only ever added, in the same
transaction as the change they record, so a change without its record cannot commit.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, select

from registry.tables import AuditEvent


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    node_id: str,
    at: datetime,
    detail: str = "",
    effective_at: datetime | None = None,
    directory_version: int | None = None,
) -> AuditEvent:
    event = AuditEvent(
        at=at,
        actor=actor,
        action=action,
        node_id=node_id,
        detail=detail,
        effective_at=effective_at,
        directory_version=directory_version,
    )
    session.add(event)
    session.flush()
    return event


def events_for(session: Session, node_id: str) -> list[AuditEvent]:
    return list(
        session.exec(
            select(AuditEvent).where(AuditEvent.node_id == node_id).order_by(col(AuditEvent.id))
        ).all()
    )


def latest_at(session: Session, node_id: str, action: str) -> datetime | None:
    """When `action` was last recorded for the node, if ever."""
    event = session.exec(
        select(AuditEvent)
        .where(AuditEvent.node_id == node_id, AuditEvent.action == action)
        .order_by(col(AuditEvent.id).desc())
        .limit(1)
    ).first()
    return event.at if event is not None else None
