"""Monthly amount changes at the desk: a reviewer approves the changes a page of the list shows
after the check step, and the node approves those it may and leaves, with why, the reviewer's
own proposal and a rise larger than the policy allows in bulk; the reviewer then rejects that
rise on its own page, where a reason is required, and the proposer is offered no decision on
their own. Each step is saved as a screenshot."""

from __future__ import annotations

import pytest

from certfed.v1 import desk_pb2
from cli.demo import LANZHOU
from tests.browser.desk_federation import DeskFederation
from tests.browser.desk_page import OpenDesk


def _propose(
    federation: DeskFederation, operator: str, beneficiary_id: str, amount_fen: int
) -> str:
    with federation.local.desk(LANZHOU.node_id, operator) as desk:
        change = desk.stub.ProposeMonthlyAmount(
            desk_pb2.ProposeMonthlyAmountRequest(
                beneficiary_id=beneficiary_id, monthly_amount_fen=amount_fen, reason="2027 rise"
            )
        ).change
    return str(change.change_id)


def _status(federation: DeskFederation, change_id: str) -> int:
    with federation.local.desk(LANZHOU.node_id, "reviewer") as desk:
        change = desk.stub.GetAmountChange(
            desk_pb2.GetAmountChangeRequest(change_id=change_id)
        ).change
    return int(change.status)


@pytest.mark.parametrize("locale", ["en", "zh-Hans"])
def test_a_reviewer_approves_a_page_of_changes_and_decides_the_rest_one_by_one(
    locale: str, desk_federation: DeskFederation, open_desk: OpenDesk
) -> None:
    people = [desk_federation.register(LANZHOU, residence_region="620102") for _ in range(4)]
    # Registered at 3,200.00 yuan a month: two 3% rises, a 40% one, and one the reviewer
    # proposed themselves.
    rises = [_propose(desk_federation, "clerk", p.beneficiary_id, 329_600) for p in people[:2]]
    large = _propose(desk_federation, "clerk", people[2].beneficiary_id, 448_000)
    own = _propose(desk_federation, "senior", people[3].beneficiary_id, 326_400)

    reviewer = open_desk(LANZHOU.node_id, locale)
    reviewer.sign_in("senior", desk_federation.password(LANZHOU.node_id, "senior"))
    reviewer.open("/amount-changes")
    assert reviewer.has("#amount-changes")
    reviewer.screenshot("amount-changes")
    reviewer.press("continue")
    assert reviewer.has("#confirm")
    reviewer.screenshot("amount-changes-check")
    assert _status(desk_federation, rises[0]) == desk_pb2.AMOUNT_CHANGE_STATUS_PROPOSED
    reviewer.press("confirm")
    assert reviewer.has("#decided")
    left = reviewer.text("#left")
    reviewer.screenshot("amount-changes-approved")
    for change_id in rises:
        assert _status(desk_federation, change_id) == desk_pb2.AMOUNT_CHANGE_STATUS_APPROVED
    for change_id in (large, own):
        assert change_id[-12:] in left
        assert _status(desk_federation, change_id) == desk_pb2.AMOUNT_CHANGE_STATUS_PROPOSED

    # Their own proposal: no decision offered.
    reviewer.open(f"/amount-changes/{own}")
    assert reviewer.has("#four-eyes")
    assert not reviewer.has("#continue")
    # The large rise, on its own: rejecting needs a reason.
    reviewer.open(f"/amount-changes/{large}")
    reviewer.choose("decision", "reject")
    reviewer.press("continue")
    assert reviewer.alert(), "a reason must be required to reject"
    reviewer.screenshot("amount-change-errors")
    reviewer.fill(reason="The roll's amount is a typing error")
    reviewer.press("continue")
    assert reviewer.has("#confirm")
    reviewer.screenshot("amount-change-check")
    reviewer.press("confirm")
    assert reviewer.text("#reference") == large
    reviewer.screenshot("amount-change-rejected")
    assert _status(desk_federation, large) == desk_pb2.AMOUNT_CHANGE_STATUS_REJECTED
