"""Closed months (docs/policy.md): the first open month, and a late certification's resumption
in it with back pay for every withheld month up to it."""

from __future__ import annotations

from datetime import date

from hypothesis import given
from hypothesis import strategies as st

from federation_node.rules.entitlement import (
    add_months,
    first_open_month,
    months_from,
    resumption,
)
from federation_node.rules.policy import Policy

POLICY = Policy()


def test_nothing_is_closed_before_the_first_cycle_or_export() -> None:
    assert first_open_month(None, None) is None


def test_the_calendar_closes_the_months_before_the_latest_cycle_and_an_export_its_month() -> None:
    assert first_open_month(date(2026, 12, 3), None) == date(2026, 12, 1)
    assert first_open_month(date(2026, 12, 3), date(2026, 12, 1)) == date(2027, 1, 1)
    assert first_open_month(date(2026, 12, 3), date(2026, 9, 1)) == date(2026, 12, 1)
    assert first_open_month(None, date(2026, 9, 1)) == date(2026, 10, 1)


def test_the_issue_example_resumes_in_december_with_july_to_november_paid_back() -> None:
    # Suspended since July, seen alive on 20 August, recorded on 3 December.
    resumed = resumption(
        date(2026, 7, 1), date(2026, 8, 20), 250_000, POLICY, not_before=date(2026, 12, 1)
    )
    assert resumed.effective_month == date(2026, 12, 1)
    assert (resumed.back_pay_months, resumed.back_pay_fen) == (5, 5 * 250_000)


def test_a_certification_in_time_is_not_moved() -> None:
    resumed = resumption(
        date(2025, 7, 1), date(2025, 8, 14), 250_000, POLICY, not_before=date(2025, 8, 1)
    )
    assert resumed.effective_month == date(2025, 9, 1)
    assert resumed.back_pay_months == 2


@given(
    withheld=st.dates(date(2020, 1, 1), date(2030, 1, 1)),
    late=st.integers(min_value=0, max_value=40),
    gap=st.integers(min_value=0, max_value=40),
)
def test_payment_resumes_in_an_open_month_and_every_withheld_month_is_paid_back(
    withheld: date, late: int, gap: int
) -> None:
    first_withheld = date(withheld.year, withheld.month, 1)
    certified = add_months(first_withheld, late)
    first_open = add_months(first_withheld, gap)
    resumed = resumption(first_withheld, certified, 1_000, POLICY, not_before=first_open)
    assert resumed.effective_month >= first_open
    assert resumed.effective_month > first_withheld
    assert resumed.back_pay_months == months_from(first_withheld, resumed.effective_month)
    assert resumed.back_pay_fen == resumed.back_pay_months * 1_000
