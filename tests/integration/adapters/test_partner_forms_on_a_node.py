"""A Macau liaison desk sends its spreadsheet of requests through `certfed forms import`, the
Qingdao agency certifies, and `certfed forms export` brings the results back in the same layout;
importing the same form again sends nothing twice."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from openpyxl import Workbook

from adapters.partner_forms import REQUEST_COLUMNS, SHEET_NAME, CsvPartnerForm, XlsxPartnerForm
from certfed.v1 import common_pb2, desk_pb2
from cli.launcher import LocalFederation, wait_until
from cli.main import main
from federation.timestamps import to_timestamp
from tests.helpers.identities import resident_id

from .conftest import MACAU, QINGDAO


def resident(serial: int) -> str:
    return resident_id("370202", date(1945, 3, 2), serial)


def form_rows(deadline: str) -> list[list[object]]:
    header = [column.label for column in REQUEST_COLUMNS]
    people = [
        ("1", "陈大文", "居民身份证", resident(1), "370202", "MO", "+853 6612 0001"),
        ("2", "黃小玲", "Resident ID", resident(2), "370202", "MO", ""),
        ("3", "李四", "居民身份证", resident(3)[:-1] + "Z", "370202", "MO", ""),
        ("4", "王五", "居民身份证", resident(4), "370202", "", ""),
    ]
    return [
        ["澳门特别行政区社会保障基金 在生证明协查表"],
        header,
        *[[*person, "青岛市市南区", deadline, ""] for person in people],
    ]


def run(federation: LocalFederation, monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    handle = federation.nodes[MACAU.node_id]
    monkeypatch.setenv("CERTFED_OPERATOR_TOKEN", handle.tokens["clerk"])
    return main([*args, "--config", str(handle.config_path)])


def outbound(federation: LocalFederation) -> list[desk_pb2.AssistanceRequestSummary]:
    with federation.desk(MACAU.node_id) as desk:
        return list(
            desk.stub.ListAssistanceRequests(
                desk_pb2.ListAssistanceRequestsRequest(direction=desk_pb2.DIRECTION_OUTBOUND),
            ).requests
        )


def test_a_form_is_requested_once_certified_and_exported_in_the_same_layout(
    federation: LocalFederation, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = SHEET_NAME
    for row in form_rows("2031-06-30"):
        sheet.append(row)
    form = tmp_path / "requests.xlsx"
    workbook.save(form)
    sent = tmp_path / "requests-sent.xlsx"

    assert run(federation, monkeypatch, "forms", "import", str(form), "--out", str(sent)) == 2
    table = XlsxPartnerForm().read(sent)
    assert table.row_numbers == [3, 4, 5, 6]
    request_ids = [table.text(i, "request_id") for i in range(4)]
    assert all(request_ids[i] for i in (0, 1, 3))
    assert request_ids[2] == ""
    assert table.text(0, "remark") == "已提交 / requested"
    assert table.text(2, "remark").startswith("未提交 / not sent: 证件号码 / ID number:")
    assert resident(3)[:-1] not in table.text(2, "remark")
    assert len(outbound(federation)) == 3

    # The same original form again, and the written-back form: nothing is sent twice.
    again = tmp_path / "again.xlsx"
    assert run(federation, monkeypatch, "forms", "import", str(form), "--out", str(again)) == 2
    repeated = XlsxPartnerForm().read(again)
    assert [repeated.text(i, "request_id") for i in range(4)] == request_ids
    assert repeated.text(0, "remark").startswith("已提交过")
    assert run(federation, monkeypatch, "forms", "import", str(sent), "--out", str(again)) == 2
    assert len(outbound(federation)) == 3

    # Qingdao certifies the first person; the second request is declined.
    with federation.desk(QINGDAO.node_id) as desk:
        inbox = wait_until(
            lambda: (
                found
                if len(
                    found := desk.stub.ListAssistanceRequests(
                        desk_pb2.ListAssistanceRequestsRequest(
                            direction=desk_pb2.DIRECTION_INBOUND
                        ),
                    ).requests
                )
                >= 3
                else None
            ),
            30,
            "the three requests in Qingdao's inbox",
        )
        assert {r.request_id for r in inbox} >= {request_ids[0], request_ids[1]}
        certification = desk.stub.RecordCertification(
            desk_pb2.RecordCertificationRequest(
                request_id=request_ids[0],
                method=common_pb2.CERTIFICATION_METHOD_HOME_VISIT,
                outcome=common_pb2.CERTIFICATION_OUTCOME_ALIVE,
                observed_at=to_timestamp(datetime.now(UTC)),
            ),
        ).certification
        desk.stub.SetAssistanceStatus(
            desk_pb2.SetAssistanceStatusRequest(
                request_id=request_ids[1],
                status=common_pb2.ASSISTANCE_STATUS_DECLINED,
                reason="no one lives at the address",
            ),
        )
    with federation.desk(QINGDAO.node_id, "reviewer") as reviewer:
        reviewer.stub.ApproveCertification(
            desk_pb2.ApproveCertificationRequest(certification_id=certification.certification_id),
        )

    def settled() -> bool:
        # Qingdao's "completed" status and its attestation travel separately (the attestation
        # applies only once proven in Qingdao's witnessed log): wait for the attestation itself.
        requests = {r.request_id: r for r in outbound(federation)}
        return (
            requests[request_ids[0]].status == common_pb2.ASSISTANCE_STATUS_COMPLETED
            and requests[request_ids[0]].attestation_id != ""
            and requests[request_ids[1]].status == common_pb2.ASSISTANCE_STATUS_DECLINED
        )

    wait_until(settled, 30, "the attestation and the decline to reach the Macau desk")

    results = tmp_path / "results.csv"
    assert run(federation, monkeypatch, "forms", "export", str(sent), "--out", str(results)) == 2
    out = CsvPartnerForm().read(results)
    assert out.header[: len(table.header)] == table.header
    assert out.text(0, "status") == "已完成 / completed"
    assert out.text(0, "method") == "上门认证 / home visit"
    assert out.text(0, "outcome") == "在世 / alive"
    assert out.text(0, "attestation_id")
    assert out.text(0, "certified_on")
    assert out.text(1, "status") == "已退回 / declined"
    assert out.text(1, "remark") == "no one lives at the address"
    assert out.text(2, "remark").startswith("未提交 请先导入此行")
    assert out.text(3, "status") in ("已送达 / received", "待发送 / queued")
