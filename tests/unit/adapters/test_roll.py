"""Roll reading and mapping without a node: mappings checked by setting, rows turned into
registrations or refused by line and column, batches, and files that cannot be read at all.

The recorder here keeps what it is given and answers CREATED; the node's answers (updates,
amount proposals, nobody twice) are exercised against real nodes in tests/integration."""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from adapters.errors import MappingError, RollFileError, SpreadsheetTooLargeError
from adapters.roll import (
    RollImporter,
    RollMapper,
    RollRefusedError,
    RollRow,
    RollRowError,
    XlsxRoll,
    open_roll,
    roll_format,
)
from adapters.roll_mappings import builtin_roll_mapping_names, load_roll_mapping, parse_roll_mapping
from certfed.v1 import common_pb2, desk_pb2
from federation.timestamps import to_datetime
from tests.helpers.identities import resident_id

CERTFED = load_roll_mapping("certfed_roll")
CORE = load_roll_mapping("core_system")
HEADER = (
    "name,id_type,id_number,scheme,monthly_amount_fen,payment_start,valid_until,"
    "residence_region,phone"
)


def number(serial: int) -> str:
    return resident_id("440604", date(1950, 1, 1), serial)


def line(serial: int, **cells: str) -> str:
    values = {
        "name": "陈大文",
        "id_type": "resident_id",
        "id_number": number(serial),
        "scheme": "employee",
        "monthly_amount_fen": "320000",
        "payment_start": "2012-07",
        "valid_until": "2027-06-30",
        "residence_region": "440604",
        "phone": "138 0013 8000",
    } | cells
    return ",".join(values.values())


class Recorder:
    def __init__(self, refuse: set[str] | None = None) -> None:
        self.batches: list[list[desk_pb2.RegisterBeneficiaryRequest]] = []
        self.refuse = refuse or set()

    def upsert(
        self, requests: Sequence[desk_pb2.RegisterBeneficiaryRequest]
    ) -> Sequence[desk_pb2.UpsertResult]:
        refused = [r for r in requests if r.identity.identity_number in self.refuse]
        if refused:
            index = list(requests).index(refused[0])
            raise RollRefusedError(
                f"beneficiaries[{index}].residence_region: no office serves this region"
            )
        self.batches.append(list(requests))
        return [desk_pb2.UpsertResult(outcome=desk_pb2.UPSERT_OUTCOME_CREATED)] * len(requests)


def run(
    path: Path, recorder: Recorder, batch_size: int = 2
) -> tuple[list[tuple[int, str, str]], int]:
    rejected: list[tuple[int, str, str]] = []
    importer = RollImporter(
        recorder,
        RollMapper(CERTFED),
        reject=lambda row, column, reason: rejected.append((row, column, reason)),
        batch_size=batch_size,
    )
    summary = importer.run(open_roll(path, roll_format(path, None), CERTFED, None), path.name)
    return rejected, summary.created


def test_every_shipped_mapping_loads_and_lists_its_columns() -> None:
    assert {"certfed_roll", "core_system", "resident_pension"} <= set(builtin_roll_mapping_names())
    for name in builtin_roll_mapping_names():
        assert load_roll_mapping(name).required_columns


@pytest.mark.parametrize(
    ("text", "setting"),
    [
        ("[columns]\nfull_name='a'\nidentity_number='b'\nmonthly_amount='c'\n", "residence_region"),
        (
            "identity_type='resident_id'\ncolour='red'\n[columns]\nfull_name='a'\n"
            "identity_number='b'\nmonthly_amount='c'\nresidence_region='d'\n",
            "colour",
        ),
        (
            "[columns]\nfull_name='a'\nidentity_number='b'\nmonthly_amount='c'\n"
            "residence_region='d'\n",
            "identity_type",
        ),
        (
            "identity_type='resident_id'\namount_unit='jiao'\n[columns]\nfull_name='a'\n"
            "identity_number='b'\nmonthly_amount='c'\nresidence_region='d'\n",
            "amount_unit",
        ),
        (
            "identity_type='resident_id'\n[columns]\nfull_name='a'\nidentity_number='a'\n"
            "monthly_amount='c'\nresidence_region='d'\n",
            "columns.identity_number",
        ),
        (
            "identity_type='resident_id'\n[columns]\nfull_name='a'\nidentity_number='b'\n"
            "monthly_amount='c'\nresidence_region='d'\n[formats]\nvalid_until='%d/%m'\n",
            "formats.valid_until",
        ),
    ],
)
def test_a_bad_mapping_is_refused_naming_the_setting(text: str, setting: str) -> None:
    with pytest.raises(MappingError) as refused:
        parse_roll_mapping(text, "office")
    assert setting in str(refused.value)


