"""Employer batch lists: a unit's CSV or XLSX of the civil-service retirees it confirms alive,
read through the unit's own mapping file and uploaded as one batch (UploadEmployerBatch) for a
reviewer who is not the uploader to approve or reject as a whole.

A mapping is a TOML file:

    [columns]
    identity_number = "身份证号码"      # the header of the column holding the identity number
    confirmed_on = "确认日期"           # the date the unit confirmed the person alive
    [file]
    identity_type = "resident_id"      # resident_id, hkid, macau_bir or passport
    date_format = "%Y-%m-%d"           # a strptime pattern, or "iso"
    encoding = "utf-8-sig"             # CSV only
    sheet = "名单"                      # XLSX only; the only sheet when absent

Promises: the file is read row by row (openpyxl read-only for XLSX, checked for size before it
is opened); a row the mapping cannot read is rejected with its line and the column, never a
cell's value; nothing is sent when no row is usable; the node answers every row it did not
accept with the reason, which joins the rejects.
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from openpyxl import load_workbook
from openpyxl.utils.exceptions import InvalidFileException

from adapters.csv_records import DecodedLines, csv_records
from adapters.desk_batches import send_batch
from adapters.errors import MappingError, RollFileError
from adapters.feed_mappings import ISO_FORMAT, DateFormat
from adapters.mapping_files import MappingChecker, parse_toml
from adapters.spreadsheet import check_xlsx_size
from certfed.v1 import common_pb2, desk_pb2
from federation.desk_client import DeskClient
from federation.errors import CertfedError, InvalidInputError
from federation.limits import Limits
from federation.timestamps import to_timestamp

IDENTITY_TYPES = {
    "resident_id": common_pb2.IDENTITY_TYPE_RESIDENT_ID,
    "hkid": common_pb2.IDENTITY_TYPE_HKID,
    "macau_bir": common_pb2.IDENTITY_TYPE_MACAU_BIR,
    "passport": common_pb2.IDENTITY_TYPE_PASSPORT,
}
FORMATS = {".csv": "csv", ".xlsx": "xlsx"}
# Dates without an offset are the unit's local time (China Standard Time).
UNIT_OFFSET = timezone(timedelta(hours=8))
MAX_XLSX_ROWS = 100_000

Reject = Callable[[int, str], None]


@dataclass(frozen=True)
class BatchMapping:
    name: str
    identity_number_column: str
    confirmed_on_column: str
    identity_type: int
    dates: DateFormat
    encoding: str = "utf-8-sig"
    sheet: str | None = None

    @property
    def columns(self) -> tuple[str, str]:
        return (self.identity_number_column, self.confirmed_on_column)


def load_batch_mapping(path: Path) -> BatchMapping:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise MappingError(str(path), f"cannot be read ({error.strerror})") from None
    name = path.stem
    raw = parse_toml(text, name, "batch mapping")
    check = MappingChecker(name, "batch mapping")
    check.known(raw, {"columns", "file"}, "")
    columns = check.table(raw, "columns", required=True)
    check.known(columns, {"identity_number", "confirmed_on"}, "columns.")
    settings = check.table(raw, "file")
    check.known(settings, {"identity_type", "date_format", "encoding", "sheet"}, "file.")
    identity_type = check.text(settings, "identity_type", "file.") or "resident_id"
    if identity_type not in IDENTITY_TYPES:
        check.fail("file.identity_type", f"must be one of {', '.join(IDENTITY_TYPES)}")
    pattern = check.text(settings, "date_format", "file.") or "%Y-%m-%d"
    if pattern != ISO_FORMAT:
        try:
            sample = datetime(2024, 6, 23, tzinfo=UTC).strftime(pattern)
            datetime.strptime(sample, pattern)
        except ValueError:
            check.fail("file.date_format", "is not a usable strptime pattern (or 'iso')")
        if "%Y" not in pattern:
            check.fail("file.date_format", "must contain the year (%Y)")
    encoding = check.text(settings, "encoding", "file.") or "utf-8-sig"
    try:
        "".encode(encoding)
    except LookupError:
        check.fail("file.encoding", "is not an encoding Python knows")
    return BatchMapping(
        name=name,
        identity_number_column=check.text(columns, "identity_number", "columns.", required=True),
        confirmed_on_column=check.text(columns, "confirmed_on", "columns.", required=True),
        identity_type=IDENTITY_TYPES[identity_type],
        dates=DateFormat(pattern, UNIT_OFFSET),
        encoding=encoding,
        sheet=check.text(settings, "sheet", "file.") or None,
    )


def _check_header(header: list[str], mapping: BatchMapping, file_name: str) -> None:
    missing = [column for column in mapping.columns if column not in header]
    if missing:
        raise RollFileError(
            file_name,
            f"the header has no column {missing[0]!r}, which the mapping {mapping.name} reads "
            f"(the header has: {', '.join(name for name in header if name)})",
        )


def _csv_rows(path: Path, mapping: BatchMapping) -> Iterator[tuple[int, Mapping[str, Any], str]]:
    with path.open("rb") as stream:
        lines = DecodedLines(stream, mapping.encoding)
        for record in csv_records(
            lines,
            path.name,
            "batch list",
            RollFileError,
            lambda header: _check_header(header, mapping, path.name),
        ):
            yield record.line, record.values, record.problem


def _xlsx_rows(path: Path, mapping: BatchMapping) -> Iterator[tuple[int, Mapping[str, Any], str]]:
    check_xlsx_size(path)
    try:
        workbook = load_workbook(path, read_only=True, data_only=True)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, InvalidFileException):
        raise RollFileError(path.name, "is not an .xlsx workbook") from None
    try:
        names = workbook.sheetnames
        sheet = mapping.sheet or (names[0] if len(names) == 1 else None)
        if sheet is None or sheet not in names:
            raise RollFileError(
                path.name, f"name the list's sheet in the mapping (it has: {', '.join(names)})"
            )
        rows = workbook[sheet].iter_rows(values_only=True)
        first = next(rows, None)
        if first is None:
            raise RollFileError(path.name, f"sheet {sheet!r} is empty")
        header = [str(cell).strip() if cell is not None else "" for cell in first]
        _check_header(header, mapping, path.name)
        for number, cells in enumerate(rows, start=2):
            if number > MAX_XLSX_ROWS:
                raise RollFileError(path.name, f"has more than {MAX_XLSX_ROWS:,} rows")
            if all(cell is None or cell == "" for cell in cells):
                continue
            yield number, dict(zip(header, cells, strict=False)), ""
    finally:
        workbook.close()


def batch_rows(
    path: Path, mapping: BatchMapping, reject: Reject
) -> list[desk_pb2.EmployerBatchRow]:
    """The file's usable rows as the node reads them; each other row goes to `reject`."""
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise RollFileError(path.name, "must be a .csv or .xlsx file")
    reader = _csv_rows if kind == "csv" else _xlsx_rows
    rows: list[desk_pb2.EmployerBatchRow] = []
    for line, values, problem in reader(path, mapping):
        if problem:
            reject(line, problem)
            continue
        try:
            rows.append(_row(line, values, mapping))
        except InvalidInputError as error:
            reject(line, str(error))
    return rows


