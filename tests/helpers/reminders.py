"""A node's reminder list as `run_notifications` sees it (ListReminders and
AcknowledgeReminders), and reminders to fill it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from certfed.v1 import desk_pb2
from federation.timestamps import to_timestamp


def reminder(
    reminder_id: str, kind: int = desk_pb2.REMINDER_KIND_DUE, phone: str = "13800138000"
) -> desk_pb2.Reminder:
    return desk_pb2.Reminder(
        reminder_id=reminder_id,
        beneficiary_id="b-1",
        kind=kind,  # type: ignore[arg-type]
        phone=phone,
        valid_until=to_timestamp(datetime(2025, 9, 30, tzinfo=UTC)),
    )


class Reminders:
    """A reminder list with acknowledgement, as ListReminders / AcknowledgeReminders behave."""

    def __init__(self, reminders: Sequence[desk_pb2.Reminder]) -> None:
        self.open = {r.reminder_id: r for r in reminders}
        self.acknowledged: list[list[str]] = []

    def pending(self, page_size: int) -> Sequence[desk_pb2.Reminder]:
        return list(self.open.values())[:page_size]

    def acknowledge(self, reminder_ids: Sequence[str]) -> int:
        self.acknowledged.append(list(reminder_ids))
        for reminder_id in reminder_ids:
            del self.open[reminder_id]
        return len(reminder_ids)
