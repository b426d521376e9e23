"""The web desk's approval of every amount change awaiting review (a year's adjustment, more
changes than a page of the node's list) on a real Lanzhou paying office and its `certfed web
serve` process: checked first with the count awaiting; then a page of the node's list per
request, each answer carrying the node's page token and the running counts to the next; the
changes the office may not approve together are left awaiting review; a clerk is refused,
and a tampered form or a reason too long changes nothing."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from certfed.v1 import desk_pb2
from cli.launcher import LocalFederation
from tests.helpers.adjustment import propose_yearly_rise
from tests.helpers.nodes import LANZHOU
from tests.integration.web_desk.desk_http import Answer, DeskBrowser

# More than a page of the node's list (limits.max_page_size, 500), so the walk takes three.
PEOPLE = 1_100
HIDDEN = re.compile(r'<input type="hidden" name="(\w+)" value="([^"]*)">')


@dataclass
class Office:
    local: LocalFederation
    url: str
    # The change a clerk proposed for one person, moving the amount by 40%.
    too_large: str

    def signed_in(self, operator: str) -> DeskBrowser:
        browser = DeskBrowser(self.url)
        password = self.local.nodes[LANZHOU.node_id].passwords[operator]
        assert browser.sign_in(operator, password).status == 303
        return browser

    def awaiting(self) -> list[str]:
        with self.local.desk(LANZHOU.node_id, "reviewer") as desk:
            ids: list[str] = []
            token = ""
            while True:
                page = desk.stub.ListAmountChanges(
                    desk_pb2.ListAmountChangesRequest(
                        status=desk_pb2.AMOUNT_CHANGE_STATUS_PROPOSED,
                        page_size=500,
                        page_token=token,
                    )
                )
                ids.extend(change.change_id for change in page.changes)
                token = page.next_page_token
                if not token:
                    return ids


@pytest.fixture(scope="module")
def office(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Office]:
    workdir: Path = tmp_path_factory.mktemp("amounts-all")
    with LocalFederation(workdir, sign_in=True) as local:
        local.start_registry()
        local.add_node(LANZHOU, settings={"cycle_hour_utc": -1})
        with local.desk(LANZHOU.node_id) as clerk:
            assert propose_yearly_rise(clerk, workdir, PEOPLE) == PEOPLE
            person = clerk.stub.ListBeneficiaries(
                desk_pb2.ListBeneficiariesRequest(page_size=1)
            ).beneficiaries[0]
            too_large = clerk.stub.ProposeMonthlyAmount(
                desk_pb2.ProposeMonthlyAmountRequest(
                    beneficiary_id=person.beneficiary_id,
                    monthly_amount_fen=280_000,
                    reason="a case of its own",
                )
            ).change.change_id
        yield Office(local, local.start_web_desk(LANZHOU.node_id), too_large)


def _fields(answer: Answer) -> dict[str, str]:
    """The hidden fields of the page's form for the next page (the CSRF token aside)."""
    return {
        name: html.unescape(value)
        for name, value in HIDDEN.findall(answer.text)
        if name != "csrf_token"
    }


def test_a_clerk_is_offered_nothing_and_refused(office: Office) -> None:
    clerk = office.signed_in("clerk")
    assert 'id="approve-all"' not in clerk.get("/amount-changes").text
    for fields in ({}, {"step": "run", "token": "", "approved": "0"}):
        assert clerk.post("/amount-changes/approve-all", fields).status == 403
    assert len(office.awaiting()) == PEOPLE


def test_a_reviewer_approves_every_change_a_page_per_request(office: Office) -> None:
    reviewer = office.signed_in("reviewer")
    assert 'id="approve-all"' in reviewer.get("/amount-changes").text
    checked = reviewer.post("/amount-changes/approve-all", {})
    assert checked.status == 200
    assert "1,100" in checked.text
    assert len(office.awaiting()) == PEOPLE
    start = {"step": "run", "token": "", "approved": "0", "reason": "2027 rise"}
    # A reason too long, or counts and a token no page of the desk sends, change nothing.
    for changed, status in (
        ({"reason": "x" * 501}, 400),
        ({"approved": "-1"}, 400),
        ({"approved": "1" * 10}, 400),
        ({"token": "x" * 513}, 400),
    ):
        refused = reviewer.post("/amount-changes/approve-all", {**start, **changed})
        assert refused.status == status, changed
        assert "There is a problem" in refused.text
    assert len(office.awaiting()) == PEOPLE
    # A page the node refuses (a token it never gave) is offered again, not gone on from.
    bad = reviewer.post("/amount-changes/approve-all", {**start, "token": "not-a-token"})
    assert bad.status == 400
    assert 'id="refused"' in bad.text
    assert 'id="go-on"' in bad.text
    assert "data-auto-submit" not in bad.text
    assert len(office.awaiting()) == PEOPLE
    # Each answer goes on from the node's page token with the counts so far.
    answer = reviewer.post("/amount-changes/approve-all", start)
    requests = 1
    while "data-auto-submit" in answer.text:
        fields = _fields(answer)
        assert fields["token"]
        assert fields["reason"] == "2027 rise"
        answer = reviewer.post("/amount-changes/approve-all", fields)
        requests += 1
    assert answer.status == 200
    assert requests == 3
    assert '<strong id="decided">1,099</strong>' in answer.text
    assert '<dd id="left">1</dd>' in answer.text
    assert 'id="left-list"' in answer.text
    assert office.awaiting() == [office.too_large]
    # A page sent again (the browser's back button) asks about what it left once more: the
    # change left is not counted twice, the office's list is counted afresh at the end.
    again = reviewer.post("/amount-changes/approve-all", start)
    assert '<strong id="decided">0</strong>' in again.text
    assert '<dd id="left">1</dd>' in again.text
    # The one left is decided on its own; with nothing awaiting review, the list says so.
    with office.local.desk(LANZHOU.node_id, "reviewer") as desk:
        desk.stub.ReviewMonthlyAmount(
            desk_pb2.ReviewMonthlyAmountRequest(
                change_id=office.too_large, approve=False, reason="to be checked"
            )
        )
    nothing = reviewer.post("/amount-changes/approve-all", {})
    assert nothing.status == 409
    assert "No amount change awaits review." in nothing.text