def _row(line: int, values: Mapping[str, Any], mapping: BatchMapping) -> desk_pb2.EmployerBatchRow:
    number = values.get(mapping.identity_number_column)
    if isinstance(number, bool) or not isinstance(number, str | int) or not str(number).strip():
        raise InvalidInputError(
            f"column {mapping.identity_number_column!r}", "is empty or not text"
        )
    cell = values.get(mapping.confirmed_on_column)
    column = f"column {mapping.confirmed_on_column!r}"
    if isinstance(cell, datetime):
        moment = (cell if cell.tzinfo else cell.replace(tzinfo=UNIT_OFFSET)).astimezone(UTC)
    elif isinstance(cell, date):
        moment = datetime(cell.year, cell.month, cell.day, tzinfo=UTC)
    elif isinstance(cell, str) and cell.strip():
        try:
            moment = mapping.dates.parse(cell)
        except ValueError:
            raise InvalidInputError(
                column, f"is not a date in {mapping.dates.describe()}"
            ) from None
    else:
        raise InvalidInputError(column, "is empty or not a date")
    return desk_pb2.EmployerBatchRow(
        line=line,
        identity_type=mapping.identity_type,  # type: ignore[arg-type]
        identity_number=str(number).strip(),
        observed_at=to_timestamp(moment),
    )


class BatchRefusedError(CertfedError):
    """The node refused the batch as invalid (INVALID_ARGUMENT); the message is its reason."""


def upload_batch(
    desk: DeskClient,
    path: Path,
    mapping: BatchMapping,
    *,
    unit: str,
    reject: Reject,
    limits: Limits | None = None,
) -> desk_pb2.UploadEmployerBatchResponse:
    """Read the file and upload its usable rows as one pending batch; rows the node did not
    accept join `reject` with its reason."""
    rows = batch_rows(path, mapping, reject)
    if not rows:
        raise RollFileError(path.name, "has no usable row; nothing was uploaded")
    most = (limits or Limits()).max_repeated
    if len(rows) > most:
        raise RollFileError(path.name, f"has {len(rows):,} rows; at most {most:,} a batch")
    response: desk_pb2.UploadEmployerBatchResponse = send_batch(
        desk.stub.UploadEmployerBatch,
        desk_pb2.UploadEmployerBatchRequest(
            unit=unit,
            file_name=path.name,
            file_sha256=hashlib.sha256(path.read_bytes()).digest(),
            rows=rows,
        ),
        name="UploadEmployerBatch",
        refused=BatchRefusedError,
        # An upload is not idempotent (each is a new batch): sent once, never retried.
        attempts=1,
        max_delay_s=30.0,
    )
    for result in response.results:
        if not result.accepted:
            reject(result.line, f"refused by the node: {result.message}")
    return response
