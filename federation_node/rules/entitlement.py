"""Entitlement dates and amounts: plain functions over plain data, no I/O (docs/domain.md, Rules).

A beneficiary's entitlement moves through phases that follow from the end of their validity
(`valid_until`) and the region's `Policy`:

    active ──(lead days before the end)──▶ due ──(validity ends)──▶ warning
           ──(warning months later)──▶ suspended

and ends (terminated) on death, imprisonment or a declaration of missing, effective at the date
the evidence names. Months are calendar months (`dateutil.relativedelta`: 31 January plus one
month is 28 or 29 February; 29 February plus a year is 28 February). Payments are monthly: a
month is identified by its first day, and the pension for a month is withheld when a suspension
is in effect in that month. Money is integer fen.

What the lifecycle promises, and the tests check literally:

* deferred certification: an alive data signal moves validity to signal date + validity period,
  never backwards (validity ending in September, hospital stay on 23 June: validity now runs to
  next June);
* certified after a suspension: payment resumes the month after the certification, with back
  pay for every withheld month (suspended in July, certified in August: resumed in September
  with July and August paid back);
* death: payments for the months after the month of death, up to the month payment stopped,
  are an overpayment to recover;
* a closed month is never rewritten: an instruction decided after its month closed goes into
  the first open month (`first_open_month`), and a late certification's back pay runs up to
  that month (docs/policy.md, "Closed months").
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import TypeVar

from dateutil.relativedelta import relativedelta

from federation_node.rules.policy import Policy

When = TypeVar("When", date, datetime)


class EntitlementState(enum.StrEnum):
    ACTIVE = "active"
    DUE = "due"
    WARNING = "warning"
    SUSPENDED = "suspended"
    TERMINATED = "terminated"


# How far along the validity phases a state is; terminated is outside this order.
_PROGRESS = {
    EntitlementState.ACTIVE: 0,
    EntitlementState.DUE: 1,
    EntitlementState.WARNING: 2,
    EntitlementState.SUSPENDED: 3,
}


def add_months(when: When, months: int) -> When:
    """Calendar-month arithmetic; a day past the end of the target month becomes its last day.
    The time of day, for a datetime, stays."""
    day = _shifted(when.date() if isinstance(when, datetime) else when, months)
    return when.replace(year=day.year, month=day.month, day=day.day)


@lru_cache(maxsize=4096)
def _shifted(day: date, months: int) -> date:
    # Remembered: a feed batch adds the same policy months to signals of a few days, and
    # relativedelta's arithmetic costs ten times a lookup.
    shifted: date = day + relativedelta(months=months)
    return shifted


def month_start(day: date) -> date:
    return date(day.year, day.month, 1)


def months_from(start: date, end: date) -> int:
    """Whole calendar months from the month of `start` to the month of `end` (July → September
    is 2); negative when `end` is in an earlier month."""
    return (end.year - start.year) * 12 + end.month - start.month


def month_label(month: date) -> str:
    return f"{month.year:04d}-{month.month:02d}"


def parse_month(text: str) -> date:
    """A "YYYY-MM" month as its first day; ValueError for anything else."""
    if (
        len(text) != 7
        or text[4] != "-"
        or not (text[:4] + text[5:]).isdigit()
        or not 1 <= int(text[5:]) <= 12
    ):
        raise ValueError(f"{text!r} is not a month in the form YYYY-MM")
    return date(int(text[:4]), int(text[5:]), 1)


@dataclass(frozen=True)
class Phases:
    """When each phase begins for a given end of validity."""

    due_from: datetime
    expires_at: datetime
    suspended_from: datetime

    def on(self, moment: datetime) -> EntitlementState:
        """The phase at `moment` (terminations are not a matter of dates)."""
        if moment < self.due_from:
            return EntitlementState.ACTIVE
        if moment < self.expires_at:
            return EntitlementState.DUE
        if moment < self.suspended_from:
            return EntitlementState.WARNING
        return EntitlementState.SUSPENDED

    def start_of(self, state: EntitlementState) -> datetime | None:
        """When the phase `state` begins (None for active, which begins at certification)."""
        return {
            EntitlementState.DUE: self.due_from,
            EntitlementState.WARNING: self.expires_at,
            EntitlementState.SUSPENDED: self.suspended_from,
        }.get(state)


def phases(valid_until: datetime, policy: Policy) -> Phases:
    return Phases(
        due_from=valid_until - timedelta(days=policy.assistance_lead_days),
        expires_at=valid_until,
        suspended_from=add_months(valid_until, policy.warning_months),
    )


def advance(stored: EntitlementState, phase: EntitlementState) -> EntitlementState | None:
    """The state the daily cycle moves a beneficiary to, or None when it stays.

    The cycle only moves forward: a certification moves a beneficiary back to active when it is
    applied, never the cycle. Terminated beneficiaries stay terminated.
    """
    if stored is EntitlementState.TERMINATED or phase is EntitlementState.TERMINATED:
        return None
    return phase if _PROGRESS[phase] > _PROGRESS[stored] else None


def extended_validity(
    current: datetime | None, observed_at: datetime, policy: Policy
) -> datetime | None:
    """The new end of validity after an alive signal or certification observed at `observed_at`,
    or None when it would not move validity forward (deferred certification, docs/domain.md)."""
    candidate = add_months(observed_at, policy.validity_months)
    if current is not None and candidate <= current:
        return None
    return candidate


@dataclass(frozen=True)
class Resumption:
    effective_month: date
    back_pay_months: int
    back_pay_fen: int


def resumption(
    withheld_from: date,
    certified_on: date,
    monthly_amount_fen: int,
    policy: Policy,
    *,
    not_before: date | None = None,
) -> Resumption:
    """Payment after a certification ends a suspension whose first withheld month is
    `withheld_from`: it resumes `resume_after_months` after the month of the certification (and
    never before the month after the first withheld one, so a certification dated before the
    suspension was noticed still pays back what was withheld, nor before `not_before`, the first
    month still open, so a certification recorded late never rewrites a closed month); back pay
    covers every month from the first withheld one up to the one payment resumes in."""
    first_withheld = month_start(withheld_from)
    effective = max(
        add_months(month_start(certified_on), policy.resume_after_months),
        add_months(first_withheld, 1),
    )
    if not_before is not None:
        effective = max(effective, month_start(not_before))
    months = months_from(first_withheld, effective) if policy.back_pay else 0
    return Resumption(effective, months, months * monthly_amount_fen)


def first_open_month(
    latest_cycle_day: date | None, latest_closed_month: date | None
) -> date | None:
    """The first month whose payment instructions may still change, None when every month is.

    Closed are the months before the month of the latest day the daily cycle ran for (the
    office's calendar has moved past them: their pensions are paid) and every month up to the
    latest one whose bank file was exported.
    """
    candidates = []
    if latest_cycle_day is not None:
        candidates.append(month_start(latest_cycle_day))
    if latest_closed_month is not None:
        candidates.append(add_months(month_start(latest_closed_month), 1))
    return max(candidates, default=None)


@dataclass(frozen=True)
class Overpayment:
    months: int
    amount_fen: int


def overpayment(
    ended_on: date, payments_stopped_from: date, monthly_amount_fen: int
) -> Overpayment:
    """Pension paid for months after entitlement ended: every month after the month of death
    (or other end) before the first month payment was stopped for, counted to the month."""
    first_unentitled = add_months(month_start(ended_on), 1)
    months = max(0, months_from(first_unentitled, month_start(payments_stopped_from)))
    return Overpayment(months, months * monthly_amount_fen)


def reminder_offset(day: date, expires_on: date, schedule: tuple[int, ...]) -> int | None:
    """The latest scheduled offset (days from the end of validity) reached on `day`.

    Only the latest one: a cycle that did not run for a while sends one reminder, not a burst.
    """
    reached = [offset for offset in schedule if expires_on + timedelta(days=offset) <= day]
    return max(reached) if reached else None


class ReminderKind(enum.StrEnum):
    DUE = "due"
    WARNING = "warning"
    OVERDUE = "overdue"


def reminder_kind(offset: int, valid_until: datetime, policy: Policy) -> ReminderKind:
    """Before the end of validity a reminder says "due"; during the warning period "warning";
    once payment is suspended "overdue"."""
    if offset < 0:
        return ReminderKind.DUE
    when = valid_until + timedelta(days=offset)
    if when < phases(valid_until, policy).suspended_from:
        return ReminderKind.WARNING
    return ReminderKind.OVERDUE


def reported_late(ended_on: date, reported_on: date, window_days: int) -> bool:
    """Whether an end of entitlement reached the office after its report window."""
    return (reported_on - ended_on).days > window_days
