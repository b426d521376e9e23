"""Partner forms without a node: CSV and XLSX round trips, header finding, malformed files and
rows reported with their spreadsheet row numbers and never their values."""

from __future__ import annotations

import functools
import zipfile
from datetime import date, datetime
from pathlib import Path

import pytest
from openpyxl import Workbook, load_workbook

from adapters import partner_forms
from adapters.errors import FormFileError, SpreadsheetTooLargeError
from adapters.partner_forms import (
    REQUEST_COLUMNS,
    SHEET_NAME,
    CsvPartnerForm,
    FormTable,
    XlsxPartnerForm,
    form_file,
)
from adapters.partner_requests import FormRowError, deadline_moment, parse_request
from adapters.spreadsheet import MAX_XLSX_UNPACKED_BYTES, check_xlsx_size
from certfed.v1 import common_pb2
from signing.identity import hkid_check_character
from tests.helpers.identities import resident_id

HEADER = [column.label for column in REQUEST_COLUMNS]
NUMBER = resident_id("440600", date(1950, 1, 1), 1)
HKID = "A123456" + hkid_check_character("A123456")


def form_row(**changes: object) -> list[object]:
    values: dict[str, object] = {
        "seq": "1",
        "name": "陈大文",
        "id_type": "居民身份证",
        "id_number": NUMBER,
        "residence_region": "370200",
        "paying_region": "MO",
        "phone": "+853 6612 3456",
        "address": "青岛市市南区香港中路1号",
        "deadline": "2025-09-30",
        "note": "行动不便 请上门",
    }
    values.update(changes)
    return [values[column.key] for column in REQUEST_COLUMNS]


def write_xlsx(path: Path, rows: list[list[object]], sheet: str = SHEET_NAME) -> Path:
    workbook = Workbook()
    worksheet = workbook.active
    assert worksheet is not None
    worksheet.title = sheet
    for row in rows:
        worksheet.append(row)
    workbook.save(path)
    return path


def write_csv(path: Path, rows: list[list[object]]) -> Path:
    import csv

    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_a_form_round_trips_with_its_extra_columns_and_added_results(
    tmp_path: Path, suffix: str
) -> None:
    layout = form_file(tmp_path / f"form{suffix}")
    rows = [[*HEADER, "经办人 / Clerk"], [*form_row(), "Ho"], [*form_row(seq="2", name="李四"), ""]]
    source = tmp_path / f"in{suffix}"
    (write_csv if suffix == ".csv" else write_xlsx)(source, rows)
    table = layout.read(source)
    assert table.row_numbers == [2, 3]
    assert table.text(0, "name") == "陈大文"
    assert table.text(0, "id_number") == NUMBER
    table.set(0, "request_id", "0199aaaa-0000-7000-8000-000000000001")
    table.set(0, "remark", "已提交 / requested")
    out = tmp_path / f"out{suffix}"
    layout.write(out, table)
    again = layout.read(out)
    assert again.header == [*HEADER, "经办人 / Clerk", "协查编号 / Request ID",
                            "处理说明 / Processing note"]  # fmt: skip
    assert again.text(0, "request_id") == "0199aaaa-0000-7000-8000-000000000001"
    assert again.text(1, "request_id") == ""
    assert again.text(0, "note") == "行动不便 请上门"
    assert again.rows[0][again.header.index("经办人 / Clerk")] == "Ho"
    assert [again.text(i, "name") for i in range(2)] == ["陈大文", "李四"]


def test_xlsx_output_keeps_identity_numbers_as_text(tmp_path: Path) -> None:
    table = XlsxPartnerForm().read(write_xlsx(tmp_path / "in.xlsx", [HEADER, form_row()]))
    XlsxPartnerForm().write(tmp_path / "out.xlsx", table)
    sheet = load_workbook(tmp_path / "out.xlsx")[SHEET_NAME]
    cell = sheet.cell(row=2, column=HEADER.index("证件号码 / ID number") + 1)
    assert cell.value == NUMBER
    assert cell.number_format == "@"


