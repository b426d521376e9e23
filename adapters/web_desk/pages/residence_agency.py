"""The residence agency: the inbox of requests from paying offices, a request's page (accept,
schedule, decline), and recording a certification, for a request or a walk-in retiree, in
steps: the person (walk-in), the check and its evidence, check your answers, confirmation."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time

import grpc
from starlette.responses import Response

from adapters.web_desk import labels
from adapters.web_desk.i18n import OFFICE_ZONE
from adapters.web_desk.identity import LIVE_MESSAGES, identity_problem
from adapters.web_desk.listing import paged
from adapters.web_desk.page import Page
from adapters.web_desk.pages.paying_office import parse_day
from certfed.v1 import attestation_pb2, common_pb2, desk_pb2
from federation.timestamps import optional_datetime, to_timestamp
from signing.identity import IdentityKind

OUTCOME_NAMES = {
    "alive": common_pb2.CERTIFICATION_OUTCOME_ALIVE,
    "deceased": common_pb2.CERTIFICATION_OUTCOME_DECEASED,
}
NOTE_MAX = 500
NAME_MAX = 100
# The first bytes of the files the node keeps as evidence.
MAGIC = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"%PDF-", "application/pdf"),
)
DONE_NOTICES = {
    "accept": labels.N_("You accepted the request."),
    "schedule": labels.N_("The check is scheduled."),
    "decline": labels.N_("You declined the request. The paying office is told."),
}


def inbox(page: Page) -> Response:
    status_name = page.query("status")
    status = labels.ASSISTANCE_FILTERS.get(status_name, common_pb2.ASSISTANCE_STATUS_UNSPECIFIED)

    def fetch(size: int, token: str) -> tuple[Sequence[desk_pb2.AssistanceRequestSummary], str]:
        answer = page.node.stub.ListAssistanceRequests(
            desk_pb2.ListAssistanceRequestsRequest(
                direction=desk_pb2.DIRECTION_INBOUND,
                status=status,
                page_size=size,
                page_token=token,
            )
        )
        return answer.requests, answer.next_page_token

    filters = [("", page._("All"))] + [
        (name, page._(labels.ASSISTANCE_STATUSES[value]))
        for name, value in labels.ASSISTANCE_FILTERS.items()
    ]
    return page.render(
        "inbox.html",
        paged=paged(page, f"inbox:{status_name}", fetch),
        filters=filters,
        chosen_status=status_name if status_name in labels.ASSISTANCE_FILTERS else "",
        labels=labels,
        when=optional_datetime,
    )


def _request(page: Page) -> desk_pb2.GetAssistanceRequestResponse:
    found: desk_pb2.GetAssistanceRequestResponse = page.node.stub.GetAssistanceRequest(
        desk_pb2.GetAssistanceRequestRequest(request_id=page.request.path_params["request_id"])
    )
    return found


def request_page(page: Page, errors: dict[str, str] | None = None, status: int = 200) -> Response:
    found = _request(page)
    done = page.query("done")
    return page.render(
        "request.html",
        status=status,
        found=found,
        summary=found.request,
        inbound=found.request.direction == desk_pb2.DIRECTION_INBOUND,
        errors=errors or {},
        notice=page._(DONE_NOTICES[done]) if done in DONE_NOTICES else "",
        labels=labels,
        when=optional_datetime,
        s=common_pb2,
        form={
            "reason": page.text("reason"),
            "scheduled_date": page.text("scheduled_date"),
            "scheduled_time": page.text("scheduled_time"),
        },
    )


def set_status(page: Page) -> Response:
    request_id = page.request.path_params["request_id"]
    action = page.request.path_params["action"]
    change = desk_pb2.SetAssistanceStatusRequest(request_id=request_id)
    errors: dict[str, str] = {}
    if action == "accept":
        change.status = common_pb2.ASSISTANCE_STATUS_ACCEPTED
    elif action == "decline":
        change.status = common_pb2.ASSISTANCE_STATUS_DECLINED
        change.reason = page.text("reason")
        if not change.reason:
            errors["reason"] = page._("Say why you decline, for the paying office")
        elif len(change.reason) > NOTE_MAX:
            errors["reason"] = page._("The reason must be 500 characters or fewer")
    elif action == "schedule":
        change.status = common_pb2.ASSISTANCE_STATUS_SCHEDULED
        day = parse_day(page.text("scheduled_date"))
        try:
            at = (
                time.fromisoformat(page.text("scheduled_time"))
                if page.text("scheduled_time")
                else None
            )
        except ValueError:
            at = None
        if day is None:
            errors["scheduled_date"] = page._("Enter the date of the check, for example 2026-12-31")
        elif day < datetime.now(OFFICE_ZONE).date():
            errors["scheduled_date"] = page._("The date must be today or later")
        if at is None:
            errors["scheduled_time"] = page._("Enter the time of the check, for example 09:30")
        if day is not None and at is not None and not errors:
            change.scheduled_for.CopyFrom(
                to_timestamp(datetime.combine(day, at, OFFICE_ZONE).astimezone(UTC))
            )
    else:
        return page.render(
            "problem.html",
            status=404,
            title=page._("Page not found"),
            message=page._("Check the address, or go back to the inbox."),
            details="",
        )
    if errors:
        return request_page(page, errors, status=400)
    try:
        page.node.stub.SetAssistanceStatus(change)
    except grpc.RpcError as error:
        _field, message, details = page.refusal(error)
        key = (
            "reason"
            if action == "decline"
            else "scheduled_date"
            if action == "schedule"
            else "accept"
        )
        return request_page(page, {key: f"{message} {details}".strip()}, status=409)
    return page.redirect(f"/requests/{request_id}", done=action)


# Recording a certification.


def _methods(page: Page) -> list[tuple[str, str]]:
    return [(name, page._(labels.METHODS[value])) for name, value in labels.METHOD_NAMES.items()]


def _outcomes(page: Page) -> list[tuple[str, str]]:
    return [(name, page._(labels.OUTCOMES[value])) for name, value in OUTCOME_NAMES.items()]


def certify_form(page: Page) -> Response:
    found = _request(page)
    return _details_form(page, f"/requests/{found.request.request_id}/certify", {}, {}, found)


def _details_form(
    page: Page,
    action: str,
    carried: dict[str, str],
    errors: dict[str, str],
    found: desk_pb2.GetAssistanceRequestResponse | None = None,
    status: int = 200,
) -> Response:
    return page.render(
        "certify.html",
        status=status,
        action=action,
        carried=carried,
        errors=errors,
        found=found,
        methods=_methods(page),
        outcomes=_outcomes(page),
        values={
            "method": page.text("method"),
            "outcome": page.text("outcome") or "alive",
            "observed_date": page.text("observed_date")
            or datetime.now(OFFICE_ZONE).date().isoformat(),
            "note": page.text("note"),
        },
        accept=",".join(sorted(page.settings.evidence_media_types)),
        max_mb=f"{page.settings.evidence_max_bytes / (1024 * 1024):.0f}",
    )


def certify(page: Page) -> Response:
    request_id = page.request.path_params["request_id"]
    found = _request(page)

    def subject(record: desk_pb2.RecordCertificationRequest) -> None:
        record.request_id = request_id

    return _certification_step(page, f"/requests/{request_id}/certify", {}, subject, found)


def _media_type(content: bytes) -> str:
    return next((kind for magic, kind in MAGIC if content.startswith(magic)), "")


def _certification_step(
    page: Page,
    action: str,
    carried: dict[str, str],
    subject: object,
    found: desk_pb2.GetAssistanceRequestResponse | None = None,
) -> Response:
    step = page.text("step")
    errors: dict[str, str] = {}
    method = page.text("method")
    outcome = page.text("outcome") or "alive"
    observed = parse_day(page.text("observed_date"))
    note = page.text("note")
    today = datetime.now(OFFICE_ZONE).date()
    if method not in labels.METHOD_NAMES:
        errors["method"] = page._("Choose how the person was checked")
    if outcome not in OUTCOME_NAMES:
        errors["outcome"] = page._("Choose what the check found")
    if observed is None:
        errors["observed_date"] = page._("Enter the date of the check, for example 2026-12-31")
    elif observed > today:
        errors["observed_date"] = page._("The date of the check cannot be in the future")
    if len(note) > NOTE_MAX:
        errors["note"] = page._("The note must be 500 characters or fewer")
    evidence = page.text("evidence_digest")
    evidence_type = page.text("evidence_type")
    if step == "details":
        upload = page.upload("evidence")
        if upload is not None:
            content = upload.file.read(page.settings.evidence_max_bytes + 1)
            media_type = _media_type(content)
            if len(content) > page.settings.evidence_max_bytes:
                size = f"{page.settings.evidence_max_bytes / (1024 * 1024):.0f}"
                errors["evidence"] = page._("The file is larger than %(size)s MB", size=size)
            elif media_type not in page.settings.evidence_media_types:
                errors["evidence"] = page._("The file must be a photo (JPEG or PNG) or a PDF")
            elif not errors:
                try:
                    kept = page.node.stub.UploadEvidence(
                        desk_pb2.UploadEvidenceRequest(media_type=media_type, content=content)
                    ).evidence
                except grpc.RpcError as error:
                    _field, message, details = page.refusal(error)
                    errors["evidence"] = f"{message} {details}".strip()
                else:
                    evidence = kept.sha256.hex()
                    evidence_type = kept.media_type
    if evidence and not (len(evidence) == 64 and all(c in "0123456789abcdef" for c in evidence)):
        evidence = ""
    if errors or step not in ("details", "confirm"):
        return _details_form(page, action, carried, errors, found, status=400 if errors else 200)
    assert observed is not None
    if step == "details":
        return page.render(
            "certify_check.html",
            action=action,
            carried=carried,
            found=found,
            method=method,
            method_label=page._(labels.METHODS[labels.METHOD_NAMES[method]]),
            outcome=outcome,
            outcome_label=page._(labels.OUTCOMES[OUTCOME_NAMES[outcome]]),
            observed=observed,
            note=note,
            evidence=evidence,
            evidence_is_image=evidence_type.startswith("image/"),
            evidence_type=evidence_type,
        )
    record = desk_pb2.RecordCertificationRequest(
        method=labels.METHOD_NAMES[method],
        outcome=OUTCOME_NAMES[outcome],
        observed_at=to_timestamp(_observed_moment(observed, today)),
        evidence_digests=[bytes.fromhex(evidence)] if evidence else [],
        note=note,
    )
    assert callable(subject)
    subject(record)
    try:
        recorded = page.node.stub.RecordCertification(record).certification
    except grpc.RpcError as error:
        field_name, message, details = page.refusal(error)
        key = field_name if field_name in ("method", "observed_date", "note") else "method"
        return _details_form(
            page, action, carried, {key: f"{message} {details}".strip()}, found, 409
        )
    return page.render(
        "confirmation.html",
        title=page._("Certification recorded"),
        reference=recorded.certification_id,
        lines=[
            page._(
                "A reviewer of this office now checks it; it is signed and sent when they "
                "approve it."
            ),
        ],
        back="/inbox",
        back_label=page._("Back to the inbox"),
    )


def _observed_moment(day: date, today: date) -> datetime:
    if day == today:
        return datetime.now(UTC)
    return datetime.combine(day, time(12), OFFICE_ZONE).astimezone(UTC)


# Walk-in.

PERSON_FIELDS = ("identity_type", "identity_number", "full_name", "phone")


def walk_in_form(page: Page) -> Response:
    return _person_form(page, {})


def _person_form(page: Page, errors: dict[str, str], status: int = 200) -> Response:
    return page.render(
        "walk_in.html",
        status=status,
        errors=errors,
        identity_types=[(n, page._(label)) for n, (_v, label) in labels.IDENTITY_TYPES.items()],
        values={name: page.text(name) for name in PERSON_FIELDS},
        live={problem: page._(message) for problem, message in LIVE_MESSAGES.items()},
    )


def walk_in(page: Page) -> Response:
    kind_name = page.text("identity_type") or "resident_id"
    errors: dict[str, str] = {}
    if kind_name not in labels.IDENTITY_TYPES:
        errors["identity_type"] = page._("Choose the kind of document")
    else:
        problem = identity_problem(page, IdentityKind(kind_name), page.text("identity_number"))
        if problem:
            errors["identity_number"] = problem
    full_name = page.text("full_name")
    if not full_name:
        errors["full_name"] = page._("Enter the person's full name")
    elif len(full_name) > NAME_MAX:
        errors["full_name"] = page._("The name must be 100 characters or fewer")
    if len(page.text("phone")) > 40:
        errors["phone"] = page._("The phone number must be 40 characters or fewer")
    if errors:
        return _person_form(page, errors, status=400)
    carried = {name: page.text(name) for name in PERSON_FIELDS}
    if page.text("step") == "person":
        return _details_form(page, "/walk-in", carried, {})

    def subject(record: desk_pb2.RecordCertificationRequest) -> None:
        record.walk_in.CopyFrom(
            attestation_pb2.IdentityBundle(
                identity_type=labels.IDENTITY_TYPES[kind_name][0],
                identity_number=carried["identity_number"],
                full_name=carried["full_name"],
                phone=carried["phone"],
            )
        )

    return _certification_step(page, "/walk-in", carried, subject)
