"""Identity numbers: vectors from the standards, check-character properties, safe messages."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from signing.errors import InvalidIdentityNumberError, SigningError
from signing.identity import (
    PROVINCE_CODES,
    IdentityKind,
    mask_identity_number,
    normalise_identity_number,
    resident_id_check_character,
    validate_identity_number,
)

VECTORS = json.loads(
    (Path(__file__).parents[2] / "vectors" / "identity_numbers.json").read_text(encoding="utf-8")
)
TODAY = datetime.date.fromisoformat(VECTORS["today"])


def vector_id(vector: dict[str, str]) -> str:
    return f"{vector['kind']}:{vector['number']}"


def test_vector_file_names_its_sources() -> None:
    assert "GB 11643-1999" in VECTORS["source"]


@pytest.mark.parametrize("vector", VECTORS["valid"], ids=vector_id)
def test_valid_identity_number_is_accepted_and_normalised(vector: dict[str, str]) -> None:
    kind = IdentityKind(vector["kind"])
    assert validate_identity_number(kind, vector["number"], today=TODAY) == vector["normalised"]
    assert normalise_identity_number(kind, vector["number"]) == vector["normalised"]
    assert mask_identity_number(kind, vector["number"]) == vector["masked"]


@pytest.mark.parametrize("vector", VECTORS["invalid"], ids=vector_id)
def test_invalid_identity_number_is_refused_with_a_reason_not_echoing_it(
    vector: dict[str, str],
) -> None:
    kind = IdentityKind(vector["kind"])
    with pytest.raises(InvalidIdentityNumberError) as caught:
        validate_identity_number(kind, vector["number"], today=TODAY)
    assert vector["reason"] in caught.value.reason
    assert str(caught.value) == caught.value.reason
    assert_message_hides(caught.value, vector["number"], kind)


def assert_message_hides(
    error: InvalidIdentityNumberError, number: str, kind: IdentityKind
) -> None:
    message = str(error)
    for form in (number, normalise_identity_number(kind, number)):
        if form:
            assert form not in message
            assert form not in repr(error)


def test_invalid_identity_number_error_is_a_signing_error_and_a_value_error() -> None:
    assert issubclass(InvalidIdentityNumberError, SigningError)
    assert issubclass(InvalidIdentityNumberError, ValueError)


def test_gb11643_example_check_character_is_x() -> None:
    assert resident_id_check_character("11010519491231002") == "X"


def test_birth_date_today_is_accepted_and_tomorrow_is_future() -> None:
    first_17 = "110105" + TODAY.strftime("%Y%m%d") + "001"
    number = first_17 + resident_id_check_character(first_17)
    assert validate_identity_number(IdentityKind.RESIDENT_ID, number, today=TODAY) == number
    with pytest.raises(InvalidIdentityNumberError, match="future"):
        validate_identity_number(
            IdentityKind.RESIDENT_ID, number, today=TODAY - datetime.timedelta(days=1)
        )


def test_default_today_accepts_a_birth_date_of_today_in_china() -> None:
    today_in_china = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=8)).date()
    first_17 = "110105" + today_in_china.strftime("%Y%m%d") + "001"
    number = first_17 + resident_id_check_character(first_17)
    assert validate_identity_number(IdentityKind.RESIDENT_ID, number) == number


def test_default_today_turns_at_midnight_utc_plus_14_though_it_is_remembered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 10:00 UTC is midnight at UTC+14: the latest date on Earth turns then, not a day later.
    turn = datetime.datetime(2031, 3, 9, 10, tzinfo=datetime.UTC).timestamp()
    first_17 = "110105" + "20310310" + "001"
    born_on_the_10th = first_17 + resident_id_check_character(first_17)
    clock = [turn - 1.0]
    monkeypatch.setattr("signing.identity.time.time", lambda: clock[0])
    monkeypatch.setattr("signing.identity._latest_date", (datetime.date.min, 0.0))
    for _ in range(2):  # the second time from memory
        with pytest.raises(InvalidIdentityNumberError, match="future"):
            validate_identity_number(IdentityKind.RESIDENT_ID, born_on_the_10th)
    clock[0] = turn
    assert validate_identity_number(IdentityKind.RESIDENT_ID, born_on_the_10th) == (
        born_on_the_10th
    )


def test_mask_shows_only_the_first_two_and_last_two_characters() -> None:
    assert mask_identity_number(IdentityKind.RESIDENT_ID, "11010519491231002x") == (
        "11**************2X"
    )
    assert mask_identity_number(IdentityKind.PASSPORT, "AB12") == "****"


def test_hkid_with_and_without_parentheses_normalise_alike() -> None:
    assert normalise_identity_number(IdentityKind.HKID, "A123456(3)") == (
        normalise_identity_number(IdentityKind.HKID, "a1234563")
    )


@st.composite
def resident_id_first_17(draw: st.DrawFn) -> str:
    province = draw(st.sampled_from(sorted(PROVINCE_CODES)))
    area = draw(st.integers(min_value=0, max_value=9999))
    birth = draw(st.dates(min_value=datetime.date(1880, 1, 1), max_value=TODAY))
    sequence = draw(st.integers(min_value=0, max_value=999))
    return f"{province:02d}{area:04d}{birth:%Y%m%d}{sequence:03d}"


@given(first_17=resident_id_first_17())
def test_appending_the_computed_check_character_gives_a_valid_number(first_17: str) -> None:
    number = first_17 + resident_id_check_character(first_17)
    assert validate_identity_number(IdentityKind.RESIDENT_ID, number, today=TODAY) == number


@given(first_17=st.text(alphabet="0123456789", min_size=17, max_size=17))
def test_the_check_character_makes_the_weighted_sum_one_modulo_11(first_17: str) -> None:
    # ISO 7064 MOD 11-2 as GB 11643 states it: the sum over all 18 characters of value times
    # 2^(18 - position) is 1 modulo 11, X counting 10.
    number = first_17 + resident_id_check_character(first_17)
    values = [10 if character == "X" else int(character) for character in number]
    assert sum(value * 2 ** (17 - index) for index, value in enumerate(values)) % 11 == 1


@given(first_17=resident_id_first_17(), data=st.data())
def test_changing_any_single_character_makes_the_number_invalid(
    first_17: str, data: st.DataObject
) -> None:
    number = first_17 + resident_id_check_character(first_17)
    position = data.draw(st.integers(min_value=0, max_value=17))
    alphabet = "0123456789X" if position == 17 else "0123456789"
    replacement = data.draw(st.sampled_from(alphabet).filter(lambda c: c != number[position]))
    changed = number[:position] + replacement + number[position + 1 :]
    with pytest.raises(InvalidIdentityNumberError) as caught:
        validate_identity_number(IdentityKind.RESIDENT_ID, changed, today=TODAY)
    assert_message_hides(caught.value, changed, IdentityKind.RESIDENT_ID)


@given(kind=st.sampled_from(IdentityKind), number=st.text(max_size=30))
def test_validation_either_normalises_or_refuses_without_echoing(
    kind: IdentityKind, number: str
) -> None:
    normalised = normalise_identity_number(kind, number)
    result: str | None = None
    message = ""
    try:
        result = validate_identity_number(kind, number, today=TODAY)
    except InvalidIdentityNumberError as error:
        message = str(error)
    if result is None:
        # Short inputs can coincide with words of the message; a real number is longer.
        if len(normalised) >= 5:
            assert normalised not in message
    else:
        assert result == normalised == normalise_identity_number(kind, result)
        assert result.isascii()
        assert result.isalnum()
