"""Timestamps: `to_timestamp` gives what protobuf's own conversion gives, and comes back whole."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given
from hypothesis import strategies as st

from federation.timestamps import to_datetime, to_timestamp

# Offsets a real zone may have, applied to moments far enough from the ends of the datetime
# range that the local time exists.
_OFFSETS = st.integers(min_value=-12 * 60, max_value=14 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
_MOMENTS = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
)


def _protobuf_conversion(moment: datetime) -> Timestamp:
    timestamp = Timestamp()
    timestamp.FromDatetime(moment.astimezone(UTC))
    return timestamp


@given(_MOMENTS, _OFFSETS)
def test_to_timestamp_matches_protobuf_and_comes_back_whole(
    moment: datetime, offset: timezone
) -> None:
    local = moment.astimezone(offset)
    timestamp = to_timestamp(local)
    assert timestamp == _protobuf_conversion(local)
    assert 0 <= timestamp.nanos < 1_000_000_000
    assert to_datetime(timestamp) == moment


def test_a_moment_before_1970_has_a_negative_second_and_positive_nanos() -> None:
    timestamp = to_timestamp(datetime(1969, 12, 31, 23, 59, 59, 500_000, tzinfo=UTC))
    assert (timestamp.seconds, timestamp.nanos) == (-1, 500_000_000)


def test_a_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        to_timestamp(datetime(2026, 12, 5, 8, 30))
