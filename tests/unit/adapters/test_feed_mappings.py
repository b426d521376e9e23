"""Feed mapping files: every shipped mapping loads; a broken one is refused naming the setting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from adapters.errors import MappingError
from adapters.feed_mappings import (
    DateFormat,
    builtin_mapping_names,
    load_mapping,
    parse_mapping,
)
from certfed.v1 import common_pb2, desk_pb2

MINIMAL = """
source = "test-feed"
kind = "hospital_admission"
identity_type = "resident_id"
[columns]
identity_number = "id"
observed_at = "day"
[observed_at]
format = "%Y-%m-%d"
"""


def test_every_shipped_mapping_loads_and_each_signal_kind_family_is_covered() -> None:
    names = builtin_mapping_names()
    kinds: set[int] = set()
    for name in names:
        mapping = load_mapping(name)
        assert mapping.name == name
        assert mapping.description
        kinds |= {mapping.kind} if mapping.kind is not None else set(mapping.kind_values.values())
    expected = {
        value for value in desk_pb2.SignalKind.values() if value != desk_pb2.SIGNAL_KIND_UNSPECIFIED
    }
    assert kinds == expected


def test_a_mapping_file_is_loaded_by_path(tmp_path: Path) -> None:
    path = tmp_path / "my_feed.toml"
    path.write_text(MINIMAL, encoding="utf-8")
    mapping = load_mapping(str(path))
    assert mapping.name == "my_feed"
    assert mapping.columns == ("id", "day")
    assert mapping.record_id_column is None
    assert mapping.kind == desk_pb2.SIGNAL_KIND_HOSPITAL_ADMISSION
    assert mapping.identity_type == common_pb2.IDENTITY_TYPE_RESIDENT_ID


def test_an_unknown_mapping_name_lists_the_shipped_ones() -> None:
    with pytest.raises(MappingError, match="hospital_admissions"):
        load_mapping("no_such_feed")


@pytest.mark.parametrize(
    ("change", "setting", "problem"),
    [
        (("[columns]", "[columns]\ncolour = 'x'"), "columns.colour", "unknown setting"),
        (('source = "test-feed"', "sauce = 'x'"), "sauce", "unknown setting"),
        (('source = "test-feed"', ""), "source", "is required"),
        (('source = "test-feed"', 'source = "Test Feed"'), "source", "lowercase"),
        (('observed_at = "day"', ""), "columns.observed_at", "is required"),
        (('observed_at = "day"', 'observed_at = "id"'), "columns.observed_at", "same column"),
        (('kind = "hospital_admission"', 'kind = "picnic"'), "kind", "must be one of"),
        (('kind = "hospital_admission"', ""), "kind", "is required"),
        (('identity_type = "resident_id"', 'identity_type = "library_card"'), "identity_type", ""),
        (('format = "%Y-%m-%d"', 'format = "%m-%d"'), "observed_at.format", "year"),
        (("[observed_at]", "[observed_at]\nutc_offset = '8'"), "observed_at.utc_offset", "+08:00"),
        (('format = "%Y-%m-%d"', ""), "observed_at.format", "is required"),
        (("[columns]", "encoding = 'latin-1'\n[columns]"), "encoding", "must be one of"),
    ],
)
def test_a_broken_mapping_is_refused_naming_the_setting(
    change: tuple[str, str], setting: str, problem: str
) -> None:
    text = MINIMAL.replace(*change, 1)
    with pytest.raises(MappingError) as caught:
        parse_mapping(text, "broken")
    assert caught.value.field == f"mapping broken, {setting}"
    assert problem in caught.value.problem


def test_a_kind_column_needs_a_value_table_and_excludes_a_constant() -> None:
    with_column = MINIMAL.replace('observed_at = "day"', 'observed_at = "day"\nkind = "event"')
    with pytest.raises(MappingError, match=r"either kind or columns\.kind"):
        parse_mapping(with_column, "both")
    no_table = with_column.replace('kind = "hospital_admission"\n', "")
    with pytest.raises(MappingError, match="kind_values: is required"):
        parse_mapping(no_table, "no_table")
    bad_table = no_table + '[kind_values]\nin = "hospital_admission"\nout = "brunch"\n'
    with pytest.raises(MappingError, match=r"kind_values\.out"):
        parse_mapping(bad_table, "bad_table")
    good = no_table + '[kind_values]\nin = "hospital_admission"\nout = "hospital_discharge"\n'
    mapping = parse_mapping(good, "good")
    assert mapping.kind is None
    assert mapping.kind_column == "event"
    assert mapping.kind_values == {
        "in": desk_pb2.SIGNAL_KIND_HOSPITAL_ADMISSION,
        "out": desk_pb2.SIGNAL_KIND_HOSPITAL_DISCHARGE,
    }


def test_invalid_toml_is_refused_with_the_mapping_name() -> None:
    with pytest.raises(MappingError, match="mapping oops: is not valid TOML"):
        parse_mapping("source = ", "oops")


BEIJING = timezone(timedelta(hours=8))


def test_a_date_without_time_is_that_calendar_day_at_midnight_utc() -> None:
    assert DateFormat("%Y-%m-%d", BEIJING).parse("2024-06-23") == datetime(2024, 6, 23, tzinfo=UTC)
    assert DateFormat("%Y%m%d", BEIJING).parse(" 20240229 ") == datetime(2024, 2, 29, tzinfo=UTC)
    assert DateFormat("iso", BEIJING).parse("2024-06-23") == datetime(2024, 6, 23, tzinfo=UTC)


def test_a_local_time_is_read_at_the_feed_offset_and_an_explicit_offset_wins() -> None:
    local = DateFormat("%Y-%m-%d %H:%M:%S", BEIJING)
    assert local.parse("2024-06-23 07:30:00") == datetime(2024, 6, 22, 23, 30, tzinfo=UTC)
    iso = DateFormat("iso", BEIJING)
    assert iso.parse("2024-06-23T07:30:00") == datetime(2024, 6, 22, 23, 30, tzinfo=UTC)
    assert iso.parse("2024-06-23T07:30:00+00:00") == datetime(2024, 6, 23, 7, 30, tzinfo=UTC)


@pytest.mark.parametrize("text", ["2024-02-30", "23/06/2024", "", "2024-06-23x"])
def test_a_cell_that_does_not_fit_the_format_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the parsers' own error type
        DateFormat("%Y-%m-%d", BEIJING).parse(text)
