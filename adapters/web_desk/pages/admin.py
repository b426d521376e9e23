"""The administrator: operators (add, disable, reset password), the outbox and its dead letters
(retry), the federation status, and the audit trail (search, verify, export)."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlencode

import grpc
from starlette.responses import Response

from adapters.web_desk import labels
from adapters.web_desk.i18n import LOCALE_NAMES, LOCALES
from adapters.web_desk.listing import csv_download, every_row, paged
from adapters.web_desk.page import Page
from certfed.v1 import desk_pb2
from federation.timestamps import optional_datetime

PASSWORD_MIN = 12
LABEL_MAX = 128
USER_NAME_MAX = 64
ROLE_NAMES = {name: value for value, (name, _label) in labels.OPERATOR_ROLES.items()}
OUTBOX_STATES = {"pending": desk_pb2.DELIVERY_STATE_PENDING, "dead": desk_pb2.DELIVERY_STATE_DEAD}
AUDIT_FILTERS = ("actor", "action_prefix", "subject_id")


def _role_labels(page: Page) -> list[tuple[str, str]]:
    return [(name, page._(label)) for _v, (name, label) in labels.OPERATOR_ROLES.items()]


def operators(page: Page) -> Response:
    listed = page.node.stub.ListOperators(desk_pb2.ListOperatorsRequest()).operators
    done = page.query("done")
    notices = {
        "disabled": page._("The operator is disabled; their sessions have ended."),
        "password": page._("The password is reset; the operator's sessions have ended."),
    }
    return page.render(
        "operators.html",
        operators=listed,
        notice=notices.get(done, ""),
        role_names={value: page._(label) for value, (_n, label) in labels.OPERATOR_ROLES.items()},
        when=optional_datetime,
    )


def new_operator_form(page: Page) -> Response:
    return _new_form(page, {})


def _new_form(page: Page, errors: dict[str, str], status: int = 200) -> Response:
    chosen = page.form.getlist("roles") if page.form is not None else []
    return page.render(
        "operator_new.html",
        status=status,
        errors=errors,
        roles=_role_labels(page),
        chosen=[role for role in chosen if isinstance(role, str)],
        values={
            "label": page.text("label"),
            "user_name": page.text("user_name"),
            "operator_locale": page.text("operator_locale") or page.locale,
        },
        locales=LOCALE_NAMES,
    )


def _password_problem(page: Page, password: str) -> str | None:
    if len(password) < PASSWORD_MIN:
        return page._("The password must have at least %(count)s characters", count=PASSWORD_MIN)
    return None


def new_operator(page: Page) -> Response:
    errors: dict[str, str] = {}
    label, user_name, password = page.text("label"), page.text("user_name"), page.text("password")
    roles = [r for r in (page.form.getlist("roles") if page.form else []) if r in ROLE_NAMES]
    locale = page.text("operator_locale")
    if not label or len(label) > LABEL_MAX:
        errors["label"] = page._("Enter a label for the counter or desk, up to 128 characters")
    if not user_name or len(user_name) > USER_NAME_MAX:
        errors["user_name"] = page._("Enter a user name, up to 64 characters")
    problem = _password_problem(page, password)
    if problem:
        errors["password"] = problem
    if not roles:
        errors["roles"] = page._("Choose at least one role")
    if locale not in LOCALES:
        locale = ""
    if errors:
        return _new_form(page, errors, status=400)
    try:
        added = page.node.stub.AddOperator(
            desk_pb2.AddOperatorRequest(
                label=label,
                user_name=user_name,
                password=password,
                roles=[ROLE_NAMES[r] for r in roles],
                locale=locale,
            )
        ).operator
    except grpc.RpcError as error:
        field_name, message, details = page.refusal(error)
        key = field_name if field_name in ("label", "user_name", "password") else "user_name"
        return _new_form(page, {key: f"{message} {details}".strip()}, status=409)
    return page.render(
        "confirmation.html",
        title=page._("Operator added"),
        reference=added.operator_id,
        lines=[page._("Give the user name and password to the operator in person.")],
        back="/admin/operators",
        back_label=page._("Back to the operators"),
    )


def _operator(page: Page) -> desk_pb2.OperatorSummary | None:
    wanted = page.request.path_params["operator_id"]
    listed = page.node.stub.ListOperators(desk_pb2.ListOperatorsRequest()).operators
    return next((o for o in listed if o.operator_id == wanted), None)


def password_form(page: Page, errors: dict[str, str] | None = None, status: int = 200) -> Response:
    operator = _operator(page)
    if operator is None:
        return page.render(
            "problem.html",
            status=404,
            title=page._("Operator not found"),
            message=page._("Go back to the list of operators."),
            details="",
        )
    return page.render(
        "operator.html",
        status=status,
        operator=operator,
        errors=errors or {},
        roles_text=", ".join(
            page._(labels.OPERATOR_ROLES[role][1])
            for role in operator.roles
            if role in labels.OPERATOR_ROLES
        ),
    )


def password(page: Page) -> Response:
    new_password = page.text("new_password")
    problem = _password_problem(page, new_password)
    if problem:
        return password_form(page, {"new_password": problem}, status=400)
    try:
        page.node.stub.ResetOperatorPassword(
            desk_pb2.ResetOperatorPasswordRequest(
                operator_id=page.request.path_params["operator_id"], new_password=new_password
            )
        )
    except grpc.RpcError as error:
        _field, message, details = page.refusal(error)
        return password_form(page, {"new_password": f"{message} {details}".strip()}, status=409)
    return page.redirect("/admin/operators", done="password")


def disable(page: Page) -> Response:
    page.node.stub.DisableOperator(
        desk_pb2.DisableOperatorRequest(operator_id=page.request.path_params["operator_id"])
    )
    return page.redirect("/admin/operators", done="disabled")


def outbox(page: Page) -> Response:
    state_name = page.query("state")
    state = OUTBOX_STATES.get(state_name, desk_pb2.DELIVERY_STATE_UNSPECIFIED)

    def fetch(size: int, token: str) -> tuple[Sequence[desk_pb2.OutboxMessage], str]:
        answer = page.node.stub.ListOutbox(
            desk_pb2.ListOutboxRequest(state=state, page_size=size, page_token=token)
        )
        return answer.messages, answer.next_page_token

    done = page.query("done")
    return page.render(
        "outbox.html",
        paged=paged(page, f"outbox:{state_name}", fetch),
        state=state_name if state_name in OUTBOX_STATES else "",
        notice=page._("The message is back in the delivery queue.") if done == "retry" else "",
        labels=labels,
        when=optional_datetime,
        dead=desk_pb2.DELIVERY_STATE_DEAD,
    )


def retry(page: Page) -> Response:
    page.node.stub.RetryDeadLetter(
        desk_pb2.RetryDeadLetterRequest(message_id=page.request.path_params["message_id"])
    )
    return page.redirect("/admin/outbox", done="retry")


def federation(page: Page) -> Response:
    status = page.node.stub.GetFederationStatus(desk_pb2.GetFederationStatusRequest())
    return page.render("federation.html", status_=status, labels=labels, when=optional_datetime)


def _audit_request(page: Page, size: int, token: str) -> desk_pb2.ListAuditRecordsRequest:
    return desk_pb2.ListAuditRecordsRequest(
        page_size=size,
        page_token=token,
        **{name: page.query(name)[:200] for name in AUDIT_FILTERS},
    )


def audit(page: Page) -> Response:
    verification: list[desk_pb2.ListAuditRecordsResponse] = []

    def fetch(size: int, token: str) -> tuple[Sequence[desk_pb2.AuditRecordView], str]:
        answer = page.node.stub.ListAuditRecords(_audit_request(page, size, token))
        if not verification:
            verification.append(answer)
        return answer.records, answer.next_page_token

    filters = {name: page.query(name)[:200] for name in AUDIT_FILTERS}
    key = "audit:" + "|".join(filters.values())
    listed = paged(page, key, fetch)
    chosen = {name: value for name, value in filters.items() if value}
    query = "&" + urlencode(chosen) if chosen else ""
    return page.render(
        "audit.html",
        paged=listed,
        filters=filters,
        query=query,
        chain=verification[0] if verification else None,
        when=optional_datetime,
    )


def audit_csv(page: Page) -> Response:
    def fetch(size: int, token: str) -> tuple[Sequence[desk_pb2.AuditRecordView], str]:
        answer = page.node.stub.ListAuditRecords(_audit_request(page, size, token))
        return answer.records, answer.next_page_token

    formats = page.formats
    rows: list[list[str | int | float]] = [
        [
            r.seq,
            formats.moment(optional_datetime(r, "recorded_at")),
            r.actor,
            r.action,
            r.subject_type,
            r.subject_id,
            r.details_json,
        ]
        for r in every_row(fetch)
    ]
    header = [
        page._("Sequence"),
        page._("Recorded at"),
        page._("Actor"),
        page._("Action"),
        page._("Subject type"),
        page._("Subject"),
        page._("Details"),
    ]
    return csv_download("certfed-audit", header, rows)
