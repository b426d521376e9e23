"""The web desk as a browser meets it, without a browser: a real registry, a Lanzhou paying
office and its `certfed web serve` process, driven over HTTP. Signing in, the CSRF refusal, the
security headers, a look-up by identity number that leaves no number in a URL, a redirect or a
log, and a list downloaded as CSV. (The browser tests in tests/browser drive the same pages in
Chromium.)"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from certfed.v1 import desk_pb2
from cli.launcher import LocalFederation
from federation.timestamps import to_timestamp
from tests.helpers.identities import resident, resident_id
from tests.helpers.nodes import LANZHOU, QINGDAO_AGENCY
from tests.integration.web_desk.desk_http import DeskBrowser

PAGE_HEADERS = {
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
    "cache-control": "no-store",
}


@dataclass
class Desk:
    local: LocalFederation
    url: str
    passwords: dict[str, str]
    # Lanzhou retirees living in Qingdao: one due now (validity ending within days), one not.
    due_number: str
    other_number: str

    def browser(self, accept_language: str = "en") -> DeskBrowser:
        return DeskBrowser(self.url, accept_language=accept_language)

    def signed_in(self, operator: str = "clerk", accept_language: str = "en") -> DeskBrowser:
        browser = self.browser(accept_language)
        answer = browser.sign_in(operator, self.passwords[operator])
        assert answer.status == 303, answer.text
        return browser

    def logs(self) -> str:
        handle = self.local.nodes["lanzhou"]
        return handle.web_log_path.read_text(encoding="utf-8") + handle.log_path.read_text(
            encoding="utf-8"
        )


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desk]:
    workdir: Path = tmp_path_factory.mktemp("web-desk")
    with LocalFederation(workdir, sign_in=True) as local:
        local.start_registry()
        # The daily cycle runs when the test says, after the retirees are registered.
        local.add_node(LANZHOU, settings={"cycle_hour_utc": -1})
        local.add_node(QINGDAO_AGENCY)
        due = resident_id("620102", date(1951, 4, 2), 11)
        other = resident_id("620102", date(1952, 5, 3), 12)
        with local.desk("lanzhou") as clerk:
            for number, valid_days in ((due, 3), (other, 300)):
                clerk.stub.RegisterBeneficiary(
                    desk_pb2.RegisterBeneficiaryRequest(
                        identity=resident(number, "=HYPERLINK(1)"),
                        residence_region="370200",
                        monthly_amount_fen=250_000,
                        valid_until=to_timestamp(datetime.now(UTC) + timedelta(days=valid_days)),
                    )
                )
        with local.desk("lanzhou", "admin") as admin:
            admin.stub.RunCycle(desk_pb2.RunCycleRequest())
        url = local.start_web_desk("lanzhou")
        yield Desk(local, url, local.nodes["lanzhou"].passwords, due, other)


def _links(text: str, prefix: str) -> list[str]:
    found = set(re.findall(rf'href="({re.escape(prefix)}[^"#?]+)"', text))
    return sorted(found - {"/beneficiaries/find"})


def test_the_desk_says_when_it_is_ready_and_answers_health_checks(desk: Desk) -> None:
    log = desk.local.nodes["lanzhou"].web_log_path.read_text(encoding="utf-8")
    assert f"web desk of lanzhou listening on {desk.url}" in log
    answer = desk.browser().get("/healthz")
    assert (answer.status, answer.text) == (200, "ok")


def test_a_page_sends_a_visitor_who_has_not_signed_in_to_the_sign_in_page(desk: Desk) -> None:
    answer = desk.browser().get("/lists/due")
    assert (answer.status, answer.header("location")) == (303, "/sign-in")


def test_sign_in_sets_a_strict_session_cookie_and_opens_the_home_page(desk: Desk) -> None:
    browser = desk.browser()
    browser.get("/sign-in")
    answer = browser.post("/sign-in", {"user_name": "clerk", "password": desk.passwords["clerk"]})
    assert (answer.status, answer.header("location")) == (303, "/")
    cookie = next(
        line
        for line in answer.headers.get_all("set-cookie") or []
        if line.startswith("certfed_session=")
    )
    for attribute in ("HttpOnly", "Secure", "SameSite=strict", "Path=/"):
        assert attribute.lower() in cookie.lower(), cookie
    home = browser.get("/")
    assert home.status == 200
    assert "What is waiting for you" in home.text
    assert 'href="/lists/due"' in home.text


def test_a_wrong_password_and_an_unknown_user_get_the_same_answer(desk: Desk) -> None:
    answers = []
    for user_name in ("clerk2", "nobody-here"):
        browser = desk.browser()
        browser.get("/sign-in")
        answer = browser.post("/sign-in", {"user_name": user_name, "password": "not the password"})
        answers.append((answer.status, re.sub(r'value="[^"]*"', "", answer.text)))
        assert "certfed_session" not in browser.cookies
    assert answers[0][0] == 401
    assert answers[0][1].replace("clerk2", "X") == answers[1][1].replace("nobody-here", "X")
    assert '<div class="error-summary" role="alert"' in answers[0][1]
    assert 'href="#user_name"' in answers[0][1]


def test_a_form_without_its_csrf_token_is_refused_and_changes_nothing(desk: Desk) -> None:
    browser = desk.signed_in("clerk")
    refused = browser.post("/sign-out", {}, csrf=False)
    assert refused.status == 403
    forged = browser.post("/sign-out", {"csrf_token": "0" * 64}, csrf=False)
    assert forged.status == 403
    # Still signed in: the refused sign-outs did nothing.
    assert browser.get("/").status == 200
    # A token made for another session is refused too.
    other = desk.signed_in("clerk2")
    assert browser.post("/sign-out", {"csrf_token": other.csrf}, csrf=False).status == 403
    assert browser.post("/sign-out", {}).status == 303
    assert browser.get("/").header("location") == "/sign-in"


def test_every_page_carries_the_security_headers(desk: Desk) -> None:
    browser = desk.signed_in("clerk")
    for path in ("/sign-in", "/", "/beneficiaries/find", "/lists/due", "/lists/report"):
        answer = browser.get(path)
        assert answer.status in (200, 303), path
        for name, value in PAGE_HEADERS.items():
            assert answer.header(name) == value, (path, name)
        policy = answer.header("content-security-policy")
        assert "script-src 'self'" in policy
        assert "frame-ancestors 'none'" in policy
        assert "unsafe-inline" not in policy
        # Nothing the policy would block: no inline script or style.
        assert "<script>" not in answer.text
        assert "style=" not in answer.text
    static = browser.get("/static/desk.css")
    assert static.status == 200
    assert static.header("cache-control") != "no-store"


def test_a_look_up_by_identity_number_leaves_it_in_no_url_redirect_or_log(desk: Desk) -> None:
    browser = desk.signed_in("clerk")
    browser.get("/beneficiaries/find")
    found = browser.post(
        "/beneficiaries/find", {"identity_type": "resident_id", "identity_number": desk.due_number}
    )
    assert found.status == 303
    location = found.header("location")
    assert re.fullmatch(r"/beneficiaries/[0-9a-f-]{36}", location)
    person = browser.get(location)
    assert person.status == 200
    assert desk.due_number not in person.text
    assert desk.due_number[:2] + "*" * 14 + desk.due_number[-2:] in person.text
    assert "Due for certification" in person.text
    for url in browser.history:
        assert desk.due_number not in url
    assert desk.due_number not in desk.logs()


def test_a_wrong_check_character_is_refused_in_the_operators_language(desk: Desk) -> None:
    wrong = desk.other_number[:-1] + ("1" if desk.other_number[-1] != "1" else "2")
    for language, words in (("zh-CN", "校验码与前17位不符"), ("pt-PT", "carácter de controlo")):
        browser = desk.browser(language)
        browser.sign_in("clerk", desk.passwords["clerk"])
        browser.get("/beneficiaries/find")
        answer = browser.post(
            "/beneficiaries/find", {"identity_type": "resident_id", "identity_number": wrong}
        )
        assert answer.status == 400
        assert words in answer.text
        assert 'href="#identity_number"' in answer.text
        assert 'id="identity_number-error"' in answer.text
        # The number typed is not written back into the page either.
        assert wrong not in answer.text
    assert wrong not in desk.logs()


def test_the_due_list_downloads_as_formula_safe_csv(desk: Desk) -> None:
    browser = desk.signed_in("reviewer")
    page = browser.get("/lists/due")
    assert page.status == 200
    answer = browser.get("/lists/due?format=csv")
    assert answer.status == 200
    assert answer.header("content-type").startswith("text/csv")
    assert "attachment" in answer.header("content-disposition")
    rows = list(csv.reader(io.StringIO(answer.body.decode("utf-8-sig"))))
    masked = desk.due_number[:2] + "*" * 14 + desk.due_number[-2:]
    assert rows[0][:2] == ["Person", "Identity number"]
    assert [row[1] for row in rows[1:]] == [masked]
    assert rows[1][6] == "2500.00"
    for row in rows:
        for cell in row:
            assert not cell.startswith(("=", "+", "@")), cell
    xlsx = browser.get("/lists/due?format=xlsx")
    assert xlsx.status == 200
    assert xlsx.body.startswith(b"PK")


def test_the_language_chosen_is_remembered_for_the_operator(desk: Desk) -> None:
    browser = desk.signed_in("admin")
    assert browser.post("/language", {"locale": "zh-Hant", "next": "/"}).status == 303
    again = desk.browser("en")
    again.sign_in("admin", desk.passwords["admin"])
    home = again.get("/")
    assert '<html lang="zh-Hant">' in home.text
    assert "您的待辦事項" in home.text


def test_every_page_of_each_role_opens(desk: Desk) -> None:
    clerk = desk.signed_in("clerk")
    for path in [
        "/",
        "/beneficiaries/find",
        *(f"/lists/{view}" for view in ("due", "warning", "suspended", "overpayments")),
        "/lists/duplicates",
        "/lists/report",
        "/lists/report?format=xlsx",
    ]:
        assert clerk.get(path).status == 200, path
    person = _links(clerk.get("/lists/due").text, "/beneficiaries/")
    assert len(person) == 1
    page = clerk.get(person[0])
    assert page.status == 200
    # One call gives the page its entitlement and the request the daily cycle sent to Qingdao.
    assert "Due for certification" in page.text
    assert len(_links(page.text, "/requests/")) == 1
    assert "<td>qingdao</td>" in page.text
    assert clerk.get(person[0] + "/assistance").status == 200
    # A clerk has no administrator's pages; the paying office has no residence agency pages.
    assert clerk.get("/admin/operators").status == 403
    assert clerk.get("/inbox").status == 403
    admin = desk.signed_in("admin")
    operators = admin.get("/admin/operators")
    assert operators.status == 200
    managed = _links(operators.text, "/admin/operators/op-")
    assert managed
    for path in [
        managed[0],
        "/admin/operators/new",
        "/admin/outbox",
        "/admin/outbox?state=dead",
        "/admin/federation",
        "/admin/audit",
        "/admin/audit?action_prefix=operator.",
    ]:
        assert admin.get(path).status == 200, path
    # The view verified what was chained since the last check; the node re-read the whole chain
    # in the background when it started.
    audit_page = admin.get("/admin/audit").text
    assert "稽核紀錄的雜湊鏈驗證通過" in audit_page
    assert "整條雜湊鏈最近一次完整重讀驗證於" in audit_page
    export = admin.get("/admin/audit.csv")
    assert export.status == 200
    assert "operator.sign_in" in export.body.decode("utf-8-sig")
    federation = admin.get("/admin/federation")
    assert "qingdao" in federation.text
    # (In Traditional Chinese: the administrator chose it above.)
    assert "居住地經辦機構" in federation.text
    assert "日誌條目數" in federation.text
    # The administrator sees no requests on the person's page (not their list), the clerk no
    # payments.
    assert "/requests/" not in admin.get(person[0]).text
    assert "Payments withheld and back pay" not in page.text
    reviewer = desk.signed_in("reviewer")
    assert reviewer.get("/reviews").status == 200
    missing = reviewer.get("/certifications/0190f0f0-0000-7000-8000-000000000000")
    assert missing.status == 404
    assert "Certification not found" in missing.text
    assert reviewer.get("/certifications/not-an-id").status == 404
