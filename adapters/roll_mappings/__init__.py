"""Roll mapping files: which column of an office's roll export holds what, checked before any row.

An office's roll (the people it pays) comes out of its own benefits system as CSV or XLSX with
that system's column names and codes. A mapping is a small TOML file per source system (some
ship in this folder; an office writes its own for another system). It names the column of each
field, translates the system's codes for identity types and pension schemes, and says how
amounts and dates are written. The layout is documented in docs/adapters.md. `load_roll_mapping`
refuses unknown settings by name, so a typo never silently falls back to a default.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from adapters.feed_mappings import ENCODINGS, IDENTITY_TYPES
from adapters.mapping_files import MappingChecker, builtin_names, parse_toml, read_mapping
from certfed.v1 import desk_pb2

# The schemes a mapping may name: the proto enum's names without prefix, lower case.
SCHEMES: dict[str, int] = {
    name.removeprefix("PENSION_SCHEME_").lower(): value
    for name, value in desk_pb2.PensionScheme.items()
    if value != desk_pb2.PENSION_SCHEME_UNSPECIFIED
}
AMOUNT_UNITS = ("fen", "yuan")
# Fields a roll row carries, and whether a mapping must name a column for each.
REQUIRED_FIELDS = ("full_name", "identity_number", "monthly_amount", "residence_region")
OPTIONAL_FIELDS = (
    "identity_type",
    "scheme",
    "payment_start",
    "valid_until",
    "phone",
    "paying_region",
)
_TOP_KEYS = {
    "description",
    "encoding",
    "sheet",
    "identity_type",
    "scheme",
    "amount_unit",
    "columns",
    "formats",
    "identity_type_values",
    "scheme_values",
}
_FORMAT_KEYS = {"payment_start", "valid_until"}
_TIME_DIRECTIVES = ("%H", "%I", "%M", "%S", "%p", "%f", "%z", "%Z")


@dataclass(frozen=True)
class DayFormat:
    """How the roll writes a date (or a month): a strptime pattern."""

    pattern: str

    def parse(self, text: str) -> date:
        """The day the text names; ValueError when it does not fit the pattern."""
        text = text.strip()
        # The common layouts without strptime, which shows on a million rows.
        if self.pattern == "%Y-%m-%d" and len(text) == 10 and text[4] == text[7] == "-":
            return date.fromisoformat(text)
        digits = text.isascii() and text.replace("-", "", 1).isdigit()
        if self.pattern == "%Y-%m" and len(text) == 7 and text[4] == "-" and digits:
            return date(int(text[:4]), int(text[5:]), 1)
        if self.pattern == "%Y%m" and len(text) == 6 and text.isascii() and text.isdigit():
            return date(int(text[:4]), int(text[4:]), 1)
        return datetime.strptime(text, self.pattern).replace(tzinfo=UTC).date()


@dataclass(frozen=True)
class RollMapping:
    """A validated roll mapping: a column per field, constants and value tables."""

    name: str
    description: str
    encoding: str
    sheet: str | None
    columns: dict[str, str]
    # Exactly one of each pair is set (or, for the scheme, neither: the roll does not say).
    identity_type: int | None
    identity_type_values: dict[str, int]
    scheme: int | None
    scheme_values: dict[str, int]
    amount_unit: str
    payment_start: DayFormat
    valid_until: DayFormat

    def column(self, field: str) -> str | None:
        return self.columns.get(field)

    @property
    def required_columns(self) -> tuple[str, ...]:
        """Every column the mapping reads: a file's header must have all of them."""
        return tuple(self.columns.values())


def builtin_roll_mapping_names() -> list[str]:
    """The roll mappings that ship with certfed, by name (the file name without .toml)."""
    return builtin_names(__name__)


def load_roll_mapping(name_or_path: str) -> RollMapping:
    """A shipped mapping by name (`core_system`) or a mapping file by path."""
    raw, name = read_mapping(name_or_path, __name__, "roll mapping")
    return _roll_mapping(raw, name)


def parse_roll_mapping(text: str, name: str) -> RollMapping:
    """Validate a roll mapping's TOML text; every error names the mapping and the setting."""
    return _roll_mapping(parse_toml(text, name, "roll mapping"), name)