HOSTILE_REMARKS = ['=HYPERLINK("http://x","ok")', "+cmd|' /C calc'!A0", "-1+1", "@SUM(A1)"]


@pytest.mark.parametrize("remark", HOSTILE_REMARKS)
def test_a_remark_that_looks_like_a_formula_stays_text_in_xlsx(tmp_path: Path, remark: str) -> None:
    table = XlsxPartnerForm().read(write_xlsx(tmp_path / "in.xlsx", [HEADER, form_row()]))
    table.set(0, "remark", remark)
    XlsxPartnerForm().write(tmp_path / "out.xlsx", table)
    sheet = load_workbook(tmp_path / "out.xlsx")[SHEET_NAME]
    header = [cell.value for cell in sheet[1]]
    cell = sheet.cell(row=2, column=header.index("处理说明 / Processing note") + 1)
    assert cell.value == remark
    assert cell.data_type == "s"


@pytest.mark.parametrize("remark", HOSTILE_REMARKS)
def test_a_remark_that_looks_like_a_formula_is_quoted_in_csv(tmp_path: Path, remark: str) -> None:
    layout = form_file(tmp_path / "form.csv")
    table = layout.read(write_csv(tmp_path / "in.csv", [HEADER, form_row()]))
    table.set(0, "remark", remark)
    layout.write(tmp_path / "out.csv", table)
    assert layout.read(tmp_path / "out.csv").text(0, "remark") == "'" + remark


def test_a_zip_bomb_posing_as_a_workbook_is_refused_before_it_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    unpacked_limit = 1024 * 1024
    bomb = tmp_path / "bomb.xlsx"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("xl/worksheets/sheet1.xml", b"\0" * (16 * unpacked_limit))
    assert bomb.stat().st_size < unpacked_limit / 10
    monkeypatch.setattr(
        partner_forms,
        "check_xlsx_size",
        functools.partial(check_xlsx_size, max_unpacked_bytes=unpacked_limit),
    )
    with pytest.raises(SpreadsheetTooLargeError, match="unpacks to"):
        XlsxPartnerForm().read(bomb)
    assert unpacked_limit < MAX_XLSX_UNPACKED_BYTES


def test_a_workbook_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    big = write_xlsx(tmp_path / "big.xlsx", [HEADER, form_row()])
    with pytest.raises(SpreadsheetTooLargeError, match="split the file"):
        check_xlsx_size(big, max_bytes=100)


def test_headers_in_either_language_below_a_title_row_are_found(tmp_path: Path) -> None:
    english = [label.split("/")[1].strip().upper() for label in HEADER]
    rows = [["澳门社会保障基金 在生证明协查表 2025"], [], english, form_row()]
    table = XlsxPartnerForm().read(write_xlsx(tmp_path / "form.xlsx", rows))
    assert table.row_numbers == [4]
    chinese = [label.split("/")[0].strip() for label in HEADER]
    table = CsvPartnerForm().read(write_csv(tmp_path / "form.csv", [chinese, form_row()]))
    assert table.text(0, "residence_region") == "370200"


def test_a_missing_required_header_is_named(tmp_path: Path) -> None:
    header = [label for label in HEADER if not label.startswith("协查截止日期")]
    path = write_csv(tmp_path / "form.csv", [header, form_row()[:-2]])
    with pytest.raises(FormFileError, match=r"row 1 \(the header\) lacks the column\(s\) 协查截止"):
        CsvPartnerForm().read(path)


def test_a_header_naming_a_column_twice_is_refused(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "form.csv", [[*HEADER, "Name"], form_row()])
    with pytest.raises(FormFileError, match="names 姓名 / Name twice"):
        CsvPartnerForm().read(path)


