"""How long each reporter has to report a death: the family `deaths.family_report_days` (7 by
default), the work unit or the village committee `deaths.unit_report_days` (3), counted in days
from the date of death to the day the office learns of it (docs/life_events.md)."""

from __future__ import annotations

import enum
from datetime import datetime

from federation_node.rules.entitlement import reported_late
from federation_node.rules.policy import Policy


class DeathReporter(enum.StrEnum):
    FAMILY = "family"
    UNIT = "unit"
    VILLAGE = "village"


def window_days(reporter: DeathReporter, policy: Policy) -> int:
    if reporter is DeathReporter.FAMILY:
        return policy.family_report_days
    return policy.unit_report_days


def days_taken(died_at: datetime, reported_at: datetime) -> int:
    return max(0, (reported_at.date() - died_at.date()).days)


def late(reporter: DeathReporter, died_at: datetime, reported_at: datetime, policy: Policy) -> bool:
    return reported_late(died_at.date(), reported_at.date(), window_days(reporter, policy))
