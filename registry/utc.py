"""The registry's clock and its rule for datetimes read back from a database: aware UTC only.

Promises: `utc_now` is aware and in UTC; `as_utc` returns the same instant in UTC, taking a naive
value to be UTC, which is what SQLite hands back for a value that was stored as UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
