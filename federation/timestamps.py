"""Protobuf Timestamps as timezone-aware UTC datetimes and back, in one place."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from google.protobuf.timestamp_pb2 import Timestamp

from federation.errors import InvalidInputError

# The range google.protobuf.Timestamp allows (timestamp.proto): 0001-01-01T00:00:00Z to
# 9999-12-31T23:59:59.999999999Z. A peer can send any int64; outside this range there is no
# datetime to convert to, so the value is refused as bad input rather than failing later.
MIN_SECONDS = -62_135_596_800
MAX_SECONDS = 253_402_300_799
MAX_NANOS = 999_999_999
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_datetime(timestamp: Timestamp, field_name: str = "timestamp") -> datetime:
    """The timestamp as an aware UTC datetime; InvalidInputError naming the field if invalid."""
    seconds, nanos = timestamp.seconds, timestamp.nanos
    if not MIN_SECONDS <= seconds <= MAX_SECONDS:
        raise InvalidInputError(field_name, "is outside the years 0001 to 9999")
    if not 0 <= nanos <= MAX_NANOS:
        raise InvalidInputError(field_name, "has nanos outside 0 to 999999999")
    return _EPOCH + timedelta(seconds=seconds, microseconds=nanos // 1000)


def optional_datetime(message: object, field: str) -> datetime | None:
    """The field as a datetime, or None when the message does not set it."""
    if not message.HasField(field):  # type: ignore[attr-defined]
        return None
    value: Timestamp = getattr(message, field)
    return to_datetime(value, field)


def to_timestamp(moment: datetime) -> Timestamp:
    """The moment as a Timestamp: what `Timestamp.FromDatetime` gives, computed from the
    difference to the epoch (a third of its cost; every attestation built and every row listed
    carries a few)."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: certfed keeps every time in UTC with tzinfo")
    # An aware difference is exact whatever the offset; timedelta keeps seconds and
    # microseconds non-negative, so times before 1970 give a negative second and positive nanos,
    # as timestamp.proto requires.
    since = moment - _EPOCH
    return Timestamp(seconds=since.days * 86_400 + since.seconds, nanos=since.microseconds * 1000)
