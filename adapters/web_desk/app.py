"""The desk application: its routes, by role, and the middleware every response passes."""

from __future__ import annotations

from collections.abc import Callable

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from adapters.web_desk.page import endpoint
from adapters.web_desk.pages import (
    admin,
    amounts,
    employer_batches,
    face_recognition,
    held,
    liaison,
    paying_office,
    recovery,
    residence_agency,
    reviewer,
    session,
)
from adapters.web_desk.security import SECURITY_HEADERS, AccessLog, BodyLimit, SecurityHeaders
from adapters.web_desk.settings import WebDeskSettings
from adapters.web_desk.state import STATIC_DIR, DeskState
from federation.desk_client import DeskChannel

GET, POST = ["GET"], ["POST"]
CLERK, REVIEWER, ADMIN = ("clerk",), ("reviewer",), ("admin",)
PAYING, AGENCY, LIAISON = ("paying_office",), ("residence_agency",), ("partner_liaison",)


def routes() -> list[Route | Mount]:
    e = endpoint
    return [
        Route("/healthz", session.healthz, methods=GET),
        Route("/favicon.ico", session.no_icon, methods=GET),
        Route("/sign-in", e(session.sign_in_form, signed_in=False), methods=GET),
        Route("/sign-in", e(session.sign_in, signed_in=False), methods=POST),
        Route("/sign-out", e(session.sign_out), methods=POST),
        Route("/language", e(session.change_language, signed_in=False), methods=POST),
        Route("/", e(session.home), methods=GET),
        # Paying office.
        Route("/beneficiaries/find", e(paying_office.find_form, node_roles=PAYING), methods=GET),
        Route("/beneficiaries/find", e(paying_office.find, node_roles=PAYING), methods=POST),
        Route(
            "/beneficiaries/{beneficiary_id}",
            e(paying_office.beneficiary, node_roles=PAYING),
            methods=GET,
        ),
        Route(
            "/beneficiaries/{beneficiary_id}/assistance",
            e(paying_office.assistance_form, roles=CLERK, node_roles=PAYING),
            methods=GET,
        ),
        Route(
            "/beneficiaries/{beneficiary_id}/assistance",
            e(paying_office.assistance, roles=CLERK, node_roles=PAYING),
            methods=POST,
        ),
        Route(
            "/lists/face-recognition",
            e(face_recognition.follow_ups, roles=CLERK + REVIEWER, node_roles=PAYING),
            methods=GET,
        ),
        Route("/lists/{view}", e(paying_office.listing, node_roles=PAYING), methods=GET),
        Route("/debts", e(recovery.debts, node_roles=PAYING), methods=GET),
        # Residence agency.
        Route(
            "/inbox",
            e(residence_agency.inbox, roles=CLERK + REVIEWER, node_roles=AGENCY),
            methods=GET,
        ),
        Route(
            "/requests/{request_id}",
            e(residence_agency.request_page, roles=CLERK + REVIEWER),
            methods=GET,
        ),
        Route(
            "/requests/{request_id}/certify",
            e(residence_agency.certify_form, roles=CLERK, node_roles=AGENCY),
            methods=GET,
        ),
        Route(
            "/requests/{request_id}/certify",
            e(residence_agency.certify, roles=CLERK, node_roles=AGENCY, max_body="evidence"),
            methods=POST,
        ),
        Route(
            "/requests/{request_id}/{action:str}",
            e(residence_agency.set_status, roles=CLERK, node_roles=AGENCY),
            methods=POST,
        ),
        Route(
            "/walk-in",
            e(residence_agency.walk_in_form, roles=CLERK, node_roles=AGENCY),
            methods=GET,
        ),
        Route(
            "/walk-in",
            e(residence_agency.walk_in, roles=CLERK, node_roles=AGENCY, max_body="evidence"),
            methods=POST,
        ),
        # Reviewer.
        Route("/reviews", e(reviewer.queue, roles=CLERK + REVIEWER), methods=GET),
        Route(
            "/certifications/{certification_id}",
            e(reviewer.certification, roles=CLERK + REVIEWER),
            methods=GET,
        ),
        Route(
            "/certifications/{certification_id}/approve",
            e(reviewer.approve, roles=REVIEWER),
            methods=POST,
        ),
        Route(
            "/certifications/{certification_id}/reject",
            e(reviewer.reject, roles=REVIEWER),
            methods=POST,
        ),
        Route("/evidence/{evidence_id}", e(reviewer.evidence, roles=CLERK + REVIEWER), methods=GET),
        # Attestations from peers held for a reviewer.
        Route("/held", e(held.held_list, roles=REVIEWER + ADMIN, node_roles=PAYING), methods=GET),
        Route(
            "/held/{attestation_id}",
            e(held.held_page, roles=REVIEWER + ADMIN, node_roles=PAYING),
            methods=GET,
        ),
        Route(
            "/held/{attestation_id}",
            e(held.decide, roles=REVIEWER, node_roles=PAYING),
            methods=POST,
        ),
        # Employers' batch lists, decided whole by a reviewer who did not upload them.
        Route(
            "/employer-batches",
            e(employer_batches.batches, roles=CLERK + REVIEWER, node_roles=PAYING),
            methods=GET,
        ),
        Route(
            "/employer-batches/{batch_id}",
            e(employer_batches.batch_page, roles=CLERK + REVIEWER, node_roles=PAYING),
            methods=GET,
        ),
        Route(
            "/employer-batches/{batch_id}",
            e(employer_batches.decide, roles=REVIEWER, node_roles=PAYING),
            methods=POST,
        ),
        # Monthly amount changes, decided by a reviewer who did not propose them.
        Route(
            "/amount-changes",
            e(amounts.changes, roles=CLERK + REVIEWER, node_roles=PAYING),
            methods=GET,
        ),
        Route(
            "/amount-changes",
            e(amounts.approve_shown, roles=REVIEWER, node_roles=PAYING),
            methods=POST,
        ),
        Route(
            amounts.APPROVE_ALL,
            e(amounts.approve_all, roles=REVIEWER, node_roles=PAYING),
            methods=POST,
        ),
        Route(
            "/amount-changes/{change_id}",
            e(amounts.change_page, roles=CLERK + REVIEWER, node_roles=PAYING),
            methods=GET,
        ),
        Route(
            "/amount-changes/{change_id}",
            e(amounts.decide, roles=REVIEWER, node_roles=PAYING),
            methods=POST,
        ),
        # Liaison desk.
        Route("/forms", e(liaison.forms, roles=CLERK, node_roles=LIAISON), methods=GET),
        Route(
            "/forms/upload",
            e(liaison.upload, roles=CLERK, node_roles=LIAISON, max_body="form"),
            methods=POST,
        ),
        Route(
            "/forms/{batch}/result", e(liaison.result, roles=CLERK, node_roles=LIAISON), methods=GET
        ),
        Route(
            "/forms/{batch}/download",
            e(liaison.download, roles=CLERK, node_roles=LIAISON),
            methods=GET,
        ),
        Route(
            "/forms/results",
            e(liaison.results, roles=CLERK, node_roles=LIAISON, max_body="form"),
            methods=POST,
        ),
        # Administrator.
        Route("/admin/operators", e(admin.operators, roles=ADMIN), methods=GET),
        Route("/admin/operators/new", e(admin.new_operator_form, roles=ADMIN), methods=GET),
        Route("/admin/operators/new", e(admin.new_operator, roles=ADMIN), methods=POST),
        Route(
            "/admin/operators/{operator_id}/disable", e(admin.disable, roles=ADMIN), methods=POST
        ),
        Route(
            "/admin/operators/{operator_id}/password",
            e(admin.password_form, roles=ADMIN),
            methods=GET,
        ),
        Route(
            "/admin/operators/{operator_id}/password", e(admin.password, roles=ADMIN), methods=POST
        ),
        Route("/admin/outbox", e(admin.outbox, roles=ADMIN), methods=GET),
        Route("/admin/outbox/{message_id}/retry", e(admin.retry, roles=ADMIN), methods=POST),
        Route("/admin/federation", e(admin.federation, roles=ADMIN), methods=GET),
        Route("/admin/audit", e(admin.audit, roles=ADMIN), methods=GET),
        Route("/admin/audit.csv", e(admin.audit_csv, roles=ADMIN), methods=GET),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]


