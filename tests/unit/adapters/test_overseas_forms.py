"""The overseas certification form (审核表) without a node: what it holds, written as CSV and
XLSX with no cell read as a formula, and refused for a request that is not one from abroad."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from openpyxl import load_workbook

from adapters.overseas_forms import SHEET_NAME, TITLE, overseas_form
from adapters.partner_forms import CsvPartnerForm, XlsxPartnerForm
from certfed.v1 import attestation_pb2, common_pb2, desk_pb2
from federation.errors import InvalidInputError
from federation.timestamps import to_timestamp
from tests.helpers.identities import resident_id

NUMBER = resident_id("620102", date(1948, 5, 12), 7)


def answer(
    *,
    name: str = "陈国华",
    region: str = "CA",
    direction: desk_pb2.Direction.ValueType = desk_pb2.DIRECTION_INBOUND,
) -> desk_pb2.GetAssistanceRequestResponse:
    return desk_pb2.GetAssistanceRequestResponse(
        request=desk_pb2.AssistanceRequestSummary(
            request_id="req-1",
            direction=direction,
            peer_node_id="lanzhou",
            residence_region=region,
            paying_region="620102",
            deadline=to_timestamp(datetime(2031, 6, 30, 15, 59, tzinfo=UTC)),
        ),
        identity=attestation_pb2.IdentityBundle(
            identity_type=common_pb2.IDENTITY_TYPE_RESIDENT_ID,
            identity_number=NUMBER,
            full_name=name,
        ),
        note="=1+1",
    )


def entries(rows: Sequence[Sequence[object]]) -> dict[str, object]:
    return {str(row[0]): row[1] for row in rows}


def test_the_form_names_the_request_the_person_and_leaves_the_posts_entries_blank() -> None:
    table = overseas_form("ottawa-embassy", answer())
    values = entries(table.rows)
    assert table.preamble == [[TITLE]]
    assert values["协查编号 / Request ID"] == "req-1"
    assert values["认证机构 / Certifying post"] == "ottawa-embassy"
    assert values["居住国家 / Country of residence (ISO 3166-1)"] == "CA"
    assert values["待遇发放机构 / Paying office"] == "lanzhou"
    assert values["姓名 / Name"] == "陈国华"
    assert values["证件类型 / ID type"] == "居民身份证 / Resident ID"
    assert values["证件号码 / ID number"] == NUMBER
    # 23:59 UTC+8 is the deadline's day where the offices keep time.
    assert values["协查截止日期 / Deadline"] == "2031-06-30"
    assert values["使领馆盖章 / Seal of the post"] == ""


def test_the_form_is_written_as_csv_and_xlsx_with_no_cell_a_formula(tmp_path: Path) -> None:
    table = overseas_form("ottawa-embassy", answer(name='=HYPERLINK("http://x")'))
    csv_path = tmp_path / "form.csv"
    CsvPartnerForm().write(csv_path, table)
    text = csv_path.read_text(encoding="utf-8-sig")
    assert "'=HYPERLINK" in text
    assert "'=1+1" in text
    assert NUMBER in text

    xlsx_path = tmp_path / "form.xlsx"
    XlsxPartnerForm().write(xlsx_path, table)
    workbook = load_workbook(xlsx_path)
    sheet = workbook[SHEET_NAME]
    cells = [cell for row in sheet.iter_rows() for cell in row if cell.value is not None]
    formulas = [cell for cell in cells if str(cell.value).startswith("=")]
    assert formulas
    assert all(cell.data_type == "s" for cell in formulas)
    assert sheet["A1"].value == TITLE


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"region": "370202"}, "not a country abroad"),
        ({"region": "MO"}, "not a country abroad"),
        ({"direction": desk_pb2.DIRECTION_OUTBOUND}, "sent by this node"),
    ],
)
def test_a_request_not_received_from_abroad_has_no_overseas_form(
    kwargs: dict[str, object], says: str
) -> None:
    with pytest.raises(InvalidInputError, match=says) as refused:
        overseas_form("ottawa-embassy", answer(**kwargs))  # type: ignore[arg-type]
    assert NUMBER not in str(refused.value)
