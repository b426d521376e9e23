"""The web desk's monthly amount changes on a real Lanzhou paying office and its `certfed web
serve` process: a clerk sees them and is offered no decision (a decision sent anyway is
refused); a reviewer's approval of a page's changes is checked before it is sent, and a form
that names no change, too many, or one the office does not keep changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest

from adapters.web_desk.settings import PAGE_SIZE
from certfed.v1 import desk_pb2
from cli.launcher import LocalFederation
from federation_node.ids import new_id
from tests.helpers.identities import resident, resident_id
from tests.helpers.nodes import LANZHOU
from tests.integration.web_desk.desk_http import DeskBrowser


@dataclass
class Office:
    local: LocalFederation
    url: str
    # The changes proposed, by the person's beneficiary id.
    changes: dict[str, str]

    def signed_in(self, operator: str) -> DeskBrowser:
        browser = DeskBrowser(self.url)
        password = self.local.nodes[LANZHOU.node_id].passwords[operator]
        assert browser.sign_in(operator, password).status == 303
        return browser

    def status(self, change_id: str) -> int:
        with self.local.desk(LANZHOU.node_id, "reviewer") as desk:
            found = desk.stub.GetAmountChange(desk_pb2.GetAmountChangeRequest(change_id=change_id))
        return int(found.change.status)


@pytest.fixture(scope="module")
def office(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Office]:
    workdir: Path = tmp_path_factory.mktemp("amount-pages")
    with LocalFederation(workdir, sign_in=True) as local:
        local.start_registry()
        local.add_node(LANZHOU, settings={"cycle_hour_utc": -1})
        changes: dict[str, str] = {}
        with local.desk(LANZHOU.node_id) as clerk:
            for serial in range(2):
                person = clerk.stub.RegisterBeneficiary(
                    desk_pb2.RegisterBeneficiaryRequest(
                        identity=resident(resident_id("620102", date(1951, 5, 6), 70 + serial)),
                        residence_region="620102",
                        monthly_amount_fen=250_000,
                    )
                ).beneficiary.beneficiary_id
                changes[person] = clerk.stub.ProposeMonthlyAmount(
                    desk_pb2.ProposeMonthlyAmountRequest(
                        beneficiary_id=person, monthly_amount_fen=257_500, reason="2027 rise"
                    )
                ).change.change_id
        yield Office(local, local.start_web_desk(LANZHOU.node_id), changes)


def test_a_clerk_sees_the_changes_and_is_refused_a_decision(office: Office) -> None:
    clerk = office.signed_in("clerk")
    page = clerk.get("/amount-changes")
    assert page.status == 200
    for change_id in office.changes.values():
        assert change_id in page.text
    assert 'id="continue"' not in page.text
    refused = clerk.post(
        "/amount-changes", {"step": "confirm", "change_id": list(office.changes.values())}
    )
    assert refused.status == 403
    assert {office.status(c) for c in office.changes.values()} == {
        desk_pb2.AMOUNT_CHANGE_STATUS_PROPOSED
    }


def test_a_reviewers_approval_of_a_page_is_checked_and_bad_forms_change_nothing(
    office: Office,
) -> None:
    reviewer = office.signed_in("reviewer")
    listed = reviewer.get("/amount-changes")
    assert 'id="continue"' in listed.text
    shown = list(office.changes.values())
    for fields, status in (
        ({"step": "confirm"}, 400),
        ({"step": "confirm", "change_id": [new_id() for _ in range(PAGE_SIZE + 1)]}, 400),
        ({"step": "confirm", "change_id": ["x" * 65]}, 400),
        ({"step": "confirm", "change_id": [*shown, new_id()]}, 404),
    ):
        answer = reviewer.post("/amount-changes", fields)
        assert answer.status == status, fields
        assert "There is a problem" in answer.text
    assert {office.status(c) for c in shown} == {desk_pb2.AMOUNT_CHANGE_STATUS_PROPOSED}
    checked = reviewer.post("/amount-changes", {"step": "check", "change_id": shown})
    assert checked.status == 200
    assert 'id="confirm"' in checked.text
    assert {office.status(c) for c in shown} == {desk_pb2.AMOUNT_CHANGE_STATUS_PROPOSED}
    done = reviewer.post(
        "/amount-changes", {"step": "confirm", "change_id": shown, "reason": "2027 rise"}
    )
    assert done.status == 200
    assert '<strong id="decided">2</strong>' in done.text
    assert {office.status(c) for c in shown} == {desk_pb2.AMOUNT_CHANGE_STATUS_APPROVED}
    assert reviewer.get(f"/amount-changes/{new_id()}").status == 404
    assert reviewer.get(f"/amount-changes/{'x' * 65}").status == 404