# What a browser shows when the desk itself fails: no detail (the log has it), in every language.
FAILURE_PAGE = """<!doctype html><html lang="zh-Hans"><head><meta charset="utf-8">
<title>出错了 · Something went wrong</title><link rel="stylesheet" href="/static/desk.css"></head>
<body><main id="main" class="wrap"><h1>出错了。请稍后再试。</h1>
<p lang="zh-Hant">出錯了。請稍後再試。</p><p lang="en">Something went wrong. Please try again.</p>
<p lang="pt">Ocorreu um erro. Tente de novo.</p><p><a href="/">↩</a></p></main></body></html>"""


async def failure(_request: Request, _error: Exception) -> Response:
    headers = {name.decode(): value.decode() for name, value in SECURITY_HEADERS}
    return HTMLResponse(
        FAILURE_PAGE, status_code=500, headers={**headers, "cache-control": "no-store"}
    )


def create_app(
    settings: WebDeskSettings, channel: DeskChannel, access_log: Callable[[str], None]
) -> Starlette:
    """The desk for one office, over `channel` to its node."""
    largest = max(settings.evidence_max_bytes, settings.form_max_bytes) + 256 * 1024
    app = Starlette(
        routes=routes(),
        exception_handlers={500: failure},
        middleware=[
            Middleware(AccessLog, write=access_log),
            Middleware(SecurityHeaders),
            Middleware(BodyLimit, max_bytes=largest),
        ],
    )
    app.state.desk = DeskState(settings, channel)
    return app
