"""Signing in and out, the language switch, and the home page (what is waiting for this
operator)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import grpc
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from adapters.web_desk.i18n import LOCALE_NAMES, LOCALES
from adapters.web_desk.page import Page
from adapters.web_desk.security import LANGUAGE_COOKIE, SESSION_COOKIE
from certfed.v1 import common_pb2, desk_pb2
from federation.errors import status_of

# How many waiting items the home page counts before it says "N or more".
COUNT_UP_TO = 100


async def healthz(_request: Request) -> Response:
    return PlainTextResponse("ok")


async def no_icon(_request: Request) -> Response:
    """The desk has no icon; an empty answer spares the browser's log a 404 on every page."""
    return Response(status_code=204)


def sign_in_form(page: Page) -> Response:
    if page.request.cookies.get(SESSION_COOKIE):
        return page.redirect("/")
    notice = page._("Your session has ended. Please sign in again.") if page.query("ended") else ""
    return page.render("sign_in.html", errors={}, user_name="", notice=notice)


def sign_in(page: Page) -> Response:
    user_name, password = page.text("user_name"), page.text("password")
    errors: dict[str, str] = {}
    if not user_name:
        errors["user_name"] = page._("Enter your user name")
    if not password:
        errors["password"] = page._("Enter your password")
    if errors:
        return page.render(
            "sign_in.html", status=400, errors=errors, user_name=user_name, notice=""
        )
    client = page.request.client
    try:
        answer = page.state.channel.anonymous.SignIn(
            desk_pb2.SignInRequest(
                user_name=user_name,
                password=password,
                client_address=client.host if client else "",
            )
        )
    except grpc.RpcError as error:
        code = status_of(error)
        if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
            _field, message, details = page.refusal(error)
            errors["user_name"] = page._(
                "Too many failed sign-ins. Wait before you try again (%(details)s).",
                details=details,
            )
            status = 429
        elif code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
            # The same words whether the user exists or not.
            errors["user_name"] = page._("The user name or password is wrong")
            status = 401
        else:
            _field, message, _details = page.refusal(error)
            errors["user_name"] = message
            status = 503
        return page.render(
            "sign_in.html", status=status, errors=errors, user_name=user_name, notice=""
        )
    chosen = page.request.cookies.get(LANGUAGE_COOKIE, "")
    if not answer.locale and chosen in LOCALES:
        # The language is a convenience: signing in goes on without it.
        with contextlib.suppress(grpc.RpcError):
            page.state.channel.client(answer.session_token).stub.SetOperatorPreferences(
                desk_pb2.SetOperatorPreferencesRequest(locale=chosen)
            )
    page.cookies[SESSION_COOKIE] = answer.session_token
    return page.redirect("/")


def sign_out(page: Page) -> Response:
    # The cookie goes either way.
    with contextlib.suppress(grpc.RpcError):
        page.node.stub.SignOut(desk_pb2.SignOutRequest())
    page.cookies[SESSION_COOKIE] = ""
    return page.redirect("/sign-in")


def _next_path(page: Page) -> str:
    target = page.text("next")
    return target if target.startswith("/") and not target.startswith("//") else "/"


def change_language(page: Page) -> Response:
    locale = page.text("locale")
    if locale not in LOCALES:
        return page.redirect(_next_path(page))
    token = page.request.cookies.get(SESSION_COOKIE, "")
    if token:
        # A session that ended still gets the language for its sign-in page.
        with contextlib.suppress(grpc.RpcError):
            page.state.channel.client(token).stub.SetOperatorPreferences(
                desk_pb2.SetOperatorPreferencesRequest(locale=locale)
            )
    page.cookies[LANGUAGE_COOKIE] = locale
    return page.redirect(_next_path(page))


def home(page: Page) -> Response:
    """Each count is one call; all are sent at once and the page waits for the slowest, not for
    their sum."""
    me = page.me
    asked: list[tuple[str, str, grpc.Future[Any], Callable[[Any], int]]] = []

    def count(label: str, href: str, call: Any, request: Any, number: Callable[[Any], int]) -> None:
        asked.append((label, href, call.future(request), number))

    stub = page.node.stub
    if me.may(("clerk",), ("residence_agency",)):
        count(
            page._("Requests for assistance to accept"),
            "/inbox?status=received",
            stub.ListAssistanceRequests,
            desk_pb2.ListAssistanceRequestsRequest(
                direction=desk_pb2.DIRECTION_INBOUND,
                status=common_pb2.ASSISTANCE_STATUS_RECEIVED,
                page_size=COUNT_UP_TO,
            ),
            lambda answer: len(answer.requests),
        )
    if me.may(("reviewer",)):
        count(
            page._("Certifications to review"),
            "/reviews",
            stub.ListCertifications,
            desk_pb2.ListCertificationsRequest(
                status=desk_pb2.CERTIFICATION_STATUS_AWAITING_REVIEW, page_size=COUNT_UP_TO
            ),
            lambda answer: len(answer.certifications),
        )
    if me.may(("reviewer",), ("paying_office",)):
        count(
            page._("Attestations from other offices held for review"),
            "/held",
            stub.ListHeldAttestations,
            desk_pb2.ListHeldAttestationsRequest(pending_only=True, page_size=COUNT_UP_TO),
            lambda answer: len(answer.attestations),
        )
    if me.may(("reviewer",), ("paying_office",)):
        count(
            page._("Employer batches to approve or reject"),
            "/employer-batches",
            stub.ListEmployerBatches,
            desk_pb2.ListEmployerBatchesRequest(
                state=desk_pb2.EMPLOYER_BATCH_STATE_PENDING, page_size=COUNT_UP_TO
            ),
            lambda answer: len(answer.batches),
        )
    if me.may(("clerk",), ("paying_office",)):
        count(
            page._("People to certify another way after face recognition"),
            "/lists/face-recognition",
            stub.ListFaceRecognitionFollowUps,
            desk_pb2.ListFaceRecognitionFollowUpsRequest(page_size=COUNT_UP_TO),
            lambda answer: len(answer.follow_ups),
        )
    if me.may(node_roles=("paying_office",)):
        for label, href, state in (
            (page._("People due for certification"), "/lists/due", desk_pb2.ENTITLEMENT_STATE_DUE),
            (page._("People in warning"), "/lists/warning", desk_pb2.ENTITLEMENT_STATE_WARNING),
            (
                page._("People whose payment is suspended"),
                "/lists/suspended",
                desk_pb2.ENTITLEMENT_STATE_SUSPENDED,
            ),
        ):
            count(
                label,
                href,
                stub.ListEntitlements,
                desk_pb2.ListEntitlementsRequest(state=state, page_size=1),
                lambda answer: int(answer.total_size),
            )
    if me.may(("admin",)):
        count(
            page._("Dead letters to look at"),
            "/admin/outbox?state=dead",
            stub.ListOutbox,
            desk_pb2.ListOutboxRequest(state=desk_pb2.DELIVERY_STATE_DEAD, page_size=COUNT_UP_TO),
            lambda answer: len(answer.messages),
        )
    waiting: list[tuple[str, str, str]] = []
    for label, href, future, number in asked:
        try:
            counted = number(future.result())
        except grpc.RpcError:
            waiting.append((label, href, "—"))
            continue
        shown = f"{COUNT_UP_TO}+" if counted >= COUNT_UP_TO else str(counted)
        waiting.append((label, href, shown))
    return page.render("home.html", waiting=waiting, locale_names=LOCALE_NAMES)
