"""The policy file: defaults when absent, every key read, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from federation.errors import InvalidInputError
from federation_node.rules.policy import (
    ALIVE_SIGNAL_KINDS,
    Policy,
    load_policy,
    policy_from_mapping,
)

REPOSITORY = Path(__file__).resolve().parents[3]


def test_an_absent_policy_file_means_the_domain_defaults(tmp_path: Path) -> None:
    policy = load_policy(tmp_path / "policy.toml")
    assert policy == Policy()
    assert (policy.validity_months, policy.warning_months) == (12, 3)
    assert policy.extending_signal_kinds == frozenset(ALIVE_SIGNAL_KINDS)
    assert (policy.family_report_days, policy.unit_report_days) == (7, 3)


def test_the_deployed_example_is_valid_and_reads_every_section() -> None:
    policy = load_policy(REPOSITORY / "deploy" / "policy.example.toml")
    assert policy.reminder_days == (-30, -7, 0, 30, 60)
    assert policy.assistance_lead_days == 60


def test_settings_override_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(
        "[validity]\nperiod_months = 6\nwarning_months = 2\n"
        "[reminders]\ndays = [0, -14, 0]\n"
        '[signals]\nextend_validity = ["hospital_admission"]\n'
        "[payments]\nback_pay = false\n",
        encoding="utf-8",
    )
    policy = load_policy(path)
    assert (policy.validity_months, policy.warning_months) == (6, 2)
    assert policy.reminder_days == (-14, 0)
    assert policy.extending_signal_kinds == frozenset({"hospital_admission"})
    assert policy.back_pay is False


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[validity]\nperiod_months = 0\n", "validity.period_months"),
        ("[validity]\nperiod_month = 12\n", "validity.period_month"),
        ("[validity]\nwarning_months = true\n", "validity.warning_months"),
        ("[validity]\nwarning_months = 13\n", "validity.warning_months"),
        ("[reminders]\ndays = [-30, 400]\n", "reminders.days"),
        ('[reminders]\ndays = ["-30"]\n', "reminders.days"),
        ("[assistance]\nlead_days = 400\n", "assistance.lead_days"),
        ("[assistance]\nmin_deadline_days = 0\n", "assistance.min_deadline_days"),
        ('[signals]\nextend_validity = ["death_registration"]\n', "signals.extend_validity"),
        ("[payments]\nresume_after_months = 0\n", "payments.resume_after_months"),
        ("[deaths]\nfamily_report_days = 0\n", "deaths.family_report_days"),
        ("[billing]\nx = 1\n", "billing"),
        ("validity = 12\n", "validity"),
    ],
)
def test_a_bad_setting_is_refused_naming_its_key(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InvalidInputError) as refused:
        load_policy(path)
    assert refused.value.field == key


def test_a_policy_file_that_is_not_toml_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text("[validity\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match="not valid TOML"):
        load_policy(path)


def test_bulk_amount_approvals_are_bounded_to_ten_percent_by_default_and_at_most_fifty() -> None:
    assert Policy().bulk_amount_change_percent == 10
    none_in_bulk = policy_from_mapping({"amounts": {"bulk_change_percent": 0}})
    assert none_in_bulk.bulk_amount_change_percent == 0
    for percent in (-1, 51):
        with pytest.raises(InvalidInputError, match=r"amounts\.bulk_change_percent"):
            policy_from_mapping({"amounts": {"bulk_change_percent": percent}})
