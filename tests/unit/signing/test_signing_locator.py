"""Subject locators: keyed, deterministic, normalised, separated by kind."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from signing.errors import InvalidIdentityNumberError
from signing.identity import IdentityKind
from signing.locator import LOCATOR_KEY_SIZE, subject_locator

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


def test_locator_is_deterministic_hmac_of_kind_and_normalised_number() -> None:
    locator = subject_locator(KEY, IdentityKind.RESIDENT_ID, "11010519491231002x")
    expected = hmac.new(KEY, b"resident_id\x0011010519491231002X", hashlib.sha256).digest()
    assert locator == expected
    assert subject_locator(KEY, IdentityKind.RESIDENT_ID, "11010519491231002X") == locator
    assert len(locator) == 32


def test_locator_differs_by_key() -> None:
    number = "11010519491231002X"
    assert subject_locator(KEY, IdentityKind.RESIDENT_ID, number) != subject_locator(
        OTHER_KEY, IdentityKind.RESIDENT_ID, number
    )


def test_locator_differs_by_kind_for_the_same_characters() -> None:
    # 12345678 is both a well-formed Macau BIR number and a passport number.
    assert subject_locator(KEY, IdentityKind.MACAU_BIR, "12345678") != subject_locator(
        KEY, IdentityKind.PASSPORT, "12345678"
    )


def test_hkid_with_parentheses_and_lowercase_give_the_same_locator() -> None:
    assert subject_locator(KEY, IdentityKind.HKID, "A123456(3)") == subject_locator(
        KEY, IdentityKind.HKID, "a1234563"
    )


def test_invalid_number_gets_no_locator() -> None:
    with pytest.raises(InvalidIdentityNumberError):
        subject_locator(KEY, IdentityKind.RESIDENT_ID, "110105194912310021")


@pytest.mark.parametrize("length", [0, 16, LOCATOR_KEY_SIZE - 1, LOCATOR_KEY_SIZE + 1, 64])
def test_locator_key_of_wrong_length_is_refused(length: int) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        subject_locator(bytes(length), IdentityKind.HKID, "A123456(3)")
