"""Checking a node's request to rotate its attestation signing key. Pure: bytes in, a value out.

A rotation adds a new key; it does not end the old one at once (the registry gives the old key an
overlap window, so attestations signed just before the switch still verify). `validate_rotation`
returns a `Rotation` only when the DSSE envelope carries a SigningKeyRotation for the calling node
that is signed both by a key the node holds and that is valid now (authority: only the holder of
the current key may name its successor) and by the new key itself (proof of possession: nobody
can get someone else's public key listed as theirs). Otherwise it raises InvalidInputError naming
the field (`rotation.<field>`) or PreconditionError when the named current key cannot sign now.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from google.protobuf.message import DecodeError

from certfed.v1 import directory_pb2
from federation.errors import InvalidInputError, PreconditionError
from federation.timestamps import to_datetime, to_timestamp
from signing import dsse
from signing.errors import SigningError
from signing.keys import SigningKey, VerifyKey

FIELD_PREFIX = "rotation."


@dataclass(frozen=True)
class Rotation:
    node_id: str
    current_key_id: str
    new_key: VerifyKey
    requested_at: datetime


def sign_rotation(
    node_id: str, current: SigningKey, new: SigningKey, requested_at: datetime
) -> dsse.Envelope:
    """What a node sends: the statement signed by its current key and by the new key."""
    statement = directory_pb2.SigningKeyRotation(
        node_id=node_id,
        current_key_id=current.key_id,
        new_public_key=new.public_key.raw,
        requested_at=to_timestamp(requested_at),
    )
    payload = statement.SerializeToString(deterministic=True)
    return dsse.sign(payload, dsse.KEY_ROTATION_PAYLOAD_TYPE, current, new)


def validate_rotation(
    envelope: dsse.Envelope,
    caller_node_id: str,
    valid_keys: Mapping[str, VerifyKey],
    *,
    now: datetime,
    max_clock_skew: timedelta,
) -> Rotation:
    """Check a rotation request from `caller_node_id`, whose keys valid now are `valid_keys`."""
    if envelope.payload_type != dsse.KEY_ROTATION_PAYLOAD_TYPE:
        raise InvalidInputError(
            f"{FIELD_PREFIX}payload_type", f"must be {dsse.KEY_ROTATION_PAYLOAD_TYPE}"
        )
    statement = directory_pb2.SigningKeyRotation()
    try:
        statement.ParseFromString(envelope.payload)
    except DecodeError:
        raise InvalidInputError(f"{FIELD_PREFIX}payload", "is not a SigningKeyRotation") from None
    if statement.node_id != caller_node_id:
        raise InvalidInputError(
            f"{FIELD_PREFIX}node_id",
            f"names node {statement.node_id[:64]!r}; a node rotates only its own key",
        )
    if not statement.HasField("requested_at"):
        raise InvalidInputError(f"{FIELD_PREFIX}requested_at", "is required")
    requested_at = to_datetime(statement.requested_at, f"{FIELD_PREFIX}requested_at")
    if requested_at > now + max_clock_skew:
        raise InvalidInputError(f"{FIELD_PREFIX}requested_at", "is in the future")
    current = valid_keys.get(statement.current_key_id)
    if current is None:
        raise PreconditionError(
            f"key {statement.current_key_id[:64]!r} is not a signing key of node "
            f"{caller_node_id} that is valid now; sign the rotation with the key in use"
        )
    try:
        new_key = VerifyKey.from_raw(statement.new_public_key)
    except SigningError as error:
        raise InvalidInputError(f"{FIELD_PREFIX}new_public_key", str(error)) from None
    if new_key.key_id == current.key_id:
        raise InvalidInputError(f"{FIELD_PREFIX}new_public_key", "is the key in use already")
    for role, key in (("current", current), ("new", new_key)):
        try:
            dsse.verify(envelope, {key.key_id: key}, dsse.KEY_ROTATION_PAYLOAD_TYPE)
        except SigningError as error:
            raise InvalidInputError(
                f"{FIELD_PREFIX}signatures", f"no valid signature by the {role} key: {error}"
            ) from None
    return Rotation(caller_node_id, current.key_id, new_key, requested_at)
