"""Feed mapping files: which column of a data-signal feed holds what, validated before any row.

A mapping is a small TOML file (one per feed kind ships in this folder; an office may write its
own for a feed whose columns differ). It says which column holds the identity number, the date
and its format, the record id (optional), and the signal kind and identity type, each either a
constant or a column whose values are translated by a table. The layout is documented in
docs/adapters.md. `load_mapping` refuses unknown settings by name, so a typo never silently
falls back to a default, and checks every value before a feed is opened.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

from adapters.errors import MappingError
from adapters.mapping_files import MappingChecker, builtin_names, parse_toml, read_mapping
from certfed.v1 import common_pb2, desk_pb2
from signing.identity import IdentityKind

# The signal kinds a mapping may name: the proto enum's names without prefix, lower case.
SIGNAL_KINDS: dict[str, int] = {
    name.removeprefix("SIGNAL_KIND_").lower(): value
    for name, value in desk_pb2.SignalKind.items()
    if value != desk_pb2.SIGNAL_KIND_UNSPECIFIED
}
IDENTITY_TYPES: dict[str, int] = {
    IdentityKind.RESIDENT_ID.value: common_pb2.IDENTITY_TYPE_RESIDENT_ID,
    IdentityKind.HKID.value: common_pb2.IDENTITY_TYPE_HKID,
    IdentityKind.MACAU_BIR.value: common_pb2.IDENTITY_TYPE_MACAU_BIR,
    IdentityKind.PASSPORT.value: common_pb2.IDENTITY_TYPE_PASSPORT,
}
# Encodings a line-by-line reader can split safely on b"\n" (no byte of a multi-byte character
# is ever 0x0A in these), which is what lets feeds stream with exact line numbers.
ENCODINGS = ("utf-8", "utf-8-sig", "gb18030", "gbk")
ISO_FORMAT = "iso"
_TIME_DIRECTIVES = re.compile(r"%[HIMSpfzZ]")
_UTC_OFFSET = re.compile(r"^([+-])(\d{2}):(\d{2})$")
_SOURCE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_TOP_KEYS = {
    "description",
    "source",
    "kind",
    "identity_type",
    "encoding",
    "columns",
    "observed_at",
    "kind_values",
    "identity_type_values",
}
_COLUMN_KEYS = {"identity_number", "observed_at", "record_id", "kind", "identity_type"}
_DATE_KEYS = {"format", "utc_offset"}


@dataclass(frozen=True)
class DateFormat:
    """How a feed writes its dates.

    `pattern` is a strptime pattern or "iso" (ISO 8601, with or without a time and offset). A
    value with no time of day means that calendar day and becomes 00:00 UTC of it, because the
    node counts validity in UTC calendar days (RunCycle's `day`). A value with a time but no
    offset is read at `utc_offset` (the feed's local time) and converted to UTC.
    """

    pattern: str
    utc_offset: timezone

    @property
    def date_only(self) -> bool:
        return self.pattern != ISO_FORMAT and not _TIME_DIRECTIVES.search(self.pattern)

    def describe(self) -> str:
        return "ISO 8601" if self.pattern == ISO_FORMAT else f"the format {self.pattern}"

    def parse(self, text: str) -> datetime:
        """The moment a cell names, in UTC; ValueError when the cell does not fit the format."""
        text = text.strip()
        if self.pattern == ISO_FORMAT:
            if len(text) == 10:
                return _utc_day(date.fromisoformat(text))
            moment = datetime.fromisoformat(text)
        elif self.pattern == "%Y-%m-%d" and len(text) == 10 and text[4] == text[7] == "-":
            # The most common feed date; fromisoformat is several times faster than strptime,
            # which shows on a million rows.
            return _utc_day(date.fromisoformat(text))
        else:
            moment = datetime.strptime(text, self.pattern)
            if self.date_only:
                return _utc_day(moment.date())
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=self.utc_offset)
        return moment.astimezone(UTC)


def _utc_day(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


@dataclass(frozen=True)
class FeedMapping:
    """A validated mapping: column names, constants and value tables."""

    name: str
    description: str
    source: str
    identity_number_column: str
    observed_at_column: str
    observed_at: DateFormat
    record_id_column: str | None
    encoding: str
    # Exactly one of each pair is set: a constant, or a column with its value table.
    kind: int | None
    kind_column: str | None
    kind_values: dict[str, int]
    identity_type: int | None
    identity_type_column: str | None
    identity_type_values: dict[str, int]

    @property
    def columns(self) -> tuple[str, ...]:
        """Every column the mapping reads; a CSV feed must have all of them in its header."""
        named = (
            self.identity_number_column,
            self.observed_at_column,
            self.record_id_column,
            self.kind_column,
            self.identity_type_column,
        )
        return tuple(column for column in named if column is not None)


SOURCE_RULE = "must be 1-63 lowercase letters, digits, '.', '_' or '-', e.g. foshan-hospitals"


def require_source(source: str) -> str:
    """A feed's source name (half of every signal's idempotency key)."""
    if not _SOURCE.match(source):
        raise MappingError("source", SOURCE_RULE)
    return source


def builtin_mapping_names() -> list[str]:
    """The mappings that ship with certfed, by name (the file name without .toml)."""
    return builtin_names(__name__)


def load_mapping(name_or_path: str) -> FeedMapping:
    """A shipped mapping by name (`hospital_admissions`) or a mapping file by path."""
    raw, name = read_mapping(name_or_path, __name__, "mapping")
    return _mapping(raw, name)


def parse_mapping(text: str, name: str) -> FeedMapping:
    """Validate a mapping's TOML text; every error names the mapping and the setting."""
    return _mapping(parse_toml(text, name, "mapping"), name)


def _mapping(raw: dict[str, Any], name: str) -> FeedMapping:
    check = _Checker(name)
    check.known(raw, _TOP_KEYS, "")
    columns = check.table(raw, "columns", required=True)
    check.known(columns, _COLUMN_KEYS, "columns.")
    dates = check.table(raw, "observed_at", required=True)
    check.known(dates, _DATE_KEYS, "observed_at.")
    source = check.text(raw, "source", required=True)
    if not _SOURCE.match(source):
        check.fail("source", SOURCE_RULE)
    identity_number_column = check.text(columns, "identity_number", "columns.", required=True)
    observed_at_column = check.text(columns, "observed_at", "columns.", required=True)
    record_id_column = check.text(columns, "record_id", "columns.") or None
    kind, kind_column, kind_values = check.constant_or_column(
        raw, columns, "kind", "kind_values", SIGNAL_KINDS
    )
    identity_type, identity_type_column, identity_type_values = check.constant_or_column(
        raw, columns, "identity_type", "identity_type_values", IDENTITY_TYPES
    )
    named = [
        ("columns.identity_number", identity_number_column),
        ("columns.observed_at", observed_at_column),
        ("columns.record_id", record_id_column),
        ("columns.kind", kind_column),
        ("columns.identity_type", identity_type_column),
    ]
    seen: dict[str, str] = {}
    for setting, column in named:
        if column is None:
            continue
        if column in seen:
            check.fail(setting, f"names the same column as {seen[column]}")
        seen[column] = setting
    encoding = check.text(raw, "encoding") or "utf-8-sig"
    if encoding not in ENCODINGS:
        check.fail("encoding", f"must be one of {', '.join(ENCODINGS)}")
    return FeedMapping(
        name=name,
        description=check.text(raw, "description"),
        source=source,
        identity_number_column=identity_number_column,
        observed_at_column=observed_at_column,
        observed_at=check.date_format(dates),
        record_id_column=record_id_column,
        encoding=encoding,
        kind=kind,
        kind_column=kind_column,
        kind_values=kind_values,
        identity_type=identity_type,
        identity_type_column=identity_type_column,
        identity_type_values=identity_type_values,
    )


class _Checker(MappingChecker):
    def constant_or_column(
        self,
        raw: dict[str, Any],
        columns: dict[str, Any],
        key: str,
        values_key: str,
        allowed: dict[str, int],
    ) -> tuple[int | None, str | None, dict[str, int]]:
        constant = self.text(raw, key)
        column = self.text(columns, key, "columns.")
        table = self.table(raw, values_key)
        choices = ", ".join(allowed)
        if constant and column:
            self.fail(key, f"give either {key} or columns.{key}, not both")
        if constant:
            if table:
                self.fail(values_key, f"is only used with columns.{key}")
            if constant not in allowed:
                self.fail(key, f"must be one of {choices}")
            return allowed[constant], None, {}
        if not column:
            self.fail(key, f"is required: a constant {key}, or columns.{key} with [{values_key}]")
        if not table:
            self.fail(values_key, f"is required with columns.{key}: cell value = {key} name")
        translated: dict[str, int] = {}
        for cell, target in table.items():
            if not isinstance(target, str) or target not in allowed:
                self.fail(f"{values_key}.{cell}", f"must be one of {choices}")
            translated[cell.strip()] = allowed[target]
        return None, column, translated

    def date_format(self, dates: dict[str, Any]) -> DateFormat:
        pattern = self.text(dates, "format", "observed_at.", required=True)
        offset_text = self.text(dates, "utc_offset", "observed_at.") or "+08:00"
        match = _UTC_OFFSET.match(offset_text)
        if match is None or int(match[2]) > 14 or int(match[3]) > 59:
            self.fail("observed_at.utc_offset", "must be like +08:00 (hours:minutes from UTC)")
        assert match is not None
        sign = -1 if match[1] == "-" else 1
        offset = timezone(sign * timedelta(hours=int(match[2]), minutes=int(match[3])))
        if pattern != ISO_FORMAT:
            # A pattern that cannot read back what it writes is unusable (e.g. a bare "%").
            sample = datetime(2024, 6, 23, 14, 30, 5, tzinfo=offset)
            try:
                rendered = sample.strftime(pattern)
                datetime.strptime(rendered, pattern)
            except ValueError:
                self.fail("observed_at.format", "is not a usable strptime pattern (or 'iso')")
            if "%Y" not in pattern and "%y" not in pattern:
                self.fail("observed_at.format", "must contain the year (%Y)")
        return DateFormat(pattern, offset)