def _roll_mapping(raw: dict[str, Any], name: str) -> RollMapping:
    check = _Checker(name, "roll mapping")
    check.known(raw, _TOP_KEYS, "")
    columns_raw = check.table(raw, "columns", required=True)
    check.known(columns_raw, set(REQUIRED_FIELDS + OPTIONAL_FIELDS), "columns.")
    columns: dict[str, str] = {}
    for field in REQUIRED_FIELDS:
        columns[field] = check.text(columns_raw, field, "columns.", required=True)
    for field in OPTIONAL_FIELDS:
        column = check.text(columns_raw, field, "columns.")
        if column:
            columns[field] = column
    seen: dict[str, str] = {}
    for field, column in columns.items():
        if column in seen:
            check.fail(f"columns.{field}", f"names the same column as columns.{seen[column]}")
        seen[column] = field
    identity_type, identity_type_values = check.constant_or_column(
        raw, columns, "identity_type", "identity_type_values", IDENTITY_TYPES, required=True
    )
    scheme, scheme_values = check.constant_or_column(
        raw, columns, "scheme", "scheme_values", SCHEMES, required=False
    )
    encoding = check.text(raw, "encoding") or "utf-8-sig"
    if encoding not in ENCODINGS:
        check.fail("encoding", f"must be one of {', '.join(ENCODINGS)}")
    amount_unit = check.text(raw, "amount_unit") or "fen"
    if amount_unit not in AMOUNT_UNITS:
        check.fail("amount_unit", "must be fen (whole fen) or yuan (up to two decimals)")
    formats = check.table(raw, "formats")
    check.known(formats, _FORMAT_KEYS, "formats.")
    return RollMapping(
        name=name,
        description=check.text(raw, "description"),
        encoding=encoding,
        sheet=check.text(raw, "sheet") or None,
        columns=columns,
        identity_type=identity_type,
        identity_type_values=identity_type_values,
        scheme=scheme,
        scheme_values=scheme_values,
        amount_unit=amount_unit,
        payment_start=check.day_format(formats, "payment_start", "%Y-%m"),
        valid_until=check.day_format(formats, "valid_until", "%Y-%m-%d"),
    )


class _Checker(MappingChecker):
    def constant_or_column(
        self,
        raw: dict[str, Any],
        columns: dict[str, str],
        key: str,
        values_key: str,
        allowed: dict[str, int],
        *,
        required: bool,
    ) -> tuple[int | None, dict[str, int]]:
        constant = self.text(raw, key)
        column = columns.get(key)
        table = self.table(raw, values_key)
        choices = ", ".join(allowed)
        if constant and column:
            self.fail(key, f"give either {key} or columns.{key}, not both")
        if constant:
            if table:
                self.fail(values_key, f"is only used with columns.{key}")
            if constant not in allowed:
                self.fail(key, f"must be one of {choices}")
            return allowed[constant], {}
        if not column:
            if required:
                self.fail(
                    key, f"is required: a constant {key}, or columns.{key} with [{values_key}]"
                )
            return None, {}
        if not table:
            self.fail(values_key, f"is required with columns.{key}: cell value = {key} name")
        translated: dict[str, int] = {}
        for cell, target in table.items():
            if not isinstance(target, str) or target not in allowed:
                self.fail(f"{values_key}.{cell}", f"must be one of {choices}")
            translated[cell.strip()] = allowed[target]
        return None, translated

    def day_format(self, formats: dict[str, Any], key: str, default: str) -> DayFormat:
        pattern = self.text(formats, key, "formats.") or default
        if any(directive in pattern for directive in _TIME_DIRECTIVES):
            self.fail(f"formats.{key}", "names a day or a month: no time of day")
        if "%Y" not in pattern or "%m" not in pattern:
            self.fail(f"formats.{key}", "must contain the year (%Y) and the month (%m)")
        sample = date(2024, 6, 23)
        try:
            rendered = sample.strftime(pattern)
            datetime.strptime(rendered, pattern)
        except ValueError:
            self.fail(f"formats.{key}", "is not a usable strptime pattern")
        return DayFormat(pattern)
