"""Limits.validate: the one check of every maximum, used by the registry and the node alike."""

from __future__ import annotations

import dataclasses

import pytest

from federation.errors import InvalidInputError
from federation.limits import Limits


def test_the_defaults_are_valid() -> None:
    Limits().validate()


@pytest.mark.parametrize("name", ["peer_calls_per_s", "operator_calls_per_s"])
def test_a_rate_of_zero_turns_that_rate_limit_off(name: str) -> None:
    Limits(**{name: 0}).validate()


@pytest.mark.parametrize("name", [f.name for f in dataclasses.fields(Limits)])
def test_a_negative_limit_is_refused_by_name(name: str) -> None:
    with pytest.raises(InvalidInputError) as refused:
        Limits(**{name: -1}).validate("limits")
    assert refused.value.field == f"limits.{name}"


@pytest.mark.parametrize("name", ["max_message_bytes", "call_timeout_s", "peer_burst"])
def test_zero_is_refused_where_it_does_not_mean_off(name: str) -> None:
    with pytest.raises(InvalidInputError, match="must be positive"):
        Limits(**{name: 0}).validate()


def test_the_default_page_may_not_exceed_the_largest_page() -> None:
    with pytest.raises(InvalidInputError) as refused:
        Limits(default_page_size=600, max_page_size=500).validate()
    assert refused.value.field == "limits.default_page_size"
