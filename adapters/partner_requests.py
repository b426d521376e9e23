"""Partner forms as requests: submitting a liaison desk's form to its node, and filling in the
results.

`submit_form` registers each row's person (when not yet registered) and asks for certification;
`fill_form_results` writes each request's current state into the same rows. Row numbers in
messages are the spreadsheet's own, and messages never repeat a cell's value. Submitting is
idempotent: a row whose person already has a request with the same deadline, or an open one, is
reported with that request's id and nothing new is sent. Reading and writing the form itself is
`adapters.partner_forms`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, time

import grpc

from adapters.partner_forms import (
    COLUMNS,
    FORM_TIMEZONE,
    ID_TYPES,
    METHOD_LABELS,
    OUTCOME_LABELS,
    REMARK_ALREADY,
    REMARK_NOT_REQUESTED,
    REMARK_REQUESTED,
    STATUS_LABELS,
    Cell,
    FormTable,
    normalised_label,
)
from certfed.v1 import attestation_pb2, common_pb2, desk_pb2
from federation.desk_client import DeskClient
from federation.timestamps import optional_datetime, to_timestamp
from signing.errors import InvalidIdentityNumberError
from signing.identity import IdentityKind, validate_identity_number

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

_ID_TYPE_NAMES = {
    normalised_label(name): key
    for key, (label, _) in ID_TYPES.items()
    for name in (key, label, *label.split("/"))
}


class FormRowError(ValueError):
    """A row that cannot be submitted; the message names the column, never its value."""


@dataclass(frozen=True)
class FormRequest:
    identity: attestation_pb2.IdentityBundle
    residence_region: str
    paying_region: str
    deadline: date
    note: str


def parse_request(table: FormTable, index: int) -> FormRequest:
    """One row as a request, or FormRowError naming the column that is wrong."""

    def required(key: str) -> str:
        value = table.text(index, key)
        if not value:
            raise FormRowError(f"{_label(key)} is empty")
        return value

    type_key = _ID_TYPE_NAMES.get(normalised_label(required("id_type")))
    if type_key is None:
        raise FormRowError(
            f"{_label('id_type')} must be one of "
            + ", ".join(label for label, _ in ID_TYPES.values())
        )
    raw_number = table.cell(index, "id_number")
    if isinstance(raw_number, int | float) and not isinstance(raw_number, bool):
        raise FormRowError(
            f"{_label('id_number')} is stored as a number, which Excel rounds; format the "
            "column as text and type the number again"
        )
    try:
        number = validate_identity_number(IdentityKind(type_key), required("id_number"))
    except InvalidIdentityNumberError as error:
        raise FormRowError(f"{_label('id_number')}: {error.reason}") from None
    identity = attestation_pb2.IdentityBundle(
        identity_type=ID_TYPES[type_key][1],  # type: ignore[arg-type]
        identity_number=number,
        full_name=required("name"),
        phone=table.text(index, "phone"),
        address=table.text(index, "address"),
    )
    return FormRequest(
        identity=identity,
        residence_region=required("residence_region").upper(),
        paying_region=table.text(index, "paying_region").upper(),
        deadline=_deadline(table.cell(index, "deadline")),
        note=table.text(index, "note"),
    )


def _deadline(value: Cell) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = "" if value is None else str(value).strip()
    if not text:
        raise FormRowError(f"{_label('deadline')} is empty")
    for pattern in ("%Y-%m-%d", "%Y/%m/%d", "%Y.%m.%d", "%Y年%m月%d日"):
        try:
            return datetime.strptime(text, pattern).date()
        except ValueError:
            continue
    raise FormRowError(f"{_label('deadline')} is not a date like 2025-09-30")


def _label(key: str) -> str:
    return next(column.label for column in COLUMNS if column.key == key)


def deadline_moment(day: date) -> datetime:
    """The end of the deadline day where the desks are."""
    return datetime.combine(day, time(23, 59, 59), FORM_TIMEZONE)


@dataclass
class FormSummary:
    rows: int = 0
    requested: int = 0
    already_requested: int = 0
    failed: int = 0
    # (spreadsheet row, reason) of each row that failed.
    problems: list[tuple[int, str]] = field(default_factory=list)


class _OutboundRequests:
    """This desk's outbound requests by beneficiary, loaded once per form."""

    def __init__(self, desk: DeskClient) -> None:
        self._desk = desk
        self._by_beneficiary: dict[str, list[desk_pb2.AssistanceRequestSummary]] | None = None

    def _load(self) -> dict[str, list[desk_pb2.AssistanceRequestSummary]]:
        if self._by_beneficiary is None:
            found: dict[str, list[desk_pb2.AssistanceRequestSummary]] = {}
            token = ""
            while True:
                page = self._desk.stub.ListAssistanceRequests(
                    desk_pb2.ListAssistanceRequestsRequest(
                        direction=desk_pb2.DIRECTION_OUTBOUND, page_token=token
                    ),
                )
                for summary in page.requests:
                    found.setdefault(summary.beneficiary_id, []).append(summary)
                token = page.next_page_token
                if not token:
                    break
            self._by_beneficiary = found
        return self._by_beneficiary

    def matching(self, beneficiary_id: str, deadline: date) -> str | None:
        """A request for the same person with the same deadline day, or one still open."""
        for summary in self._load().get(beneficiary_id, []):
            moment = optional_datetime(summary, "deadline")
            same_day = moment is not None and moment.astimezone(FORM_TIMEZONE).date() == deadline
            still_open = summary.status not in (
                common_pb2.ASSISTANCE_STATUS_COMPLETED,
                common_pb2.ASSISTANCE_STATUS_DECLINED,
            )
            if same_day or still_open:
                request_id: str = summary.request_id
                return request_id
        return None

    def add(self, summary: desk_pb2.AssistanceRequestSummary) -> None:
        self._load().setdefault(summary.beneficiary_id, []).append(summary)


