"""Proof that whoever asks where an enrolment stands is its applicant.

The registry answers GetEnrolment (status, reason, and once approved the node's certificate)
only to a caller that signs an `EnrolmentQuery` for that node id with the signing key the node
applied with, or one it holds now, and recently (within the clock skew allowed, so a captured
query is soon worthless). Anyone else learns nothing, not even whether the node id applied.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from google.protobuf.message import DecodeError

from certfed.v1 import directory_pb2
from federation.errors import NotFoundError
from federation.timestamps import to_datetime, to_timestamp
from signing import dsse
from signing.errors import SigningError
from signing.keys import SigningKey, VerifyKey

ENROLMENT_QUERY_PAYLOAD_TYPE = "application/vnd.certfed.enrolment-query.v1+protobuf"


class EnrolmentNotFoundError(NotFoundError):
    """No enrolment this caller may read: unknown node id, or no valid proof of the applicant."""


def sign_enrolment_query(node_id: str, key: SigningKey, now: datetime) -> dsse.Envelope:
    query = directory_pb2.EnrolmentQuery(node_id=node_id, requested_at=to_timestamp(now))
    return dsse.sign(query.SerializeToString(deterministic=True), ENROLMENT_QUERY_PAYLOAD_TYPE, key)


def not_found(node_id: str) -> EnrolmentNotFoundError:
    """The one answer for an unknown node id and for a query its applicant did not sign."""
    return EnrolmentNotFoundError(
        f"no enrolment of node {node_id!r} that this query may read; sign the query with the "
        "node's signing key (`certfed node enrol` does)"
    )


def check_enrolment_query(
    envelope: dsse.Envelope | None,
    node_id: str,
    keys: Mapping[str, VerifyKey],
    *,
    now: datetime,
    max_clock_skew: timedelta,
) -> None:
    """Raise `not_found(node_id)` unless `envelope` is a fresh query for `node_id` signed by one
    of `keys`."""
    if envelope is None or not keys:
        raise not_found(node_id)
    try:
        verified = dsse.verify(envelope, keys, ENROLMENT_QUERY_PAYLOAD_TYPE)
        query = directory_pb2.EnrolmentQuery()
        query.ParseFromString(verified.payload)
    except (SigningError, DecodeError):
        raise not_found(node_id) from None
    if query.node_id != node_id or not query.HasField("requested_at"):
        raise not_found(node_id)
    if abs(to_datetime(query.requested_at) - now) > max_clock_skew:
        raise not_found(node_id)
