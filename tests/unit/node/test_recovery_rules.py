"""The recovery rules: the fine on a fraud, how much a recovery may settle, the policy's fine
multiple (two to five times the amount), and the report windows of a death (docs/life_events.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from federation.errors import InvalidInputError
from federation_node.rules import report_windows
from federation_node.rules.policy import Policy, policy_from_mapping
from federation_node.rules.recovery import fraud_fine, recoverable
from federation_node.rules.report_windows import DeathReporter


def test_the_fine_is_the_amount_obtained_times_the_multiple() -> None:
    assert fraud_fine(100_000, 2) == 200_000
    assert fraud_fine(100_000, 5) == 500_000


@pytest.mark.parametrize(
    ("amount", "balance", "allowed"),
    [(1, 1, True), (500, 1_000, True), (1_001, 1_000, False), (0, 1_000, False), (1, 0, False),
     (1, -300, False), (-5, 1_000, False)],
)  # fmt: skip
def test_a_recovery_is_positive_and_never_beyond_the_balance(
    amount: int, balance: int, allowed: bool
) -> None:
    assert recoverable(amount, balance) is allowed


def test_the_default_fine_multiple_is_two_and_the_policy_may_raise_it_to_five() -> None:
    assert Policy().fraud_fine_multiple == 2
    policy = policy_from_mapping({"recovery": {"fraud_fine_multiple": 5}})
    assert policy.fraud_fine_multiple == 5


@pytest.mark.parametrize("multiple", [0, 1, 6])
def test_a_fine_multiple_outside_two_to_five_is_refused_naming_the_key(multiple: int) -> None:
    with pytest.raises(InvalidInputError) as refused:
        policy_from_mapping({"recovery": {"fraud_fine_multiple": multiple}})
    assert "recovery.fraud_fine_multiple" in str(refused.value)


@pytest.mark.parametrize(
    ("reporter", "days", "is_late"),
    [
        (DeathReporter.FAMILY, 7, False),
        (DeathReporter.FAMILY, 8, True),
        (DeathReporter.UNIT, 3, False),
        (DeathReporter.UNIT, 4, True),
        (DeathReporter.VILLAGE, 4, True),
    ],
)
def test_a_report_is_late_after_its_reporters_window_counted_in_days(
    reporter: DeathReporter, days: int, is_late: bool
) -> None:
    died = datetime(2026, 3, 1, 23, 30, tzinfo=UTC)
    reported = datetime(2026, 3, 1, 8, 0, tzinfo=UTC) + timedelta(days=days)
    assert report_windows.days_taken(died, reported) == days
    assert report_windows.late(reporter, died, reported, Policy()) is is_late