def submit_form(desk: DeskClient, table: FormTable) -> FormSummary:
    """Register and request each row; write request id, status and a note into the table."""
    summary = FormSummary()
    outbound = _OutboundRequests(desk)
    for index, row_number in enumerate(table.row_numbers):
        summary.rows += 1
        if table.text(index, "request_id"):
            summary.already_requested += 1
            table.set(index, "remark", REMARK_ALREADY)
            continue
        try:
            request = parse_request(table, index)
            beneficiary_id = _register(desk, request)
            existing = outbound.matching(beneficiary_id, request.deadline)
            if existing is not None:
                summary.already_requested += 1
                table.set(index, "request_id", existing)
                table.set(index, "remark", REMARK_ALREADY)
                continue
            created = _request(desk, beneficiary_id, request)
        except FormRowError as error:
            _failed(summary, table, index, row_number, str(error))
            continue
        except grpc.RpcError as error:
            _failed(summary, table, index, row_number, error.details() or str(error.code()))
            continue
        if created is None:
            summary.already_requested += 1
            table.set(index, "remark", REMARK_ALREADY)
            continue
        outbound.add(created)
        summary.requested += 1
        table.set(index, "request_id", created.request_id)
        table.set(index, "status", STATUS_LABELS.get(created.status, ""))
        table.set(index, "remark", REMARK_REQUESTED)
    return summary


def _failed(summary: FormSummary, table: FormTable, index: int, row: int, reason: str) -> None:
    summary.failed += 1
    summary.problems.append((row, reason))
    table.set(index, "remark", f"未提交 / not sent: {reason}")


def _register(desk: DeskClient, request: FormRequest) -> str:
    """The beneficiary id of the row's person, registering them if this desk does not yet pay
    them. The node answers ALREADY_EXISTS naming the existing beneficiary's id."""
    try:
        answer = desk.stub.RegisterBeneficiary(
            desk_pb2.RegisterBeneficiaryRequest(
                identity=request.identity,
                residence_region=request.residence_region,
                paying_region=request.paying_region,
            ),
        )
    except grpc.RpcError as error:
        if error.code() != grpc.StatusCode.ALREADY_EXISTS:
            raise
        match = _UUID.search(error.details() or "")
        if match is None:
            raise
        return str(match.group(0))
    beneficiary_id: str = answer.beneficiary.beneficiary_id
    return beneficiary_id


def _request(
    desk: DeskClient, beneficiary_id: str, request: FormRequest
) -> desk_pb2.AssistanceRequestSummary | None:
    """The new request, or None when the node already holds an open one for the person."""
    try:
        answer = desk.stub.RequestCertification(
            desk_pb2.RequestCertificationRequest(
                beneficiary_id=beneficiary_id,
                deadline=to_timestamp(deadline_moment(request.deadline)),
                acceptable_methods=[],
                note=request.note,
            ),
        )
    except grpc.RpcError as error:
        if error.code() == grpc.StatusCode.ALREADY_EXISTS:
            return None
        raise
    created: desk_pb2.AssistanceRequestSummary = answer.request
    return created


def fill_form_results(desk: DeskClient, table: FormTable) -> FormSummary:
    """Write each row's request status, certification date, method, outcome and attestation."""
    summary = FormSummary()
    for index, row_number in enumerate(table.row_numbers):
        summary.rows += 1
        request_id = table.text(index, "request_id")
        if not request_id:
            summary.failed += 1
            summary.problems.append((row_number, "no request id"))
            table.set(index, "remark", REMARK_NOT_REQUESTED)
            continue
        try:
            request = desk.stub.GetAssistanceRequest(
                desk_pb2.GetAssistanceRequestRequest(request_id=request_id)
            ).request
            attestation = None
            if request.attestation_id:
                # The answer to a request this office sent is its peer's: named, so another
                # member's attestation under the same id is never the one read.
                outbound = request.direction == desk_pb2.DIRECTION_OUTBOUND
                attestation = desk.stub.ExportAttestation(
                    desk_pb2.ExportAttestationRequest(
                        attestation_id=request.attestation_id,
                        issuing_node_id=request.peer_node_id if outbound else "",
                    ),
                ).attestation
        except grpc.RpcError as error:
            reason = error.details() or str(error.code())
            summary.failed += 1
            summary.problems.append((row_number, reason))
            table.set(index, "remark", f"查询失败 / lookup failed: {reason}")
            continue
        summary.requested += 1
        table.set(index, "status", STATUS_LABELS.get(request.status, ""))
        remark = request.status_reason if request.status_reason else ""
        if attestation is not None:
            observed = optional_datetime(attestation, "observed_at")
            table.set(
                index,
                "certified_on",
                observed.astimezone(FORM_TIMEZONE).date().isoformat() if observed else "",
            )
            table.set(index, "method", METHOD_LABELS.get(attestation.method, ""))
            table.set(index, "outcome", OUTCOME_LABELS.get(attestation.outcome, ""))
            table.set(index, "attestation_id", attestation.attestation_id)
        table.set(index, "remark", remark)
    return summary
