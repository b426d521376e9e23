"""The observation-date bounds (federation_node/rules/plausibility.py), as pure functions."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from federation.errors import InvalidInputError
from federation_node.rules.plausibility import (
    ObservationBounds,
    birth_date,
    last_certification,
    require_plausible_observation,
)
from signing.identity import IdentityKind
from tests.helpers.identities import resident_id

NOW = datetime(2026, 12, 3, 10, tzinfo=UTC)
BOUNDS = ObservationBounds(
    issued_at=NOW,
    max_age=timedelta(days=90),
    clock_skew=timedelta(minutes=5),
    now=NOW,
    born=date(1950, 1, 1),
    last_certified=datetime(2026, 6, 1, tzinfo=UTC),
)


def test_a_resident_id_carries_its_birth_date_and_other_kinds_none() -> None:
    number = resident_id("620102", date(1946, 5, 4), 7)
    assert birth_date(IdentityKind.RESIDENT_ID, number) == date(1946, 5, 4)
    assert birth_date(IdentityKind.HKID, "A1234563") is None


@pytest.mark.parametrize(
    ("observed", "problem"),
    [
        (datetime(1, 1, 1, tzinfo=UTC), "birth date"),
        (datetime(1900, 6, 1, tzinfo=UTC), "birth date"),
        (datetime(1949, 12, 31, tzinfo=UTC), "birth date"),
        (NOW - timedelta(days=91), "more than 90 days"),
        (datetime(2026, 5, 31, tzinfo=UTC), "more than 90 days"),
        (NOW + timedelta(minutes=6), "future"),
    ],
)
def test_an_implausible_observation_is_refused_naming_the_field(
    observed: datetime, problem: str
) -> None:
    with pytest.raises(InvalidInputError, match=problem) as refused:
        require_plausible_observation(observed, "observed_at", BOUNDS)
    assert refused.value.field == "observed_at"


def test_an_observation_before_the_last_certification_is_refused_by_the_day() -> None:
    bounds = ObservationBounds(
        issued_at=NOW,
        max_age=timedelta(days=90),
        clock_skew=timedelta(minutes=5),
        now=NOW,
        last_certified=NOW - timedelta(days=10),
    )
    with pytest.raises(InvalidInputError, match="last certification"):
        require_plausible_observation(NOW - timedelta(days=11), "observed_at", bounds)
    # The same day, earlier in it: two certifications of one day arrive in either order.
    same_day = (NOW - timedelta(days=10)).replace(hour=0)
    assert require_plausible_observation(same_day, "observed_at", bounds) == same_day


def test_a_stale_attestation_cannot_carry_an_old_observation_in() -> None:
    backdated = ObservationBounds(
        issued_at=NOW - timedelta(days=400),
        max_age=timedelta(days=90),
        clock_skew=timedelta(minutes=5),
        now=NOW,
    )
    with pytest.raises(InvalidInputError) as refused:
        require_plausible_observation(NOW - timedelta(days=401), "observed_at", backdated)
    assert refused.value.field == "issued_at"


def test_a_plausible_observation_passes() -> None:
    assert require_plausible_observation(NOW - timedelta(days=1), "observed_at", BOUNDS)


def test_the_last_certification_is_the_later_of_what_was_applied_and_the_rolls_validity() -> None:
    applied = datetime(2026, 3, 1, tzinfo=UTC)
    assert last_certification(applied, datetime(2026, 12, 1, tzinfo=UTC), 12) == applied
    assert last_certification(applied, datetime(2027, 6, 1, tzinfo=UTC), 12) == datetime(
        2026, 6, 1, tzinfo=UTC
    )
    assert last_certification(applied, None, 12) == applied
    assert last_certification(None, None, 12) is None
