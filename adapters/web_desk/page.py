"""One request to a desk page: who is signed in, in which language, the form sent, and how the
page answers (a template, a redirect, a download, or the node's refusal in plain words).

Handlers are plain functions of a `Page`, run in a worker thread because the desk calls are
blocking gRPC calls; `endpoint` wraps each one with the checks every page shares: the session,
the operator's roles and the node's roles, the CSRF token of a form, and the mapping of a
refused call to a message in the operator's language.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import grpc
from jinja2 import Environment
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from adapters.web_desk import labels
from adapters.web_desk.freshness import DirectoryFreshness
from adapters.web_desk.i18n import Formats, negotiate, supported, translations
from adapters.web_desk.security import (
    CSRF_FIELD,
    LANGUAGE_COOKIE,
    PRESESSION_COOKIE,
    SESSION_COOKIE,
    csrf_ok,
    csrf_token,
    new_presession,
)
from adapters.web_desk.settings import WebDeskSettings
from adapters.web_desk.state import DeskState
from certfed.v1 import desk_pb2
from federation.desk_client import DeskClient
from federation.errors import InvalidInputError, from_rpc_error, status_of
from federation.timestamps import optional_datetime

log = logging.getLogger("certfed.web_desk")

# Sessions that end at the node send the browser back to sign in.
_SESSION_ENDED = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
MAX_FORM_FIELDS = 60


@dataclass(frozen=True)
class Operator:
    """The signed-in operator, as the node's WhoAmI describes them."""

    operator_id: str
    label: str
    user_name: str
    roles: frozenset[str]
    node_id: str
    node_roles: frozenset[str]
    locale: str
    session_expires_at: datetime | None

    @classmethod
    def from_whoami(cls, who: desk_pb2.WhoAmIResponse) -> Operator:
        return cls(
            operator_id=who.operator_id,
            label=who.label,
            user_name=who.user_name,
            roles=frozenset(
                labels.OPERATOR_ROLES[r][0] for r in who.roles if r in labels.OPERATOR_ROLES
            ),
            node_id=who.node_id,
            node_roles=frozenset(
                labels.NODE_ROLES[r] for r in who.node_roles if r in labels.NODE_ROLES
            ),
            locale=who.locale,
            session_expires_at=optional_datetime(who, "session_expires_at"),
        )

    def may(self, roles: Iterable[str] = (), node_roles: Iterable[str] = ()) -> bool:
        """True when the operator holds one of `roles` (if any) at a node in one of
        `node_roles` (if any)."""
        roles, node_roles = tuple(roles), tuple(node_roles)
        return (not roles or bool(self.roles.intersection(roles))) and (
            not node_roles or bool(self.node_roles.intersection(node_roles))
        )


@dataclass
class Page:
    request: Request
    state: DeskState
    locale: str
    csrf: str
    form: FormData | None = None
    operator: Operator | None = None
    desk: DeskClient | None = None
    cookies: dict[str, str] = field(default_factory=dict)
    # The node's directory freshness (signed-in pages): a banner when stale or expired.
    directory: DirectoryFreshness | None = None

    @property
    def settings(self) -> WebDeskSettings:
        return self.state.settings

    @property
    def formats(self) -> Formats:
        return Formats(self.locale)

    @property
    def node(self) -> DeskClient:
        assert self.desk is not None, "a signed-in page"
        return self.desk

    @property
    def me(self) -> Operator:
        assert self.operator is not None, "a signed-in page"
        return self.operator

    def _(self, message: str, **values: Any) -> str:
        text = translations(self.locale).gettext(message)
        return text % values if values else text

    def text(self, name: str) -> str:
        """A text field of the form sent, stripped; empty when absent."""
        if self.form is None:
            return ""
        value = self.form.get(name)
        return value.strip() if isinstance(value, str) else ""

    def texts(self, name: str) -> list[str]:
        """Every text value the form sent under `name` (a list's hidden fields), stripped."""
        if self.form is None:
            return []
        return [value.strip() for value in self.form.getlist(name) if isinstance(value, str)]

    def upload(self, name: str) -> UploadFile | None:
        if self.form is None:
            return None
        value = self.form.get(name)
        return value if isinstance(value, UploadFile) and value.filename else None

    def query(self, name: str) -> str:
        return self.request.query_params.get(name, "")

    def page_number(self) -> int:
        number = self.query("page")
        return max(1, min(int(number), 100_000)) if number.isdigit() else 1

    def render(self, template: str, *, status: int = 200, **values: Any) -> Response:
        environment: Environment = self.state.environments[self.locale]
        body = environment.get_template(template).render(page=self, me=self.operator, **values)
        response = HTMLResponse(body, status_code=status)
        return self._with_cookies(response)

    def redirect(self, path: str, **query: str) -> Response:
        """303 See Other to one of the desk's own paths (never anything personal in it)."""
        target = path + ("?" + urlencode(query) if query else "")
        return self._with_cookies(RedirectResponse(target, status_code=303))

    def _with_cookies(self, response: Response) -> Response:
        for name, value in self.cookies.items():
            set_cookie(response, name, value, secure=self.settings.secure_cookies)
        return response

    def refusal(self, error: grpc.RpcError) -> tuple[str, str, str]:
        """The refused call as (field or "", message in the operator's language, the node's own
        words)."""
        code = status_of(error)
        explained = from_rpc_error(error, call="desk", peer=self.settings.node_id)
        message = self._(labels.REFUSALS.get(code, labels.REFUSAL_OTHER))
        field_name = explained.field if isinstance(explained, InvalidInputError) else ""
        details = (explained.problem if isinstance(explained, InvalidInputError) else "") or (
            error.details() if isinstance(error, grpc.Call) else ""
        )
        return field_name, message, details or ""

    def refused(self, error: grpc.RpcError) -> Response:
        """A page saying what the node refused, with the HTTP status that matches."""
        code = status_of(error)
        _field, message, details = self.refusal(error)
        return self.render(
            "problem.html",
            status=labels.HTTP_STATUSES.get(code, 502),
            title=self._("The office's node refused this"),
            message=message,
            details=details,
        )


