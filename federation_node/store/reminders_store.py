"""Reminders and overdue notices waiting for a notifier, and their acknowledgement.

One reminder per beneficiary, end of validity and schedule offset (unique in the database), so
the daily cycle can run any number of times and queue each reminder once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Boolean, Column, Integer, Row, String, bindparam, text, update
from sqlalchemy import select as sa_select
from sqlalchemy.orm import Mapped
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import ScalarSelect
from sqlmodel import Session, col, select

from federation_node.ids import new_id
from federation_node.rules.entitlement import ReminderKind
from federation_node.store.db import keyset_rows
from federation_node.store.models import (
    ID_LENGTH,
    Beneficiary,
    Reminder,
    StrEnumType,
    UtcDateTime,
)
from federation_node.store.staging import fill, staging_table

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


def queued_offset(
    beneficiary_id: Mapped[str],
    expires_at: ColumnElement[Any],
    offset_days: ColumnElement[Any],
) -> ScalarSelect[Any]:
    """For a query over beneficiaries: `offset_days` when that reminder was queued already for
    the person and end of validity, else NULL (one probe of the reminders' unique key)."""
    return (
        select(col(Reminder.offset_days))
        .where(
            col(Reminder.beneficiary_id) == beneficiary_id,
            col(Reminder.expires_at) == expires_at,
            col(Reminder.offset_days) == offset_days,
        )
        .scalar_subquery()
    )


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


_NEW_REMINDERS = staging_table(
    "cycle_reminder",
    Column("beneficiary_id", String(ID_LENGTH)),
    Column("reminder_id", String(ID_LENGTH)),
    Column("kind", StrEnumType(ReminderKind)),
    Column("expires_at", UtcDateTime()),
    Column("offset_days", Integer()),
)


def queue_many(
    session: Session,
    reminders: Sequence[tuple[str, str, ReminderKind, datetime, int]],
    now: datetime,
) -> int:
    """`queue` for many reminders at once, (beneficiary id, new reminder id, kind, end of
    validity, offset) each, but only those not queued before; returns how many were queued."""
    if not reminders:
        return 0
    fill(session, _NEW_REMINDERS, reminders)
    queued = session.execute(
        text(
            "INSERT INTO reminder (reminder_id, beneficiary_id, kind, expires_at, offset_days, "
            "acknowledged, acknowledged_at, created_at) "
            "SELECT r.reminder_id, r.beneficiary_id, r.kind, r.expires_at, r.offset_days, "
            ":acknowledged, NULL, :now FROM cycle_reminder AS r WHERE true "
            "ON CONFLICT DO NOTHING"
        ).bindparams(
            bindparam("now", now, type_=UtcDateTime()),
            bindparam("acknowledged", False, type_=Boolean()),
        )
    )
    return int(queued.rowcount)  # type: ignore[attr-defined]


class WaitingReminder(NamedTuple):
    """A reminder waiting for a notifier, with what it takes to find the person's phone."""

    reminder_id: str
    beneficiary_id: str
    kind: ReminderKind
    created_at: datetime
    expires_at: datetime
    # The person's sealed identity and the locator it is bound to.
    sealed_identity: bytes
    subject_locator: bytes


_WAITING = (
    sa_select(
        *(getattr(Reminder, name) for name in WaitingReminder._fields[:5]),
        col(Beneficiary.sealed_identity),
        col(Beneficiary.subject_locator),
    )
    .join(Beneficiary, col(Beneficiary.beneficiary_id) == col(Reminder.beneficiary_id))
    .where(col(Reminder.acknowledged).is_(False))
)


def waiting(
    session: Session, page_size: int, page_token: str = ""
) -> tuple[list[WaitingReminder], str]:
    """Reminders not yet acknowledged, oldest first, one page at a time, each read with its
    person's sealed identity in the same statement (not one look-up per person)."""
    rows: list[Row[Any]]
    rows, token = keyset_rows(
        session,
        _WAITING,
        key=col(Reminder.reminder_id),
        key_of=lambda row: str(row[0]),
        page_size=page_size,
        page_token=page_token,
    )
    return [WaitingReminder._make(row) for row in rows], token


def acknowledge(session: Session, reminder_ids: Sequence[str], now: datetime) -> int:
    """Mark reminders as sent; returns how many were waiting (a repeat acknowledges none)."""
    result = session.execute(
        update(Reminder)
        .where(
            col(Reminder.reminder_id).in_(list(reminder_ids)),
            col(Reminder.acknowledged).is_(False),
        )
        .values(acknowledged=True, acknowledged_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
