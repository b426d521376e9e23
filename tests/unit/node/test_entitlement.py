"""Entitlement dates and amounts: docs/domain.md's examples literally, and properties of the month
arithmetic over the whole calendar (month ends, 29 February, chains of certifications)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from federation_node.rules.entitlement import (
    EntitlementState,
    ReminderKind,
    add_months,
    advance,
    extended_validity,
    month_label,
    month_start,
    months_from,
    overpayment,
    parse_month,
    phases,
    reminder_kind,
    reminder_offset,
    reported_late,
    resumption,
)
from federation_node.rules.policy import Policy

POLICY = Policy()
days = st.dates(min_value=date(1990, 1, 1), max_value=date(2090, 12, 31))
months = st.integers(min_value=-600, max_value=600)
amounts = st.integers(min_value=0, max_value=10_000_000)


def at(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


# docs/domain.md, literally.


def test_hospital_stay_inside_validity_defers_certification_to_next_june() -> None:
    # "period ends in September, hospital stay on 23 June, validity now runs to next June"
    valid_until = at(date(2025, 9, 30))
    extended = extended_validity(valid_until, at(date(2025, 6, 23)), POLICY)
    assert extended == at(date(2026, 6, 23))


def test_suspended_in_july_certified_in_august_resumes_in_september_with_two_months_back() -> None:
    # Certified on 1 April 2024: validity to 1 April 2025, warning to 1 July 2025.
    valid_until = at(date(2025, 4, 1))
    timeline = phases(valid_until, POLICY)
    assert timeline.on(at(date(2025, 6, 30))) is EntitlementState.WARNING
    assert timeline.on(at(date(2025, 7, 1))) is EntitlementState.SUSPENDED
    withheld_from = month_start(timeline.suspended_from.date())
    assert month_label(withheld_from) == "2025-07"
    resumed = resumption(withheld_from, date(2025, 8, 14), 250_000, POLICY)
    assert month_label(resumed.effective_month) == "2025-09"
    assert resumed.back_pay_months == 2  # July and August
    assert resumed.back_pay_fen == 500_000


def test_payments_after_the_month_of_death_are_an_overpayment() -> None:
    # Died 10 March; payment stopped from May: April was paid and must be recovered.
    owed = overpayment(date(2025, 3, 10), date(2025, 5, 1), 300_000)
    assert (owed.months, owed.amount_fen) == (1, 300_000)


def test_death_reported_before_the_next_month_leaves_nothing_to_recover() -> None:
    assert overpayment(date(2025, 3, 31), date(2025, 4, 1), 300_000).months == 0
    assert overpayment(date(2025, 3, 10), date(2025, 3, 1), 300_000).months == 0


# Month arithmetic.


def test_month_ends_and_29_february() -> None:
    assert add_months(date(2025, 1, 31), 1) == date(2025, 2, 28)
    assert add_months(date(2024, 1, 31), 1) == date(2024, 2, 29)
    assert add_months(date(2024, 2, 29), 12) == date(2025, 2, 28)
    assert add_months(date(2024, 2, 29), 48) == date(2028, 2, 29)
    assert extended_validity(None, at(date(2024, 2, 29)), POLICY) == at(date(2025, 2, 28))


@given(days, months)
def test_adding_months_lands_in_the_right_month_on_the_same_or_last_day(
    day: date, count: int
) -> None:
    moved = add_months(day, count)
    assert months_from(day, moved) == count
    assert moved.day <= day.day
    if moved.day < day.day:
        # Clamped: the target month has no such day, so it is the month's last day.
        assert (moved + timedelta(days=1)).day == 1


@given(days, st.times(), months)
def test_adding_months_to_a_moment_keeps_its_time_of_day_and_zone(
    day: date, time_of_day: time, count: int
) -> None:
    moment = datetime.combine(day, time_of_day, UTC)
    moved = add_months(moment, count)
    assert moved.date() == add_months(day, count)
    assert moved.timetz() == moment.timetz()


@given(days)
def test_month_start_and_label_round_trip(day: date) -> None:
    assert parse_month(month_label(day)) == month_start(day)


@pytest.mark.parametrize("text", ["2025-7", "2025/07", "202507", "2025-13", "abcd-ef", ""])
def test_a_malformed_month_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="YYYY-MM"):
        parse_month(text)


@given(st.lists(days, min_size=1, max_size=20), st.one_of(st.none(), days))
def test_a_validity_chain_ends_a_period_after_the_latest_signal_and_never_moves_back(
    signals: list[date], start: date | None
) -> None:
    valid_until = at(start) if start else None
    for day in signals:
        extended = extended_validity(valid_until, at(day), POLICY)
        if extended is not None:
            assert valid_until is None or extended > valid_until
            valid_until = extended
    latest = add_months(at(max(signals)), POLICY.validity_months)
    expected = latest if start is None else max(latest, at(start))
    assert valid_until == expected


@given(days, st.integers(min_value=0, max_value=800))
def test_phases_only_move_forward_with_time(end: date, step: int) -> None:
    timeline = phases(at(end), POLICY)
    order = list(EntitlementState)
    probe = at(end) - timedelta(days=POLICY.assistance_lead_days + 400)
    seen = [timeline.on(probe + timedelta(days=step * k)) for k in range(40)]
    assert [order.index(s) for s in seen] == sorted(order.index(s) for s in seen)


def test_the_cycle_moves_only_forward_and_never_out_of_termination() -> None:
    assert advance(EntitlementState.ACTIVE, EntitlementState.WARNING) is EntitlementState.WARNING
    assert advance(EntitlementState.WARNING, EntitlementState.DUE) is None
    assert advance(EntitlementState.TERMINATED, EntitlementState.SUSPENDED) is None


@given(days, st.integers(min_value=0, max_value=48), amounts)
def test_back_pay_covers_exactly_the_withheld_months(
    withheld: date, months_later: int, amount: int
) -> None:
    certified = add_months(withheld, months_later)
    resumed = resumption(month_start(withheld), certified, amount, POLICY)
    assert resumed.effective_month == add_months(month_start(certified), 1)
    # Withheld: every month from the first withheld one to the month before resumption.
    assert resumed.back_pay_months == months_later + 1
    assert resumed.back_pay_fen == resumed.back_pay_months * amount


@given(days, days, amounts)
def test_a_certification_dated_before_the_suspension_still_pays_back_the_withheld_month(
    withheld: date, certified: date, amount: int
) -> None:
    resumed = resumption(month_start(withheld), certified, amount, POLICY)
    assert resumed.back_pay_months >= 1
    assert resumed.effective_month > month_start(withheld)


def test_without_back_pay_payment_resumes_but_nothing_is_paid_back() -> None:
    policy = Policy(back_pay=False)
    resumed = resumption(date(2025, 7, 1), date(2025, 8, 14), 250_000, policy)
    assert (month_label(resumed.effective_month), resumed.back_pay_fen) == ("2025-09", 0)


@given(days, days, amounts)
def test_overpayment_counts_the_paid_months_after_the_month_of_death(
    died: date, stopped: date, amount: int
) -> None:
    owed = overpayment(died, stopped, amount)
    paid_after = 0
    month = add_months(month_start(died), 1)
    while month < month_start(stopped):
        paid_after += 1
        month = add_months(month, 1)
    assert owed.months == paid_after
    assert owed.amount_fen == paid_after * amount


# Reminders and report windows.


def test_reminders_follow_the_schedule_one_at_a_time() -> None:
    expires = date(2025, 9, 30)
    schedule = POLICY.reminder_days
    assert reminder_offset(date(2025, 8, 30), expires, schedule) is None
    assert reminder_offset(date(2025, 8, 31), expires, schedule) == -30
    assert reminder_offset(date(2025, 9, 29), expires, schedule) == -7
    # A cycle that did not run for months queues only the latest reminder.
    assert reminder_offset(date(2026, 3, 1), expires, schedule) == 60


def test_reminder_kinds_follow_the_phases() -> None:
    valid_until = at(date(2025, 9, 30))
    assert reminder_kind(-7, valid_until, POLICY) is ReminderKind.DUE
    assert reminder_kind(60, valid_until, POLICY) is ReminderKind.WARNING
    assert reminder_kind(120, valid_until, POLICY) is ReminderKind.OVERDUE


def test_a_death_reported_after_the_window_is_late() -> None:
    assert not reported_late(date(2025, 3, 1), date(2025, 3, 8), POLICY.family_report_days)
    assert reported_late(date(2025, 3, 1), date(2025, 3, 9), POLICY.family_report_days)
    assert reported_late(date(2025, 3, 1), date(2025, 3, 5), POLICY.unit_report_days)
