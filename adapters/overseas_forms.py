"""The overseas certification form (境外领取养老金人员资格认证审核表) an overseas post prints for a
retiree living abroad, as CSV or XLSX.

A paying office's request for a retiree resident in a country abroad reaches the consulate or
embassy serving that country (federation/regions.py, the `overseas_post` role). The post's clerk
exports the form for the request (`certfed forms overseas REQUEST_ID`), the retiree signs it
before a consular officer (or has it notarised and returned), and the returned scan is uploaded
as the evidence of the certification the post records (`certfed desk ... record --evidence
SCAN.pdf`). The form is one person's: a title, then one row per item, the request's details
filled in and the post's entries left blank. It is written by the partner forms' writers
(adapters/partner_forms.py), so no cell is ever read as a formula.
"""

from __future__ import annotations

from pathlib import Path

from adapters.partner_forms import FORM_TIMEZONE, ID_TYPES, Cell, FormTable, form_file
from certfed.v1 import desk_pb2
from federation.desk_client import DeskClient
from federation.errors import InvalidInputError
from federation.regions import is_country_code
from federation.timestamps import to_datetime

SHEET_NAME = "资格认证审核表"
TITLE = "境外领取养老金人员资格认证审核表 / Certification form for pensioners residing abroad"
HEADER = ["项目 / Item", "内容 / Entry"]
ID_TYPE_LABELS = {value: label for label, value in ID_TYPES.values()}
# What the post fills in by hand, after the request's own details.
BLANK_ITEMS = (
    "认证日期 / Date of certification",
    "认证结果 在世/死亡 / Outcome: alive or deceased",
    "本人签名 / Signature of the pensioner",
    "经办人签名 / Signature of the consular officer",
    "使领馆盖章 / Seal of the post",
)


def overseas_form(post_node_id: str, answer: desk_pb2.GetAssistanceRequestResponse) -> FormTable:
    """The form for one inbound request of an overseas post."""
    request = answer.request
    if request.direction != desk_pb2.DIRECTION_INBOUND:
        raise InvalidInputError(
            "request_id",
            f"request {request.request_id} was sent by this node, not received: the form is "
            "exported by the post that certifies",
        )
    if not is_country_code(request.residence_region):
        raise InvalidInputError(
            "request_id",
            f"request {request.request_id} is for region {request.residence_region}, not a "
            "country abroad: the overseas form is for retirees resident abroad",
        )
    identity = answer.identity
    deadline = (
        to_datetime(request.deadline).astimezone(FORM_TIMEZONE).date().isoformat()
        if request.HasField("deadline")
        else ""
    )
    items: list[tuple[str, str]] = [
        ("协查编号 / Request ID", request.request_id),
        ("认证机构 / Certifying post", post_node_id),
        ("居住国家 / Country of residence (ISO 3166-1)", request.residence_region),
        ("待遇发放机构 / Paying office", request.peer_node_id),
        ("待遇发放地区 / Paying region", request.paying_region),
        ("姓名 / Name", identity.full_name),
        ("证件类型 / ID type", ID_TYPE_LABELS.get(identity.identity_type, "")),
        ("证件号码 / ID number", identity.identity_number),
        ("协查截止日期 / Deadline", deadline),
        ("备注 / Note", answer.note),
    ]
    items.extend((label, "") for label in BLANK_ITEMS)
    rows: list[list[Cell]] = [[label, value] for label, value in items]
    return FormTable(
        header=list(HEADER),
        rows=rows,
        row_numbers=list(range(3, 3 + len(rows))),
        preamble=[[TITLE]],
        sheet_name=SHEET_NAME,
    )


def export_overseas_form(desk: DeskClient, request_id: str, path: Path) -> FormTable:
    """Write the form for inbound request `request_id` to `path` (.csv or .xlsx)."""
    layout = form_file(path)
    post_node_id = desk.stub.WhoAmI(desk_pb2.WhoAmIRequest()).node_id
    answer = desk.stub.GetAssistanceRequest(
        desk_pb2.GetAssistanceRequestRequest(request_id=request_id)
    )
    table = overseas_form(post_node_id, answer)
    layout.write(path, table)
    return table
