"""Subject locators: the OPRF output over kind and normalised number, separated by kind."""

from __future__ import annotations

import pytest

from signing import oprf
from signing.errors import InvalidIdentityNumberError
from signing.identity import IdentityKind
from signing.locator import LOCATOR_SIZE, locator_from_output, locator_input, locator_with_key

KEY = oprf.derive_key_pair(bytes(range(32)), b"test locator key")
OTHER_KEY = oprf.derive_key_pair(bytes(range(1, 33)), b"test locator key")


def test_locator_is_the_oprf_output_of_kind_and_normalised_number() -> None:
    locator = locator_with_key(KEY, IdentityKind.RESIDENT_ID, "11010519491231002x")
    expected = oprf.evaluate(KEY, b"resident_id\x0011010519491231002X")[:LOCATOR_SIZE]
    assert locator == expected
    assert locator_with_key(KEY, IdentityKind.RESIDENT_ID, "11010519491231002X") == locator
    assert len(locator) == LOCATOR_SIZE == 32


def test_a_member_gets_the_same_locator_blinded_as_the_key_holder_unblinded() -> None:
    number, data = locator_input(IdentityKind.RESIDENT_ID, "11010519491231002x")
    assert number == "11010519491231002X"
    blind, blinded = oprf.blind(data)
    output = oprf.finalize(data, blind, oprf.blind_evaluate(KEY, blinded))
    assert locator_from_output(output) == locator_with_key(KEY, IdentityKind.RESIDENT_ID, number)


def test_locator_differs_by_key() -> None:
    number = "11010519491231002X"
    assert locator_with_key(KEY, IdentityKind.RESIDENT_ID, number) != locator_with_key(
        OTHER_KEY, IdentityKind.RESIDENT_ID, number
    )


def test_locator_differs_by_kind_for_the_same_characters() -> None:
    # 12345678 is both a well-formed Macau BIR number and a passport number.
    assert locator_with_key(KEY, IdentityKind.MACAU_BIR, "12345678") != locator_with_key(
        KEY, IdentityKind.PASSPORT, "12345678"
    )


def test_hkid_with_parentheses_and_lowercase_give_the_same_locator() -> None:
    assert locator_with_key(KEY, IdentityKind.HKID, "A123456(3)") == locator_with_key(
        KEY, IdentityKind.HKID, "a1234563"
    )


def test_invalid_number_gets_no_locator() -> None:
    with pytest.raises(InvalidIdentityNumberError):
        locator_input(IdentityKind.RESIDENT_ID, "110105194912310021")


@pytest.mark.parametrize("length", [0, 32, 63, 65])
def test_an_output_of_the_wrong_length_gives_no_locator(length: int) -> None:
    with pytest.raises(ValueError, match="64 bytes"):
        locator_from_output(bytes(length))
