"""A signing-key rotation needs the current key's authority and the new key's possession."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from federation.errors import InvalidInputError, PreconditionError
from federation.key_rotation import sign_rotation, validate_rotation
from signing import dsse
from signing.keys import SigningKey

NOW = datetime(2026, 3, 1, tzinfo=UTC)
SKEW = timedelta(minutes=5)


@pytest.fixture
def current() -> SigningKey:
    return SigningKey.generate()


def test_a_rotation_signed_by_the_current_and_the_new_key_is_accepted(
    current: SigningKey,
) -> None:
    new = SigningKey.generate()
    rotation = validate_rotation(
        sign_rotation("qingdao", current, new, NOW),
        "qingdao",
        {current.key_id: current.public_key},
        now=NOW,
        max_clock_skew=SKEW,
    )
    assert rotation.new_key == new.public_key
    assert rotation.current_key_id == current.key_id


def test_a_rotation_without_the_new_keys_signature_is_refused(current: SigningKey) -> None:
    signed = sign_rotation("qingdao", current, SigningKey.generate(), NOW)
    envelope = dsse.Envelope(signed.payload, signed.payload_type, signed.signatures[:1])
    with pytest.raises(InvalidInputError) as refused:
        validate_rotation(
            envelope, "qingdao", {current.key_id: current.public_key}, now=NOW, max_clock_skew=SKEW
        )
    assert refused.value.field == "rotation.signatures"


def test_a_rotation_signed_by_a_key_that_is_not_valid_now_is_refused(
    current: SigningKey,
) -> None:
    retired = SigningKey.generate()
    with pytest.raises(PreconditionError, match="not a signing key"):
        validate_rotation(
            sign_rotation("qingdao", retired, SigningKey.generate(), NOW),
            "qingdao",
            {current.key_id: current.public_key},
            now=NOW,
            max_clock_skew=SKEW,
        )


def test_a_node_cannot_rotate_another_nodes_key(current: SigningKey) -> None:
    with pytest.raises(InvalidInputError) as refused:
        validate_rotation(
            sign_rotation("lanzhou", current, SigningKey.generate(), NOW),
            "qingdao",
            {current.key_id: current.public_key},
            now=NOW,
            max_clock_skew=SKEW,
        )
    assert refused.value.field == "rotation.node_id"
