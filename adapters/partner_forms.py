"""Partner forms: the Hong Kong / Macau proof-of-life assistance form (在生证明协查表) as CSV or
XLSX, in and out.

A liaison desk keeps its requests in a spreadsheet, one person per row; submitting them and
filling in the results is `adapters.partner_requests`. A form is written back in the layout it
came in: the same columns in the same order, unknown columns kept, the result columns added at
the end when the form lacked them.

Header cells are bilingual ("姓名 / Name"); a cell matches a column when it equals the whole
label, its Chinese half or its English half (case and spacing ignored), so a desk's own
spreadsheet works as long as its headers use either language. The header row may sit below
title rows (it is the first of the first ten rows that names every required column). Row
numbers in messages are the spreadsheet's own, so a clerk finds the row. Messages never repeat
a cell's value. The layout is documented in docs/adapters.md.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Protocol

from openpyxl import Workbook, load_workbook
from openpyxl.utils.exceptions import InvalidFileException

from adapters.bank_files import write_atomically
from adapters.errors import FormFileError, SpreadsheetTooLargeError
from adapters.spreadsheet import MAX_SHEET_ROWS, check_xlsx_size, csv_text, keep_as_text
from certfed.v1 import common_pb2

SHEET_NAME = "在生证明协查表"
# The offices and desks on both sides of the form keep Beijing / Hong Kong / Macau time.
FORM_TIMEZONE = timezone(timedelta(hours=8), "UTC+08:00")
HEADER_SEARCH_ROWS = 10


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    required: bool = False

    @property
    def names(self) -> frozenset[str]:
        halves = [part.strip() for part in self.label.split("/")]
        return frozenset(normalised_label(name) for name in (self.label, *halves))


REQUEST_COLUMNS = (
    Column("seq", "序号 / No."),
    Column("name", "姓名 / Name", required=True),
    Column("id_type", "证件类型 / ID type", required=True),
    Column("id_number", "证件号码 / ID number", required=True),
    Column("residence_region", "居住地区 / Residence region", required=True),
    Column("paying_region", "待遇发放地区 / Paying region"),
    Column("phone", "联系电话 / Phone"),
    Column("address", "居住地址 / Address"),
    Column("deadline", "协查截止日期 / Deadline", required=True),
    Column("note", "备注 / Note"),
)
RESULT_COLUMNS = (
    Column("request_id", "协查编号 / Request ID"),
    Column("status", "协查状态 / Status"),
    Column("certified_on", "认证日期 / Certification date"),
    Column("method", "认证方式 / Method"),
    Column("outcome", "认证结果 / Outcome"),
    Column("attestation_id", "证明编号 / Attestation ID"),
    Column("remark", "处理说明 / Processing note"),
)
COLUMNS = REQUEST_COLUMNS + RESULT_COLUMNS

ID_TYPES: dict[str, tuple[str, int]] = {
    "resident_id": ("居民身份证 / Resident ID", common_pb2.IDENTITY_TYPE_RESIDENT_ID),
    "hkid": ("香港身份证 / HKID", common_pb2.IDENTITY_TYPE_HKID),
    "macau_bir": ("澳门身份证 / Macau BIR", common_pb2.IDENTITY_TYPE_MACAU_BIR),
    "passport": ("护照 / Passport", common_pb2.IDENTITY_TYPE_PASSPORT),
}
STATUS_LABELS = {
    common_pb2.ASSISTANCE_STATUS_QUEUED: "待发送 / queued",
    common_pb2.ASSISTANCE_STATUS_RECEIVED: "已送达 / received",
    common_pb2.ASSISTANCE_STATUS_ACCEPTED: "已受理 / accepted",
    common_pb2.ASSISTANCE_STATUS_SCHEDULED: "已预约 / scheduled",
    common_pb2.ASSISTANCE_STATUS_DECLINED: "已退回 / declined",
    common_pb2.ASSISTANCE_STATUS_COMPLETED: "已完成 / completed",
}
METHOD_LABELS = {
    common_pb2.CERTIFICATION_METHOD_FACE_RECOGNITION: "人脸识别 / face recognition",
    common_pb2.CERTIFICATION_METHOD_ON_SITE: "现场认证 / on site",
    common_pb2.CERTIFICATION_METHOD_VIDEO_CALL: "视频认证 / video call",
    common_pb2.CERTIFICATION_METHOD_HOME_VISIT: "上门认证 / home visit",
    common_pb2.CERTIFICATION_METHOD_DATA_MATCH: "数据比对 / data match",
    common_pb2.CERTIFICATION_METHOD_CONSULATE: "使领馆 / consulate",
    common_pb2.CERTIFICATION_METHOD_PARTNER_AGENCY: "合作机构 / partner agency",
    common_pb2.CERTIFICATION_METHOD_EMPLOYER_BATCH: "单位批量 / employer batch",
}
OUTCOME_LABELS = {
    common_pb2.CERTIFICATION_OUTCOME_ALIVE: "在世 / alive",
    common_pb2.CERTIFICATION_OUTCOME_DECEASED: "死亡 / deceased",
    common_pb2.CERTIFICATION_OUTCOME_IMPRISONED: "服刑 / imprisoned",
    common_pb2.CERTIFICATION_OUTCOME_DECLARED_MISSING: "宣告失踪 / declared missing",
}
REMARK_REQUESTED = "已提交 / requested"
REMARK_ALREADY = "已提交过 未重复提交 / already requested, not sent again"
REMARK_NOT_REQUESTED = "未提交 请先导入此行 / not requested: import this row first"


def normalised_label(text: str) -> str:
    return " ".join(text.split()).casefold()


Cell = str | int | float | date | datetime | None


@dataclass
class FormTable:
    """A form as read: rows above the header, the header cells, and the data rows."""

    header: list[str]
    rows: list[list[Cell]]
    # Spreadsheet row number of each data row (1-based, as a clerk sees it).
    row_numbers: list[int]
    columns: dict[str, int] = field(default_factory=dict)
    # Rows above the header (a title, the issuing office), written back as they were.
    preamble: list[list[Cell]] = field(default_factory=list)
    # The sheet an .xlsx file holds the form in (adapters/overseas_forms.py names its own).
    sheet_name: str = SHEET_NAME

    def cell(self, index: int, key: str) -> Cell:
        position = self.columns.get(key)
        row = self.rows[index]
        if position is None or position >= len(row):
            return None
        return row[position]

    def text(self, index: int, key: str) -> str:
        value = self.cell(index, key)
        if value is None:
            return ""
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return str(value).strip()

    def set(self, index: int, key: str, value: str) -> None:
        position = self.columns.get(key)
        if position is None:
            position = len(self.header)
            self.header.append(next(c.label for c in COLUMNS if c.key == key))
            self.columns[key] = position
        row = self.rows[index]
        row.extend([None] * (position + 1 - len(row)))
        row[position] = value


def locate_header(
    raw_rows: Sequence[Sequence[Cell]], where: str
) -> tuple[int, list[str], dict[str, int]]:
    """The header row's index among `raw_rows`, its cells, and each known column's position."""
    required = [column for column in REQUEST_COLUMNS if column.required]
    best: tuple[int, list[str]] | None = None
    for index, raw in enumerate(raw_rows[:HEADER_SEARCH_ROWS]):
        cells = ["" if cell is None else str(cell).strip() for cell in raw]
        found = _match_columns(cells, where, index + 1)
        missing = [column.label for column in required if column.key not in found]
        if not missing:
            return index, cells, found
        if found and (best is None or len(found) > len(_match_columns(best[1], where, 0))):
            best = (index, cells)
    if best is None:
        raise FormFileError(
            where,
            f"no header row in the first {HEADER_SEARCH_ROWS} rows; the header names the "
            "columns, e.g. " + ", ".join(column.label for column in required),
        )
    found = _match_columns(best[1], where, best[0] + 1)
    missing = [column.label for column in required if column.key not in found]
    raise FormFileError(
        where, f"row {best[0] + 1} (the header) lacks the column(s) {', '.join(missing)}"
    )


def _match_columns(cells: Sequence[str], where: str, row_number: int) -> dict[str, int]:
    found: dict[str, int] = {}
    for position, cell in enumerate(cells):
        name = normalised_label(cell)
        if not name:
            continue
        for column in COLUMNS:
            if name in column.names:
                if column.key in found:
                    raise FormFileError(
                        where, f"row {row_number} (the header) names {column.label} twice"
                    )
                found[column.key] = position
    return found


class PartnerFormFile(Protocol):
    """Reads and writes the form in one file format."""

    suffix: str

    def read(self, path: Path, sheet: str | None = None) -> FormTable: ...

    def write(self, path: Path, table: FormTable) -> None: ...


def _table(raw_rows: list[list[Cell]], where: str, first_row_number: int = 1) -> FormTable:
    if not any(any(cell not in (None, "") for cell in raw) for raw in raw_rows):
        raise FormFileError(where, "is empty")
    header_index, header, columns = locate_header(raw_rows, where)
    rows: list[list[Cell]] = []
    numbers: list[int] = []
    for offset, raw in enumerate(raw_rows[header_index + 1 :], start=header_index + 1):
        if all(cell in (None, "") or str(cell).strip() == "" for cell in raw):
            continue
        rows.append(list(raw))
        numbers.append(first_row_number + offset)
    return FormTable(header, rows, numbers, columns, [list(raw) for raw in raw_rows[:header_index]])


class CsvPartnerForm:
    """UTF-8 CSV (a BOM accepted and written, so spreadsheet programs show the Chinese)."""

    suffix = ".csv"

    def read(self, path: Path, sheet: str | None = None) -> FormTable:
        if sheet:
            raise FormFileError("sheet", "a CSV form has no sheets")
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError:
            raise FormFileError(
                path.name, "is not UTF-8 text; save the form as CSV UTF-8"
            ) from None
        except OSError as error:
            raise FormFileError(path.name, f"cannot be read ({error.strerror})") from None
        try:
            raw_rows: list[list[Cell]] = [
                list(row) for row in csv.reader(io.StringIO(text, newline=""))
            ]
        except csv.Error as error:
            raise FormFileError(path.name, f"is not well-formed CSV ({error})") from None
        return _table(raw_rows, path.name)

    def write(self, path: Path, table: FormTable) -> None:
        buffer = io.StringIO(newline="")
        writer = csv.writer(buffer, lineterminator="\r\n")
        for above in table.preamble:
            writer.writerow(_csv_cell(cell) for cell in above)
        writer.writerow(_csv_cell(cell) for cell in table.header)
        for row in table.rows:
            writer.writerow(_csv_cell(cell) for cell in row)
        write_atomically(path, ("\ufeff" + buffer.getvalue()).encode("utf-8"))


def _xlsx_cell(value: object) -> Cell:
    """A cell's value as the form reads it: dates and numbers kept, anything else as text."""
    if value is None or isinstance(value, str | int | float | date):
        return value
    return str(value)


