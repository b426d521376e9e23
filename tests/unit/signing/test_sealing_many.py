"""Sealing many values with one HPKE encapsulation (`seal_many`): each opens only for the
recipient and only with its own info, like a value sealed alone."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from signing.errors import UnsealError
from signing.keys import HpkeKey
from signing.sealing import BATCH_PREFIX, at_rest_info, open_sealed, seal, seal_many

RECIPIENT = HpkeKey.generate()
ITEMS = [
    (f"person {n}; 44060419400101{n:03d}X".encode(), at_rest_info(f"{n:064x}")) for n in range(5)
]


def test_each_value_of_a_batch_opens_with_its_own_info() -> None:
    sealed = seal_many(ITEMS, RECIPIENT.public_raw)
    assert len(sealed) == len(ITEMS)
    for (plaintext, info), value in zip(ITEMS, sealed, strict=True):
        assert value.startswith(BATCH_PREFIX)
        assert plaintext not in value
        assert open_sealed(value, RECIPIENT, info) == plaintext


def test_a_value_moved_to_another_record_does_not_open() -> None:
    sealed = seal_many(ITEMS, RECIPIENT.public_raw)
    with pytest.raises(UnsealError):
        open_sealed(sealed[0], RECIPIENT, ITEMS[1][1])


def test_another_recipient_cannot_open_a_batch() -> None:
    sealed = seal_many(ITEMS, RECIPIENT.public_raw)
    with pytest.raises(UnsealError):
        open_sealed(sealed[0], HpkeKey.generate(), ITEMS[0][1])


@given(st.integers(min_value=0), st.integers(min_value=0, max_value=7))
def test_any_flipped_bit_fails_to_open(position: int, bit: int) -> None:
    [value] = seal_many(ITEMS[:1], RECIPIENT.public_raw)
    altered = bytearray(value)
    altered[position % len(value)] ^= 1 << bit
    with pytest.raises(UnsealError):
        open_sealed(bytes(altered), RECIPIENT, ITEMS[0][1])


def test_the_data_key_cache_opens_a_batch_with_one_hpke_decryption_and_keeps_only_good_keys() -> (
    None
):
    sealed = seal_many(ITEMS, RECIPIENT.public_raw)
    cache: dict[bytes, bytes] = {}
    for (plaintext, info), value in zip(ITEMS, sealed, strict=True):
        assert open_sealed(value, RECIPIENT, info, data_keys=cache) == plaintext
    assert len(cache) == 1
    forged = bytearray(seal_many(ITEMS[:1], RECIPIENT.public_raw)[0])
    forged[len(BATCH_PREFIX)] ^= 1
    with pytest.raises(UnsealError):
        open_sealed(bytes(forged), RECIPIENT, ITEMS[0][1], data_keys=cache)
    assert len(cache) == 1


def test_single_values_still_open_beside_batches() -> None:
    plaintext, info = ITEMS[0]
    assert open_sealed(seal(plaintext, RECIPIENT.public_raw, info), RECIPIENT, info) == plaintext