def test_a_row_becomes_a_registration_with_every_field() -> None:
    values = dict(zip(HEADER.split(","), line(1).split(","), strict=True))
    request = RollMapper(CERTFED).request(RollRow(2, values))
    assert request.identity.identity_type == common_pb2.IDENTITY_TYPE_RESIDENT_ID
    assert request.identity.identity_number == number(1)
    assert request.identity.full_name == "陈大文"
    assert request.identity.phone == "138 0013 8000"
    assert request.scheme == desk_pb2.PENSION_SCHEME_EMPLOYEE
    assert request.monthly_amount_fen == 320_000
    assert request.payment_start_month == "2012-07"
    assert to_datetime(request.valid_until) == datetime(2027, 6, 30, tzinfo=UTC)
    assert request.residence_region == "440604"


@pytest.mark.parametrize(
    ("cell", "fen"),
    [("3200", 320_000), ("3,200.50", 320_050), ("0.01", 1), (3200.5, 320_050), (215, 21_500)],
)
def test_yuan_become_exact_fen(cell: str | float, fen: int) -> None:
    values = {
        "姓名": "陈大文",
        "证件类型": "居民身份证",
        "证件号码": number(2),
        "险种类型": "城乡居民基本养老保险",
        "月发放金额": cell,
        "居住地行政区划代码": "440604",
    }
    assert RollMapper(CORE).request(RollRow(2, values)).monthly_amount_fen == fen


@pytest.mark.parametrize("cell", ["3200.505", "-1", "1000000.01", "lots", "NaN", "Infinity"])
def test_an_amount_that_is_not_one_is_refused_by_column(cell: str) -> None:
    values = {
        "姓名": "陈大文",
        "证件类型": "居民身份证",
        "证件号码": number(3),
        "险种类型": "城乡居民基本养老保险",
        "月发放金额": cell,
        "居住地行政区划代码": "440604",
    }
    with pytest.raises(RollRowError) as refused:
        RollMapper(CORE).request(RollRow(2, values))
    assert refused.value.column == "月发放金额"
    assert cell not in refused.value.reason


def test_rows_are_refused_by_line_and_column_and_the_rest_go_on(tmp_path: Path) -> None:
    wrong = number(5)[:-1] + ("0" if number(5)[-1] != "0" else "1")
    path = tmp_path / "roll.csv"
    path.write_text(
        "\n".join(
            [
                HEADER,
                line(4),  # 2
                line(5, id_number=wrong),  # 3
                line(6, residence_region="Foshan"),  # 4
                line(7) + ",extra",  # 5
                line(4),  # 6: the person of line 2 again
                line(8, payment_start="2012/07"),  # 7
                line(9),  # 8
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    recorder = Recorder()
    rejected, created = run(path, recorder)
    assert created == 2
    assert [(row, column) for row, column, _ in rejected] == [
        (3, "id_number"),
        (4, "residence_region"),
        (5, ""),
        (6, "id_number"),
        (7, "payment_start"),
    ]
    reasons = " ".join(reason for _, _, reason in rejected)
    for secret in (wrong, "Foshan", number(4)):
        assert secret not in reasons
    assert [len(batch) for batch in recorder.batches] == [2]


def test_a_batch_the_node_refuses_is_resent_row_by_row(tmp_path: Path) -> None:
    path = tmp_path / "roll.csv"
    path.write_text("\n".join([HEADER, line(10), line(11), line(12)]) + "\n", encoding="utf-8")
    recorder = Recorder(refuse={number(11)})
    rejected, created = run(path, recorder, batch_size=3)
    assert created == 2
    assert rejected == [
        (3, "residence_region", "refused by the node: beneficiaries[0].residence_region: "
         "no office serves this region"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("", "empty"),
        ("name,id_number\n", "has no column"),
        (HEADER + ",name\n", "twice"),
        (HEADER + "\n", "no rows"),
    ],
)
def test_a_file_that_cannot_be_read_stops_before_anything_is_sent(
    tmp_path: Path, content: str, problem: str
) -> None:
    path = tmp_path / "roll.csv"
    path.write_text(content, encoding="utf-8")
    recorder = Recorder()
    with pytest.raises(RollFileError) as refused:
        run(path, recorder)
    assert problem in str(refused.value)
    assert recorder.batches == []


def test_an_unknown_suffix_needs_a_format(tmp_path: Path) -> None:
    with pytest.raises(RollFileError):
        roll_format(tmp_path / "roll.txt", None)
    assert roll_format(tmp_path / "roll.txt", "csv") == "csv"


def test_a_workbook_that_unpacks_to_too_much_is_refused_before_parsing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "bomb.xlsx"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("xl/worksheets/sheet1.xml", b"0" * (4 * 1024 * 1024))
    monkeypatch.setattr("adapters.roll.MAX_XLSX_UNPACKED_BYTES", 1024 * 1024)
    with pytest.raises(SpreadsheetTooLargeError):
        XlsxRoll(path, CORE, None)
