"""Input checks the servicers run before any domain operation: each names the field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from certfed.v1 import attestation_pb2, common_pb2
from federation.errors import InvalidInputError
from federation.limits import Limits
from federation_node.rules import validation
from signing.errors import InvalidIdentityNumberError

LIMITS = Limits()
NOW = datetime(2026, 11, 24, tzinfo=UTC)


def bundle(number: str, name: str = "Test Person") -> attestation_pb2.IdentityBundle:
    return attestation_pb2.IdentityBundle(
        identity_type=common_pb2.IDENTITY_TYPE_RESIDENT_ID, identity_number=number, full_name=name
    )


def test_a_valid_identity_is_normalised() -> None:
    kind, number = validation.normalised_identity(bundle("11010519491231002x"), "identity", LIMITS)
    assert (kind.value, number) == ("resident_id", "11010519491231002X")


def test_an_identity_without_a_name_or_type_is_refused_by_field() -> None:
    with pytest.raises(InvalidInputError) as refused:
        validation.normalised_identity(bundle("11010519491231002X", name=" "), "walk_in", LIMITS)
    assert refused.value.field == "walk_in.full_name"
    with pytest.raises(InvalidInputError) as refused:
        validation.normalised_identity(attestation_pb2.IdentityBundle(), "identity", LIMITS)
    assert refused.value.field == "identity.identity_type"


def test_a_wrong_check_character_is_refused_without_echoing_the_number() -> None:
    with pytest.raises(InvalidIdentityNumberError) as refused:
        validation.normalised_identity(bundle("110105194912310021"), "identity", LIMITS)
    assert "110105194912310021" not in str(refused.value)


@given(st.binary(max_size=64).filter(lambda b: len(b) != 32))
def test_a_locator_of_any_other_length_is_refused(value: bytes) -> None:
    with pytest.raises(InvalidInputError):
        validation.require_locator(value)


def test_times_from_the_future_and_deadlines_in_the_past_are_refused() -> None:
    validation.require_past(NOW + timedelta(seconds=10), "observed_at", NOW, LIMITS)
    with pytest.raises(InvalidInputError, match="future"):
        validation.require_past(NOW + timedelta(hours=1), "observed_at", NOW, LIMITS)
    with pytest.raises(InvalidInputError, match="past"):
        validation.require_future(NOW - timedelta(seconds=1), "deadline", NOW)


@pytest.mark.parametrize("value", [0, 99])
def test_an_unset_or_unknown_enum_is_refused(value: int) -> None:
    with pytest.raises(InvalidInputError) as refused:
        validation.require_enum(value, common_pb2.CertificationMethod, "method")
    assert refused.value.field == "method"


def test_digests_must_be_sha256_and_bounded() -> None:
    with pytest.raises(InvalidInputError) as refused:
        validation.require_digests([b"\x00" * 32, b"short"], LIMITS)
    assert refused.value.field == "evidence_digests[1]"
    with pytest.raises(InvalidInputError):
        validation.require_digests([b"\x00" * 32] * (LIMITS.max_evidence_digests + 1), LIMITS)


def test_page_sizes_default_and_are_bounded() -> None:
    assert validation.page_size(0, LIMITS) == LIMITS.default_page_size
    with pytest.raises(InvalidInputError):
        validation.page_size(LIMITS.max_page_size + 1, LIMITS)
