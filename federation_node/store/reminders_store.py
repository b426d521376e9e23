"""Reminders and overdue notices waiting for a notifier, and their acknowledgement.

One reminder per beneficiary, end of validity and schedule offset (unique in the database), so
the daily cycle can run any number of times and queue each reminder once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlmodel import Session, col, select

from federation_node.ids import new_id
from federation_node.rules.entitlement import ReminderKind
from federation_node.store.db import keyset_page
from federation_node.store.models import Reminder

ReminderKey = tuple[str, datetime, int]


def queued_for(session: Session, beneficiary_ids: Sequence[str]) -> set[ReminderKey]:
    """(beneficiary, end of validity, offset) of every reminder already queued for them."""
    keys: set[ReminderKey] = set()
    for start in range(0, len(beneficiary_ids), 500):
        rows = session.exec(
            select(Reminder.beneficiary_id, Reminder.expires_at, Reminder.offset_days).where(
                col(Reminder.beneficiary_id).in_(list(beneficiary_ids[start : start + 500]))
            )
        )
        keys.update((row[0], row[1], row[2]) for row in rows)
    return keys


def queue(
    session: Session,
    *,
    beneficiary_id: str,
    kind: ReminderKind,
    expires_at: datetime,
    offset_days: int,
    now: datetime,
) -> Reminder:
    reminder = Reminder(
        reminder_id=new_id(),
        beneficiary_id=beneficiary_id,
        kind=kind,
        expires_at=expires_at,
        offset_days=offset_days,
        acknowledged=False,
        acknowledged_at=None,
        created_at=now,
    )
    session.add(reminder)
    return reminder


def waiting(session: Session, page_size: int, page_token: str = "") -> tuple[list[Reminder], str]:
    """Reminders not yet acknowledged, oldest first, one page at a time."""
    return keyset_page(
        session,
        select(Reminder).where(col(Reminder.acknowledged).is_(False)),
        key=col(Reminder.reminder_id),
        key_of=lambda row: row.reminder_id,
        page_size=page_size,
        page_token=page_token,
    )


def acknowledge(session: Session, reminder_ids: Sequence[str], now: datetime) -> int:
    """Mark reminders as sent; returns how many were waiting (a repeat acknowledges none)."""
    rows = session.exec(
        select(Reminder).where(
            col(Reminder.reminder_id).in_(list(reminder_ids)),
            col(Reminder.acknowledged).is_(False),
        )
    ).all()
    for row in rows:
        row.acknowledged = True
        row.acknowledged_at = now
        session.add(row)
    return len(rows)
