"""HPKE sealing: round trip, and every way opening must fail."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from signing.errors import InvalidKeyError, UnsealError
from signing.keys import HpkeKey
from signing.sealing import at_rest_info, locator_key_info, open_sealed, request_info, seal

RECIPIENT = HpkeKey.generate()
BUNDLE = "姓名 张三; resident_id 11010519491231002X".encode()


def test_sealed_bundle_opens_for_the_recipient_with_the_same_request() -> None:
    sealed = seal(BUNDLE, RECIPIENT.public_raw, request_info("req-1"))
    assert open_sealed(sealed, RECIPIENT, request_info("req-1")) == BUNDLE
    assert BUNDLE not in sealed


def test_sealing_twice_gives_different_ciphertexts() -> None:
    info = request_info("req-1")
    assert seal(BUNDLE, RECIPIENT.public_raw, info) != seal(BUNDLE, RECIPIENT.public_raw, info)


def test_wrong_private_key_cannot_open() -> None:
    sealed = seal(BUNDLE, RECIPIENT.public_raw, request_info("req-1"))
    with pytest.raises(UnsealError):
        open_sealed(sealed, HpkeKey.generate(), request_info("req-1"))


def test_bundle_sealed_for_one_request_does_not_open_for_another() -> None:
    sealed = seal(BUNDLE, RECIPIENT.public_raw, request_info("req-1"))
    with pytest.raises(UnsealError):
        open_sealed(sealed, RECIPIENT, request_info("req-2"))


def test_bundle_sealed_for_a_request_does_not_open_in_another_context() -> None:
    sealed = seal(BUNDLE, RECIPIENT.public_raw, request_info("x"))
    for info in (locator_key_info("x"), at_rest_info("x")):
        with pytest.raises(UnsealError):
            open_sealed(sealed, RECIPIENT, info)


@pytest.mark.parametrize("length", [0, 1, 31, 32, 47])
def test_input_shorter_than_any_hpke_output_fails_to_open(length: int) -> None:
    sealed = seal(BUNDLE, RECIPIENT.public_raw, request_info("req-1"))
    with pytest.raises(UnsealError):
        open_sealed(sealed[:length], RECIPIENT, request_info("req-1"))


def test_truncated_ciphertext_fails_to_open() -> None:
    sealed = seal(BUNDLE, RECIPIENT.public_raw, request_info("req-1"))
    with pytest.raises(UnsealError):
        open_sealed(sealed[:-1], RECIPIENT, request_info("req-1"))


@given(position=st.integers(min_value=0), bit=st.integers(min_value=0, max_value=7))
def test_any_flipped_bit_fails_to_open(position: int, bit: int) -> None:
    sealed = bytearray(seal(BUNDLE, RECIPIENT.public_raw, request_info("req-1")))
    sealed[position % len(sealed)] ^= 1 << bit
    with pytest.raises(UnsealError):
        open_sealed(bytes(sealed), RECIPIENT, request_info("req-1"))


@given(plaintext=st.binary(max_size=2048), request_id=st.text(min_size=1, max_size=40))
def test_any_plaintext_round_trips(plaintext: bytes, request_id: str) -> None:
    info = request_info(request_id)
    assert open_sealed(seal(plaintext, RECIPIENT.public_raw, info), RECIPIENT, info) == plaintext


def test_info_strings_are_the_documented_bytes() -> None:
    assert request_info("r1") == b"certfed/v1 identity-bundle\x00r1"
    assert locator_key_info("node-a") == b"certfed/v1 locator-key\x00node-a"
    assert at_rest_info("rec") == b"certfed/v1 at-rest\x00rec"
    assert request_info("请求") == b"certfed/v1 identity-bundle\x00" + "请求".encode()


def test_info_refuses_an_empty_context_id() -> None:
    with pytest.raises(ValueError, match="empty"):
        request_info("")


@pytest.mark.parametrize("raw", [b"", b"\x09" * 31, bytes(32)])
def test_seal_refuses_an_unusable_recipient_key(raw: bytes) -> None:
    with pytest.raises(InvalidKeyError):
        seal(BUNDLE, raw, request_info("req-1"))
