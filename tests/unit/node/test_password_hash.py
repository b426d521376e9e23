"""Operators' passwords: the scrypt parameters, the stored string, and what is accepted."""

from __future__ import annotations

import base64
import hashlib

import pytest

from federation.errors import InvalidInputError
from federation_node.rules import passwords
from federation_node.rules.passwords import ScryptParameters

# The vector of RFC 7914 section 12 (N=16, r=1, p=1, empty password and salt, 64 bytes).
RFC_7914_EMPTY = bytes.fromhex(
    "77d6576238657b203b19ca42c18a0497f16b4844e3074ae8dfdffa3fede21442"
    "fcd0069ded0948f8326a753a0fc81f17e8d3e0fb2e0d3628cf35e20c38d18906"
)


def test_the_hash_function_is_rfc_7914_scrypt() -> None:
    assert hashlib.scrypt(b"", salt=b"", n=16, r=1, p=1, dklen=64) == RFC_7914_EMPTY


# OWASP Password Storage Cheat Sheet, scrypt: equivalent settings at r=8, as log2(N): p.
OWASP_SCRYPT_MINIMUMS = {17: 1, 16: 2, 15: 3, 14: 5, 13: 10}


def test_current_parameters_are_memory_hard_at_owasp_strength() -> None:
    current = passwords.CURRENT
    assert current.r == 8
    assert current.p >= OWASP_SCRYPT_MINIMUMS[current.log2_n]
    assert current.memory_bytes >= 32 * 1024 * 1024
    assert current.salt_bytes >= 16
    assert current.hash_bytes >= 32


def test_the_stored_string_names_its_parameters_and_a_fresh_salt() -> None:
    stored = passwords.hash_password("correct horse battery")
    scheme, settings, salt, digest = stored.split("$")
    assert scheme == "scrypt"
    assert settings == "ln=15,r=8,p=3"
    assert len(base64.b64decode(salt + "==")) == 16
    assert len(base64.b64decode(digest + "=")) == 32
    assert passwords.parameters_of(stored) == passwords.CURRENT
    assert stored != passwords.hash_password("correct horse battery")


def test_the_stored_hash_is_scrypt_of_the_password_with_its_salt() -> None:
    stored = passwords.hash_password("correct horse battery")
    _, _, salt, digest = stored.split("$")
    expected = hashlib.scrypt(
        b"correct horse battery",
        salt=base64.b64decode(salt + "=="),
        n=1 << 15,
        r=8,
        p=3,
        maxmem=64 * 1024 * 1024,
        dklen=32,
    )
    assert base64.b64decode(digest + "=") == expected


def test_only_the_right_password_verifies() -> None:
    stored = passwords.hash_password("correct horse battery")
    assert passwords.verify_password("correct horse battery", stored)
    assert not passwords.verify_password("correct horse batterY", stored)
    assert not passwords.verify_password("", stored)


def test_hashes_made_with_other_parameters_still_verify_and_ask_for_a_rehash() -> None:
    older = ScryptParameters(log2_n=14, r=8, p=1)
    stored = passwords.hash_password("correct horse battery", older)
    assert passwords.verify_password("correct horse battery", stored)
    assert passwords.needs_rehash(stored)
    assert not passwords.needs_rehash(passwords.hash_password("correct horse battery"))


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "bcrypt$ln=15,r=8,p=3$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "scrypt$ln=15,r=8$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "scrypt$ln=30,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "scrypt$ln=15,r=8,p=3$not base64!$AAAA",
    ],
    ids=["empty", "other-scheme", "missing-p", "gigabytes", "bad-base64"],
)
def test_a_malformed_or_extravagant_stored_hash_never_verifies(stored: str) -> None:
    assert not passwords.verify_password("correct horse battery", stored)
    assert passwords.needs_rehash(stored)


@pytest.mark.parametrize("length", [12, 256])
def test_passwords_of_12_to_256_characters_are_accepted(length: int) -> None:
    assert passwords.require_password("p" * length) == "p" * length


@pytest.mark.parametrize(
    ("length", "problem"),
    [(0, "at least 12"), (11, "at least 12"), (257, "at most 256")],
)
def test_passwords_outside_12_to_256_characters_are_refused_by_name(
    length: int, problem: str
) -> None:
    with pytest.raises(InvalidInputError, match=problem) as refused:
        passwords.require_password("p" * length, "new_password")
    assert refused.value.field == "new_password"


def test_user_names_are_normalised_and_limited() -> None:
    assert passwords.require_user_name("  Counter.One ") == "counter.one"
    for bad in ("ab", "-counter", "counter one", "名字", "x" * 65):
        with pytest.raises(InvalidInputError, match="user_name"):
            passwords.require_user_name(bad)


def test_only_the_desk_languages_are_locales() -> None:
    for locale in ("", "zh-Hans", "zh-Hant", "en", "pt"):
        assert passwords.require_locale(locale) == locale
    with pytest.raises(InvalidInputError, match="locale"):
        passwords.require_locale("fr")
