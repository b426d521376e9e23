"""Restoring an entitlement after release from prison or reappearance: from which month, and
with which back pay, by the region's policy (rules/restoration.py)."""

from __future__ import annotations

from datetime import date

import pytest

from federation.errors import InvalidInputError
from federation_node.rules.policy import Policy, policy_from_mapping
from federation_node.rules.restoration import Return, restoration

MONTHLY = 300_000


def test_a_release_resumes_the_month_after_without_back_pay_by_default() -> None:
    # Imprisoned from March (payment stopped in April), released on 10 September.
    restored = restoration(Return.RELEASE, date(2025, 9, 10), date(2025, 4, 1), MONTHLY, Policy())
    assert restored.effective_month == date(2025, 10, 1)
    assert (restored.back_pay_months, restored.back_pay_fen) == (0, 0)


def test_a_reappearance_resumes_the_month_after_with_every_stopped_month_paid_back() -> None:
    restored = restoration(
        Return.REAPPEARANCE, date(2025, 9, 10), date(2025, 4, 1), MONTHLY, Policy()
    )
    assert restored.effective_month == date(2025, 10, 1)
    # April to September.
    assert (restored.back_pay_months, restored.back_pay_fen) == (6, 6 * MONTHLY)


def test_the_policy_says_from_which_month_and_whether_back_pay_is_due() -> None:
    policy = policy_from_mapping(
        {"restoration": {"release_resume_after_months": 0, "release_back_pay": True}}
    )
    restored = restoration(Return.RELEASE, date(2025, 9, 10), date(2025, 4, 1), MONTHLY, policy)
    assert restored.effective_month == date(2025, 9, 1)
    assert restored.back_pay_months == 5


def test_a_late_restoration_pays_back_the_entitled_months_a_closed_month_cannot_take() -> None:
    # Released in September, recorded when November is the first open month: October was owed.
    restored = restoration(
        Return.RELEASE,
        date(2025, 9, 10),
        date(2025, 4, 1),
        MONTHLY,
        Policy(),
        not_before=date(2025, 11, 1),
    )
    assert restored.effective_month == date(2025, 11, 1)
    assert restored.back_pay_months == 1


def test_a_return_in_the_month_payment_stopped_never_resumes_before_it() -> None:
    policy = Policy(release_resume_after_months=0)
    restored = restoration(Return.RELEASE, date(2025, 3, 20), date(2025, 4, 1), MONTHLY, policy)
    assert restored.effective_month == date(2025, 4, 1)
    assert restored.back_pay_months == 0


@pytest.mark.parametrize("months", [-1, 4])
def test_a_resumption_delay_outside_zero_to_three_months_is_refused(months: int) -> None:
    with pytest.raises(InvalidInputError, match=r"restoration\.release_resume_after_months"):
        policy_from_mapping({"restoration": {"release_resume_after_months": months}})
