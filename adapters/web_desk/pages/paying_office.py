"""The paying office: find a person by identity number, their page, asking the region where they
live for a certification, and the lists of the office's year with their downloads."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta

import grpc
from starlette.responses import Response

from adapters.web_desk import labels
from adapters.web_desk.i18n import OFFICE_ZONE
from adapters.web_desk.identity import LIVE_MESSAGES, identity_problem
from adapters.web_desk.listing import csv_download, every_row, paged, xlsx_download
from adapters.web_desk.page import Page
from certfed.v1 import desk_pb2
from federation.errors import status_of
from federation.timestamps import optional_datetime, to_timestamp
from signing.identity import IdentityKind

DEFAULT_DEADLINE_DAYS = 30

LIST_VIEWS: dict[str, tuple[str, desk_pb2.ListEntitlementsRequest]] = {
    "due": (
        labels.N_("Due for certification"),
        desk_pb2.ListEntitlementsRequest(state=desk_pb2.ENTITLEMENT_STATE_DUE),
    ),
    "warning": (
        labels.N_("In warning"),
        desk_pb2.ListEntitlementsRequest(state=desk_pb2.ENTITLEMENT_STATE_WARNING),
    ),
    "suspended": (
        labels.N_("Payment suspended"),
        desk_pb2.ListEntitlementsRequest(state=desk_pb2.ENTITLEMENT_STATE_SUSPENDED),
    ),
    "overpayments": (
        labels.N_("Overpayments to recover"),
        desk_pb2.ListEntitlementsRequest(with_overpayment=True),
    ),
    "duplicates": (
        labels.N_("Possible duplicates"),
        desk_pb2.ListEntitlementsRequest(possible_duplicate=True),
    ),
}


def _identity_types(page: Page) -> list[tuple[str, str]]:
    return [(name, page._(label)) for name, (_value, label) in labels.IDENTITY_TYPES.items()]


def _live_messages(page: Page) -> dict[str, str]:
    return {problem: page._(message) for problem, message in LIVE_MESSAGES.items()}


def find_form(page: Page) -> Response:
    return page.render(
        "find.html",
        errors={},
        identity_type="resident_id",
        identity_types=_identity_types(page),
        live=_live_messages(page),
    )


def find(page: Page) -> Response:
    kind_name = page.text("identity_type") or "resident_id"
    number = page.text("identity_number")
    errors: dict[str, str] = {}
    if kind_name not in labels.IDENTITY_TYPES:
        errors["identity_type"] = page._("Choose the kind of document")
    else:
        problem = identity_problem(page, IdentityKind(kind_name), number)
        if problem:
            errors["identity_number"] = problem
    if not errors:
        try:
            found = page.node.stub.FindBeneficiary(
                desk_pb2.FindBeneficiaryRequest(
                    identity_type=labels.IDENTITY_TYPES[kind_name][0], identity_number=number
                )
            )
        except grpc.RpcError as error:
            if status_of(error) is not grpc.StatusCode.NOT_FOUND:
                raise
            errors["identity_number"] = page._("No one this office pays has this identity number")
        else:
            return page.redirect(f"/beneficiaries/{found.entitlement.beneficiary.beneficiary_id}")
    return page.render(
        "find.html",
        status=400,
        errors=errors,
        identity_type=kind_name,
        identity_types=_identity_types(page),
        live=_live_messages(page),
    )


def beneficiary(page: Page) -> Response:
    overview = page.node.stub.GetBeneficiaryOverview(
        desk_pb2.GetBeneficiaryOverviewRequest(
            beneficiary_id=page.request.path_params["beneficiary_id"]
        )
    )
    return page.render(
        "beneficiary.html",
        person=overview.beneficiary,
        entitlement=overview.entitlement if overview.HasField("entitlement") else None,
        pending_change=overview.pending_amount_change
        if overview.HasField("pending_amount_change")
        else None,
        attestations=overview.attestations,
        attestations_total=overview.attestations_total,
        requests=overview.open_requests,
        instructions=overview.payment_instructions,
        back_pay_total=overview.back_pay_total_fen,
        labels=labels,
        when=optional_datetime,
    )


def _deadline_default() -> str:
    return (datetime.now(OFFICE_ZONE).date() + timedelta(days=DEFAULT_DEADLINE_DAYS)).isoformat()


def assistance_form(page: Page) -> Response:
    person = _person(page)
    return page.render(
        "assistance.html", person=person, errors={}, deadline=_deadline_default(), note=""
    )


def _person(page: Page) -> desk_pb2.Beneficiary:
    person: desk_pb2.Beneficiary = page.node.stub.GetBeneficiary(
        desk_pb2.GetBeneficiaryRequest(beneficiary_id=page.request.path_params["beneficiary_id"])
    ).beneficiary
    return person


def parse_day(text: str) -> date | None:
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def assistance(page: Page) -> Response:
    person = _person(page)
    deadline_text, note, step = page.text("deadline"), page.text("note"), page.text("step")
    errors: dict[str, str] = {}
    deadline = parse_day(deadline_text)
    today = datetime.now(OFFICE_ZONE).date()
    if deadline is None:
        errors["deadline"] = page._(
            "Enter the date by which the check must be done, for example 2026-12-31"
        )
    elif deadline <= today:
        errors["deadline"] = page._("The date must be in the future")
    if len(note) > 500:
        errors["note"] = page._("The note must be 500 characters or fewer")
    if errors or step not in ("check", "confirm"):
        return page.render(
            "assistance.html",
            status=400 if errors else 200,
            person=person,
            errors=errors,
            deadline=deadline_text,
            note=note,
        )
    assert deadline is not None
    if step == "check":
        return page.render("assistance_check.html", person=person, deadline=deadline, note=note)
    moment = datetime.combine(deadline, time(23, 59, 59), OFFICE_ZONE).astimezone(UTC)
    try:
        created = page.node.stub.RequestCertification(
            desk_pb2.RequestCertificationRequest(
                beneficiary_id=person.beneficiary_id, deadline=to_timestamp(moment), note=note
            )
        ).request
    except grpc.RpcError as error:
        field_name, message, details = page.refusal(error)
        errors[
            "deadline"
            if field_name == "deadline"
            else "note"
            if field_name == "note"
            else "confirm"
        ] = f"{message} {details}".strip()
        return page.render(
            "assistance.html",
            status=400,
            person=person,
            errors=errors,
            deadline=deadline_text,
            note=note,
        )
    return page.render(
        "confirmation.html",
        title=page._("Request for assistance sent"),
        reference=created.request_id,
        lines=[
            page._("The office where the person lives receives the request and checks them."),
            page._(
                "When they have approved the check, the new validity shows on the person's page."
            ),
        ],
        back=f"/beneficiaries/{person.beneficiary_id}",
        back_label=page._("Back to the person's page"),
    )


LIST_COLUMNS = (
    labels.N_("Person"),
    labels.N_("Identity number"),
    labels.N_("Lives in"),
    labels.N_("State"),
    labels.N_("Since"),
    labels.N_("Valid until"),
    labels.N_("Monthly amount"),
    labels.N_("Overpayment"),
)


def listing(page: Page) -> Response:
    view = page.request.path_params["view"]
    if view == "report":
        return report(page)
    if view not in LIST_VIEWS:
        return page.render(
            "problem.html",
            status=404,
            title=page._("No such list"),
            message=page._("Choose a list from the tabs."),
            details="",
        )
    title, query = LIST_VIEWS[view]

    def fetch(size: int, token: str) -> tuple[Sequence[desk_pb2.Entitlement], str]:
        request = desk_pb2.ListEntitlementsRequest()
        request.CopyFrom(query)
        request.page_size, request.page_token = size, token
        answer = page.node.stub.ListEntitlements(request)
        return answer.entitlements, answer.next_page_token

    fmt = page.query("format")
    if fmt in ("csv", "xlsx"):
        formats = page.formats
        rows = [
            [
                e.beneficiary.beneficiary_id,
                e.beneficiary.masked_identity_number,
                e.beneficiary.residence_region,
                page._(labels.ENTITLEMENT_STATES.get(e.state, "")),
                formats.day(optional_datetime(e, "state_since")),
                formats.day(optional_datetime(e.beneficiary, "valid_until")),
                f"{e.monthly_amount_fen / 100:.2f}",
                f"{e.overpayment_fen / 100:.2f}",
            ]
            for e in every_row(fetch)
        ]
        header = [page._(column) for column in LIST_COLUMNS]
        download = csv_download if fmt == "csv" else xlsx_download
        return download(f"certfed-{view}", header, rows)
    shown = paged(page, f"list:{view}", fetch)
    return page.render(
        "list.html",
        view=view,
        views=[(name, page._(label)) for name, (label, _q) in LIST_VIEWS.items()],
        title=page._(title),
        paged=shown,
        labels=labels,
        when=optional_datetime,
    )


def report(page: Page) -> Response:
    today = datetime.now(OFFICE_ZONE).date()
    start = parse_day(page.query("from")) or date(today.year, 1, 1)
    end = parse_day(page.query("to")) or today
    answer = page.node.stub.GetReport(
        desk_pb2.GetReportRequest(
            **{
                "from": to_timestamp(datetime.combine(start, time(0), OFFICE_ZONE)),
                "to": to_timestamp(datetime.combine(end + timedelta(days=1), time(0), OFFICE_ZONE)),
            }
        )
    )
    rows: list[list[str | int | float]] = [
        [page._(labels.METHODS.get(share.method, "")), share.count] for share in answer.by_method
    ]
    fmt = page.query("format")
    if fmt in ("csv", "xlsx"):
        header = [page._("Method"), page._("Certifications")]
        totals: list[list[str | int | float]] = [
            [page._("People paid"), answer.beneficiaries],
            [page._("Certified in the period"), answer.certified],
            [page._("Overpayments to recover"), f"{answer.overpayments_fen / 100:.2f}"],
            [page._("Possible duplicates"), answer.possible_duplicates],
        ]
        download = csv_download if fmt == "csv" else xlsx_download
        return download("certfed-report", header, [*rows, *totals])
    return page.render(
        "report.html",
        view="report",
        views=[(name, page._(label)) for name, (label, _q) in LIST_VIEWS.items()],
        report=answer,
        rows=rows,
        start=start,
        end=end,
    )
