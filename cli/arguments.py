"""How `certfed` reads its command line: one line for any bad argument, and the argument types.

Every parser of the command tree is a `CommandParser`: a bad argument, anywhere, is answered
with one line on stderr naming the argument and what it accepts, and exit status 2, never a
usage block or a traceback. The type functions below turn text into values at parse time, so a
bad date, month or amount is caught there too; each raises argparse.ArgumentTypeError with what
the argument accepts, never repeating a value that could be personal data.
"""

from __future__ import annotations

import argparse
import re
import sys
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import NoReturn

from adapters.gateway_http import MAX_CONNECTIONS, MAX_PER_SECOND
from federation.errors import InvalidInputError
from federation.limits import Limits
from federation.regions import validate_region_code

EXIT_BAD_ARGUMENT = 2
_BUILTIN_TYPES = {
    "int": "a whole number",
    "float": "a number",
}
_INVALID_BUILTIN = re.compile(r"invalid (\w+) value: ('.*')$")


class CommandParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (its sub-parsers are CommandParsers too)."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {one_line(message)}\n")
        sys.exit(EXIT_BAD_ARGUMENT)


def one_line(message: str) -> str:
    """argparse's message for a bad argument, said as what the argument accepts, on one line."""
    match = _INVALID_BUILTIN.search(message)
    if match is not None and match[1] in _BUILTIN_TYPES:
        message = message[: match.start()] + f"{match[2]} is not {_BUILTIN_TYPES[match[1]]}"
    return " ".join(message.split())


def iso_day(text: str) -> date:
    """A calendar day written YYYY-MM-DD."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            "is not a date: write it YYYY-MM-DD, e.g. 2026-01-31"
        ) from None


def utc_day(text: str) -> datetime:
    """A calendar day written YYYY-MM-DD, as 00:00 UTC of that day (how the node counts days)."""
    day = iso_day(text)
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def iso_moment(text: str) -> datetime:
    """An ISO 8601 date and time; without a zone it is the local time of this computer."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            "is not an ISO 8601 date-time: write it e.g. 2026-01-31T10:00 or 2026-01-31T10:00+08:00"
        ) from None
    return moment.astimezone(UTC)


def month(text: str) -> str:
    """A month written YYYY-MM."""
    if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", text):
        raise argparse.ArgumentTypeError("is not a month: write it YYYY-MM, e.g. 2025-07")
    return text


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def page_size(text: str) -> int:
    """A page size the node serves: 1 to Limits.max_page_size."""
    largest = Limits().max_page_size
    value = positive_int(text)
    if value > largest:
        raise argparse.ArgumentTypeError(f"must be between 1 and {largest}")
    return value


def batch_size(text: str) -> int:
    """Rows per call: 1 to Limits.max_repeated."""
    largest = Limits().max_repeated
    value = positive_int(text)
    if value > largest:
        raise argparse.ArgumentTypeError(f"must be between 1 and {largest:,}")
    return value


def gateway_concurrency(text: str) -> int:
    """Reminders with a gateway at once: 1 to the connections a notifier keeps."""
    value = positive_int(text)
    if value > MAX_CONNECTIONS:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_CONNECTIONS}")
    return value


def per_second(text: str) -> float:
    """A rate cap: above 0, at most MAX_PER_SECOND."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("is not a number") from None
    if not 0 < value <= MAX_PER_SECOND:
        raise argparse.ArgumentTypeError(f"must be above 0 and at most {MAX_PER_SECOND:,}")
    return value


def yuan_as_fen(text: str) -> int:
    """An amount in yuan with at most two decimals (3200, 3200.5, 3200.50), as integer fen."""
    largest = Limits().max_monthly_amount_fen
    try:
        amount = Decimal(text.replace(",", ""))
    except InvalidOperation:
        amount = Decimal("NaN")
    fen = amount * 100
    if not fen.is_finite() or fen != fen.to_integral_value() or not 0 <= fen <= largest:
        raise argparse.ArgumentTypeError(
            f"is not an amount in yuan: 0 to {largest // 100:,} with at most two decimals, "
            "e.g. 3200.50"
        )
    return int(fen)


def region_code(text: str) -> str:
    """A GB/T 2260 region code (6 digits), HK or MO, or an ISO 3166-1 country code abroad."""
    try:
        return validate_region_code(text)
    except InvalidInputError:
        raise argparse.ArgumentTypeError(
            "is not a region code: the 6-digit GB/T 2260 code (e.g. 370202), HK / MO, or the "
            "ISO 3166-1 code of a country abroad (e.g. CA)"
        ) from None