def set_cookie(response: Response, name: str, value: str, *, secure: bool) -> None:
    if value:
        response.set_cookie(
            name,
            value,
            httponly=True,
            secure=secure,
            samesite="strict",
            path="/",
            max_age=365 * 24 * 3600 if name == LANGUAGE_COOKIE else None,
        )
    else:
        response.delete_cookie(name, path="/", httponly=True, secure=secure, samesite="strict")


Handler = Callable[[Page], Response]


def endpoint(
    handler: Handler,
    *,
    signed_in: bool = True,
    roles: Iterable[str] = (),
    node_roles: Iterable[str] = (),
    max_body: str = "text",
) -> Callable[[Request], Any]:
    """The Starlette endpoint of a page: checks, then `handler` in a worker thread."""
    roles, node_roles = tuple(roles), tuple(node_roles)

    async def run(request: Request) -> Response:
        state: DeskState = request.app.state.desk
        locale = supported(request.cookies.get(LANGUAGE_COOKIE, "")) or negotiate(
            request.headers.get("accept-language", "")
        )
        token = request.cookies.get(SESSION_COOKIE, "")
        page = Page(request, state, locale, csrf="")
        if signed_in:
            if not token:
                return page.redirect("/sign-in")
            page.desk = state.channel.client(token)
            try:
                who = await run_in_threadpool(page.desk.stub.WhoAmI, desk_pb2.WhoAmIRequest())
            except grpc.RpcError as error:
                if status_of(error) in _SESSION_ENDED:
                    page.cookies[SESSION_COOKIE] = ""
                    return page.redirect("/sign-in", ended="1")
                return page.refused(error)
            page.operator = Operator.from_whoami(who)
            page.directory = state.freshness.cached() or await run_in_threadpool(
                state.freshness.ask, page.desk
            )
            page.locale = supported(page.operator.locale) or locale
            page.csrf = csrf_token(state.settings.secret, token)
            if not page.operator.may(roles, node_roles):
                return page.render(
                    "problem.html",
                    status=403,
                    title=page._("Not for your role"),
                    message=page._("This page is for other operators of the office."),
                    details="",
                )
        else:
            presession = request.cookies.get(PRESESSION_COOKIE, "")
            if not presession:
                presession = new_presession()
                page.cookies[PRESESSION_COOKIE] = presession
            # A form on a page for everyone (the language switch) is bound to the session
            # when there is one, as the page that showed it was.
            page.csrf = csrf_token(state.settings.secret, token or presession)
        if request.method == "POST":
            limit = (
                state.settings.form_max_bytes
                if max_body == "form"
                else (state.settings.evidence_max_bytes if max_body == "evidence" else 64 * 1024)
            )
            page.form = await request.form(
                max_files=1, max_fields=MAX_FORM_FIELDS, max_part_size=max(limit, 64 * 1024)
            )
            binding = token or ("" if signed_in else request.cookies.get(PRESESSION_COOKIE, ""))
            offered = page.form.get(CSRF_FIELD)
            if not csrf_ok(
                state.settings.secret, binding, offered if isinstance(offered, str) else ""
            ):
                await page.form.close()
                return page.render(
                    "problem.html",
                    status=403,
                    title=page._("This form has expired"),
                    message=page._(
                        "The page was open too long, or was sent from somewhere else. "
                        "Go back, reload the page and try again."
                    ),
                    details="",
                )
        try:
            return await run_in_threadpool(_handle, handler, page)
        finally:
            if page.form is not None:
                await page.form.close()

    return run


def _handle(handler: Handler, page: Page) -> Response:
    try:
        return handler(page)
    except grpc.RpcError as error:
        if status_of(error) is grpc.StatusCode.UNAUTHENTICATED and page.operator is not None:
            page.cookies[SESSION_COOKIE] = ""
            return page.redirect("/sign-in", ended="1")
        log.info("the node refused a call: %s", status_of(error).name)
        return page.refused(error)


FieldErrors = Mapping[str, str]