def test_a_file_without_any_header_is_refused(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "form.csv", [["a", "b"], ["1", "2"]])
    with pytest.raises(FormFileError, match="no header row in the first 10 rows"):
        CsvPartnerForm().read(path)


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_an_empty_form_is_refused(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"form{suffix}"
    if suffix == ".csv":
        path.write_text("", encoding="utf-8")
    else:
        write_xlsx(path, [])
    with pytest.raises(FormFileError, match="is empty"):
        form_file(path).read(path)


def test_the_wrong_sheet_is_refused_naming_the_sheets(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "form.xlsx", [HEADER, form_row()], sheet="Sheet1")
    workbook = load_workbook(path)
    workbook.create_sheet("Sheet2")
    workbook.save(path)
    with pytest.raises(FormFileError, match=r"no sheet named 在生证明协查表 .*Sheet1, Sheet2"):
        XlsxPartnerForm().read(path)
    with pytest.raises(FormFileError, match="has no sheet 'Sheet9'"):
        XlsxPartnerForm().read(path, sheet="Sheet9")
    assert XlsxPartnerForm().read(path, sheet="Sheet1").row_numbers == [2]


def test_a_file_that_is_not_a_workbook_or_not_a_form_format_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "form.xlsx"
    fake.write_text("name,id\n", encoding="utf-8")
    with pytest.raises(FormFileError, match=r"is not an \.xlsx workbook"):
        XlsxPartnerForm().read(fake)
    with pytest.raises(FormFileError, match=r"must be a \.csv or \.xlsx file"):
        form_file(tmp_path / "form.ods")
    gbk = tmp_path / "form.csv"
    gbk.write_bytes(",".join(HEADER).encode("gbk"))
    with pytest.raises(FormFileError, match="not UTF-8"):
        CsvPartnerForm().read(gbk)


def table_of(*rows: list[object]) -> FormTable:
    from adapters.partner_forms import locate_header

    _, header, columns = locate_header([HEADER], "test")
    return FormTable(header, [list(row) for row in rows], list(range(2, 2 + len(rows))), columns)


def test_a_good_row_becomes_an_identity_bundle_and_deadline() -> None:
    request = parse_request(
        table_of(form_row(id_type="HKID", id_number=f"{HKID[:-1]}({HKID[-1]})")), 0
    )
    assert request.identity.identity_type == common_pb2.IDENTITY_TYPE_HKID
    assert request.identity.identity_number == HKID
    assert request.identity.full_name == "陈大文"
    assert request.paying_region == "MO"
    assert request.deadline == date(2025, 9, 30)
    assert deadline_moment(request.deadline).isoformat() == "2025-09-30T23:59:59+08:00"
    dated = parse_request(table_of(form_row(deadline=datetime(2025, 10, 1))), 0)
    assert dated.deadline == date(2025, 10, 1)
    chinese_date = parse_request(table_of(form_row(deadline="2025年10月02日")), 0)
    assert chinese_date.deadline == date(2025, 10, 2)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"id_number": NUMBER[:-1] + ("0" if NUMBER[-1] != "0" else "1")}, "check character"),
        ({"id_number": int(NUMBER[:-1])}, "stored as a number"),
        ({"id_type": "library card"}, "证件类型 / ID type must be one of"),
        ({"name": " "}, "姓名 / Name is empty"),
        ({"deadline": "30/09/2025"}, "not a date like 2025-09-30"),
        ({"deadline": None}, "协查截止日期 / Deadline is empty"),
        ({"residence_region": ""}, "居住地区 / Residence region is empty"),
    ],
)
def test_a_bad_row_is_refused_naming_the_column_not_the_value(
    change: dict[str, object], reason: str
) -> None:
    with pytest.raises(FormRowError, match=reason) as caught:
        parse_request(table_of(form_row(**change)), 0)
    assert NUMBER[:-1] not in str(caught.value)
    assert "陈大文" not in str(caught.value)
