"""Feed reading and mapping without a node: line numbers, reasons, batching and content keys.

The recorder here only keeps what it is given and answers APPLIED; the node's own answers
(duplicates across runs, unknown persons) are exercised against a real node in
tests/integration/adapters.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from adapters.errors import FeedFileError, MappingError
from adapters.feed_mappings import load_mapping
from adapters.feeds import (
    FeedImporter,
    FeedImportSummary,
    RejectsFile,
    SignalMapper,
    SignalsRefusedError,
    content_key,
    feed_format,
)
from certfed.v1 import common_pb2, desk_pb2
from federation.errors import UnavailableError
from federation.timestamps import to_datetime
from tests.helpers.identities import resident_id

NOW = datetime(2025, 3, 1, tzinfo=UTC)


def resident(serial: int, region: str = "440600") -> str:
    return resident_id(region, date(1950, 1, 1), serial)


def wrong_check(number: str) -> str:
    return number[:-1] + ("1" if number[-1] != "1" else "2")


class KeepingRecorder:
    """Keeps every batch it receives; refuses a signal whose record id is in `refuse`."""

    def __init__(self, refuse: set[str] | None = None) -> None:
        self.batches: list[list[desk_pb2.DataSignal]] = []
        self.refuse = refuse or set()

    def record(self, signals: Sequence[desk_pb2.DataSignal]) -> Sequence[desk_pb2.SignalResult]:
        if any(signal.source_record_id in self.refuse for signal in signals):
            raise SignalsRefusedError("signals[0].observed_at: is in the future")
        self.batches.append(list(signals))
        return [desk_pb2.SignalResult(outcome=desk_pb2.SIGNAL_OUTCOME_APPLIED) for _ in signals]

    @property
    def signals(self) -> list[desk_pb2.DataSignal]:
        return [signal for batch in self.batches for signal in batch]


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def run_import(
    path: Path,
    mapping_name: str = "hospital_admissions",
    *,
    batch_size: int = 1000,
    recorder: KeepingRecorder | None = None,
) -> tuple[FeedImportSummary, KeepingRecorder, list[tuple[int, str]]]:
    mapping = load_mapping(mapping_name)
    recorder = recorder or KeepingRecorder()
    rejects: list[tuple[int, str]] = []
    importer = FeedImporter(
        recorder,
        SignalMapper(mapping, mapping.source, NOW),
        reject=lambda line, reason: rejects.append((line, reason)),
        batch_size=batch_size,
    )
    summary = importer.run(path, feed_format(path, None))
    return summary, recorder, rejects


HEADER = ("admission_no", "id_number", "name", "admission_date")


def test_good_csv_rows_become_signals_in_batches_with_normalised_numbers(tmp_path: Path) -> None:
    rows = [(f"A{i}", resident(i), "Name", "2024-06-23") for i in range(1, 6)]
    rows[0] = ("A1", resident(1)[:-1] + resident(1)[-1].lower(), "Name", "2024-06-23")
    summary, recorder, rejects = run_import(
        write_csv(tmp_path / "admissions.csv", HEADER, rows), batch_size=2
    )
    assert rejects == []
    assert (summary.rows, summary.applied, summary.rejected) == (5, 5, 0)
    assert [len(batch) for batch in recorder.batches] == [2, 2, 1]
    first = recorder.signals[0]
    assert first.source == "hospital-admissions"
    assert first.source_record_id == "A1"
    assert first.kind == desk_pb2.SIGNAL_KIND_HOSPITAL_ADMISSION
    assert first.identity_type == common_pb2.IDENTITY_TYPE_RESIDENT_ID
    assert first.identity_number == resident(1)
    assert to_datetime(first.observed_at) == datetime(2024, 6, 23, tzinfo=UTC)


def test_bad_rows_are_rejected_with_line_and_reason_and_the_good_ones_kept(
    tmp_path: Path,
) -> None:
    bad_number = wrong_check(resident(2))
    path = tmp_path / "admissions.csv"
    path.write_text(
        "admission_no,id_number,name,admission_date\n"
        f"A1,{resident(1)},Name,2024-06-23\n"
        f"A2,{bad_number},Name,2024-06-23\n"
        f"A3,{resident(3)},Name,2024-13-01\n"
        f"A4,{resident(4)}\n"
        f"A5,{resident(5)},Name,,\n"
        f'A6,{resident(6)},"Name\nover two lines",2024-06-24\n'
        f"A7,{resident(7)},Name,2099-01-01\n"
        f"A8,,Name,2024-06-23\n"
        "\n"
        f"A9,{resident(9)},Name,2024-06-25\n",
        encoding="utf-8",
    )
    summary, recorder, rejects = run_import(path)
    assert [signal.source_record_id for signal in recorder.signals] == ["A1", "A6", "A9"]
    assert summary.applied == 3
    assert summary.rejected == 6
    assert [line for line, _ in rejects] == [3, 4, 5, 6, 9, 10]
    reasons = dict(rejects)
    assert reasons[3].startswith("column 'id_number': the check character does not match")
    assert reasons[4] == "column 'admission_date' is not a date in the format %Y-%m-%d"
    assert reasons[5] == "column 'admission_date' is missing"
    assert "has 5 fields but the header has 4" in reasons[6]
    assert reasons[9] == "column 'admission_date' is a date in the future"
    assert reasons[10] == "column 'id_number' is empty"
    for _, reason in rejects:
        assert bad_number not in reason
        assert resident(4) not in reason


def test_a_rejects_file_lists_line_and_reason(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "admissions.csv",
        HEADER,
        [("A1", wrong_check(resident(1)), "N", "2024-06-23"), ("A2", resident(2), "N", "x")],
    )
    mapping = load_mapping("hospital_admissions")
    with RejectsFile(tmp_path / "rejects.csv") as rejects:
        FeedImporter(
            KeepingRecorder(), SignalMapper(mapping, mapping.source, NOW), reject=rejects
        ).run(path, "csv")
    with (tmp_path / "rejects.csv").open(encoding="utf-8", newline="") as handle:
        lines = list(csv.reader(handle))
    assert lines[0] == ["line", "reason"]
    assert [line for line, _ in lines[1:]] == ["2", "3"]


def test_a_missing_mapped_column_stops_the_file_before_anything_is_sent(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "admissions.csv",
        ("admission_no", "id_number", "date"),
        [("A1", resident(1), "2024-06-23")],
    )
    with pytest.raises(FeedFileError, match="no column 'admission_date'") as caught:
        run_import(path)
    assert "the header has: admission_no, id_number, date" in str(caught.value)


@pytest.mark.parametrize("content", ["", "\n\n"])
def test_an_empty_csv_file_is_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "admissions.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(FeedFileError, match="empty"):
        run_import(path)


def test_a_header_without_rows_is_refused_as_having_no_rows(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "admissions.csv", HEADER, [])
    with pytest.raises(FeedFileError, match="has no rows"):
        run_import(path)


def test_a_header_naming_a_column_twice_is_refused(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "a.csv", (*HEADER, "id_number"), [])
    with pytest.raises(FeedFileError, match="names column 'id_number' twice"):
        run_import(path)


def test_json_lines_rows_keep_their_line_numbers_and_reasons(tmp_path: Path) -> None:
    good = {"crossing_id": "X1", "document_type": "居民身份证", "document_number": resident(1)}
    lines = [
        json.dumps({**good, "crossed_at": "2024-06-23T08:15:00"}, ensure_ascii=False),
        "",
        "{not json",
        json.dumps(["a", "list"]),
        json.dumps({**good, "crossing_id": "X2", "document_type": "library card",
                    "crossed_at": "2024-06-23"}, ensure_ascii=False),
        json.dumps({**good, "crossing_id": "X3"}, ensure_ascii=False),
        json.dumps({**good, "crossing_id": 4, "crossed_at": "2024-06-24T00:00:00+00:00"},
                   ensure_ascii=False),
        json.dumps({**good, "crossing_id": "X5", "document_number": 12345,
                    "crossed_at": "2024-06-24"}),
    ]  # fmt: skip
    path = tmp_path / "crossings.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    summary, recorder, rejects = run_import(path, "border_crossings")
    assert [s.source_record_id for s in recorder.signals] == ["X1", "4"]
    assert to_datetime(recorder.signals[0].observed_at) == datetime(2024, 6, 23, 0, 15, tzinfo=UTC)
    assert summary.rows == 7
    assert [line for line, _ in rejects] == [3, 4, 5, 6, 8]
    reasons = dict(rejects)
    assert reasons[3].startswith("is not valid JSON")
    assert reasons[4] == "is not a JSON object"
    assert reasons[5].startswith("column 'document_type' has a value the mapping does not know")
    assert reasons[6] == "column 'crossed_at' is missing"
    assert reasons[8].startswith("column 'document_number': a resident ID number has 18")


def test_a_badly_encoded_line_is_rejected_alone(tmp_path: Path) -> None:
    path = tmp_path / "admissions.csv"
    path.write_bytes(
        b"admission_no,id_number,name,admission_date\n"
        + f"A1,{resident(1)},\xe5\xbc\xa0,2024-06-23\n".encode("latin-1")
        + f"A2,{resident(2)},Name,2024-06-23\n".encode()
        + b"A3,"
        + resident(3).encode()
        + b",\xff\xfe,2024-06-23\n"
    )
    summary, recorder, rejects = run_import(path)
    assert [s.source_record_id for s in recorder.signals] == ["A1", "A2"]
    assert rejects == [(4, "is not valid text in the feed's encoding")]
    assert summary.rejected == 1


def test_a_utf8_bom_and_chinese_headers_are_read(tmp_path: Path) -> None:
    path = tmp_path / "deaths.csv"
    path.write_bytes(
        "\ufeff注销编号,公民身份号码,姓名,死亡日期\r\n"
        f"D1,{resident(1)},张三,2024-07-02\r\n".encode()
    )
    summary, recorder, _ = run_import(path, "death_registrations")
    assert summary.applied == 1
    assert recorder.signals[0].kind == desk_pb2.SIGNAL_KIND_DEATH_REGISTRATION


def test_a_feed_without_record_ids_gets_stable_content_keys(tmp_path: Path) -> None:
    rows = [
        ("ID", resident(1), "2024-06-23T09:00:00"),
        ("ID", resident(1), "2024-06-23T09:00:00"),
        ("ID", resident(1), "2024-06-23T10:00:00"),
    ]
    csv_path = write_csv(tmp_path / "checks.csv", ("id_type", "id_number", "checked_at"), rows)
    summary, recorder, _ = run_import(csv_path, "travel_security_checks")
    # The repeated row is the same record: counted as a duplicate, sent once.
    assert (summary.applied, summary.duplicates) == (2, 1)
    keys = [signal.source_record_id for signal in recorder.signals]
    assert keys[0] != keys[1]
    assert all(len(key) == 64 and resident(1) not in key for key in keys)
    # The same content in JSON Lines, columns in another order, gets the same keys.
    jsonl_path = tmp_path / "checks.jsonl"
    jsonl_path.write_text(
        "\n".join(
            json.dumps({"checked_at": when, "id_number": number, "id_type": kind})
            for kind, number, when in rows
        ),
        encoding="utf-8",
    )
    _, again, _ = run_import(jsonl_path, "travel_security_checks")
    assert [signal.source_record_id for signal in again.signals] == keys
    assert keys[0] == content_key(
        desk_pb2.SIGNAL_KIND_TRAVEL_SECURITY_CHECK,
        common_pb2.IDENTITY_TYPE_RESIDENT_ID,
        resident(1),
        datetime(2024, 6, 23, 1, tzinfo=UTC),
    )


def test_a_batch_the_node_refuses_is_resent_one_by_one_rejecting_only_the_bad_row(
    tmp_path: Path,
) -> None:
    rows = [(f"A{i}", resident(i), "N", "2024-06-23") for i in range(1, 5)]
    path = write_csv(tmp_path / "admissions.csv", HEADER, rows)
    summary, recorder, rejects = run_import(
        path, batch_size=10, recorder=KeepingRecorder(refuse={"A3"})
    )
    assert [s.source_record_id for s in recorder.signals] == ["A1", "A2", "A4"]
    assert rejects == [(4, "refused by the node: signals[0].observed_at: is in the future")]
    assert (summary.applied, summary.rejected) == (3, 1)


def test_the_format_comes_from_the_suffix_or_must_be_given(tmp_path: Path) -> None:
    assert feed_format(tmp_path / "a.CSV", None) == "csv"
    assert feed_format(tmp_path / "a.ndjson", None) == "jsonl"
    assert feed_format(tmp_path / "a.txt", "jsonl") == "jsonl"
    with pytest.raises(FeedFileError, match="--format"):
        feed_format(tmp_path / "a.txt", None)
    with pytest.raises(FeedFileError, match="must be one of"):
        feed_format(tmp_path / "a.csv", "xml")


def test_a_batch_size_outside_the_limits_is_refused() -> None:
    mapping = load_mapping("hospital_admissions")
    with pytest.raises(FeedFileError, match="batch_size"):
        FeedImporter(KeepingRecorder(), SignalMapper(mapping, "s", NOW), reject=print, batch_size=0)


def test_a_bad_source_name_is_refused_and_a_long_record_id_rejects_only_its_row(
    tmp_path: Path,
) -> None:
    mapping = load_mapping("hospital_admissions")
    with pytest.raises(MappingError, match="source"):
        SignalMapper(mapping, "Foshan Hospitals", NOW)
    rows = [("A" * 129, resident(1), "N", "2024-06-23"), ("A2", resident(2), "N", "2024-06-23")]
    _, recorder, rejects = run_import(write_csv(tmp_path / "a.csv", HEADER, rows))
    assert [s.source_record_id for s in recorder.signals] == ["A2"]
    assert rejects == [(2, "column 'admission_no' is longer than 128 characters")]


class DownRecorder(KeepingRecorder):
    def record(self, signals: Sequence[desk_pb2.DataSignal]) -> Sequence[desk_pb2.SignalResult]:
        if self.batches:
            raise UnavailableError("RecordSignals failed: UNAVAILABLE: connection refused")
        return super().record(signals)


def test_a_node_that_goes_away_stops_the_import_naming_where_to_resume(tmp_path: Path) -> None:
    rows = [(f"A{i}", resident(i), "N", "2024-06-23") for i in range(1, 6)]
    path = write_csv(tmp_path / "admissions.csv", HEADER, rows)
    with pytest.raises(UnavailableError, match=r"batch starting on line 4.*again") as caught:
        run_import(path, batch_size=2, recorder=DownRecorder())
    assert "connection refused" in str(caught.value)