def _csv_cell(cell: Cell) -> str:
    if cell is None:
        return ""
    if isinstance(cell, datetime):
        return cell.date().isoformat() if cell.time() == time() else cell.isoformat(" ")
    if isinstance(cell, date):
        return cell.isoformat()
    if isinstance(cell, str):
        return csv_text(cell)
    return str(cell)


class XlsxPartnerForm:
    """An Excel workbook; the form is the sheet named 在生证明协查表, or the only sheet."""

    suffix = ".xlsx"

    def read(self, path: Path, sheet: str | None = None) -> FormTable:
        check_xlsx_size(path)
        try:
            workbook = load_workbook(path, read_only=True, data_only=True)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, InvalidFileException) as error:
            raise FormFileError(path.name, f"is not an .xlsx workbook ({error})") from None
        try:
            names = workbook.sheetnames
            if sheet is not None:
                if sheet not in names:
                    raise FormFileError(
                        path.name, f"has no sheet {sheet!r} (its sheets: {', '.join(names)})"
                    )
                chosen = sheet
            elif SHEET_NAME in names:
                chosen = SHEET_NAME
            elif len(names) == 1:
                chosen = names[0]
            else:
                raise FormFileError(
                    path.name,
                    f"has no sheet named {SHEET_NAME} and several others "
                    f"({', '.join(names)}); name the form's sheet with --sheet",
                )
            worksheet = workbook[chosen]
            raw_rows: list[list[Cell]] = []
            for row in worksheet.iter_rows(values_only=True):
                if len(raw_rows) == MAX_SHEET_ROWS:
                    raise SpreadsheetTooLargeError(
                        f"{path.name}, sheet {chosen}",
                        f"has more than {MAX_SHEET_ROWS:,} rows: split the form",
                    )
                raw_rows.append([_xlsx_cell(cell) for cell in row])
        finally:
            workbook.close()
        return _table(raw_rows, f"{path.name}, sheet {chosen}")

    def write(self, path: Path, table: FormTable) -> None:
        workbook = Workbook()
        worksheet = workbook.active
        assert worksheet is not None
        worksheet.title = table.sheet_name
        for above in table.preamble:
            worksheet.append(list(above))
        worksheet.append(table.header)
        first_data_row = len(table.preamble) + 2
        text_columns = {
            table.columns[key] for key in ("id_number", "phone") if key in table.columns
        }
        for row in table.rows:
            worksheet.append(list(row))
        keep_as_text(worksheet)
        # Identity and phone numbers are text: as numbers, Excel would round 18 digits.
        for position in text_columns:
            for (cell,) in worksheet.iter_rows(
                min_row=first_data_row, min_col=position + 1, max_col=position + 1
            ):
                cell.number_format = "@"
        buffer = io.BytesIO()
        workbook.save(buffer)
        write_atomically(path, buffer.getvalue())


FORMATS: dict[str, PartnerFormFile] = {".csv": CsvPartnerForm(), ".xlsx": XlsxPartnerForm()}


def form_file(path: Path) -> PartnerFormFile:
    layout = FORMATS.get(path.suffix.lower())
    if layout is None:
        raise FormFileError(path.name, "must be a .csv or .xlsx file")
    return layout
