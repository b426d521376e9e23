"""The web desk's pages of the certification channels on a real Lanzhou paying office and its
`certfed web serve` process: the people a face recognition did not certify, with what the clerk
can do next; employers' batch lists, approved or rejected whole by a reviewer after a check
step. The uploader of a batch (though also a reviewer) and a clerk are refused, with a clear
message, and nothing changes. No identity number reaches a page or a URL."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from certfed.v1 import desk_pb2
from cli.launcher import LocalFederation
from federation.timestamps import to_timestamp
from tests.helpers.channel_records import (
    face_recognition_feed,
    record_failed_face_recognition,
    upload_employer_batch,
)
from tests.helpers.identities import resident, resident_id
from tests.helpers.nodes import LANZHOU
from tests.integration.web_desk.desk_http import Answer, DeskBrowser

PROVIDER = "lanzhou-kiosk"


@dataclass
class Desk:
    local: LocalFederation
    url: str
    numbers: dict[str, str]
    people: dict[str, str]
    batches: dict[str, desk_pb2.EmployerBatch]

    def signed_in(self, operator: str, accept_language: str = "en") -> DeskBrowser:
        browser = DeskBrowser(self.url, accept_language=accept_language)
        password = self.local.nodes[LANZHOU.node_id].passwords[operator]
        assert browser.sign_in(operator, password).status == 303
        return browser

    def batch(self, name: str) -> desk_pb2.EmployerBatch:
        """The batch as the node has it now."""
        with self.local.desk(LANZHOU.node_id, "reviewer") as desk:
            batches = desk.stub.ListEmployerBatches(
                desk_pb2.ListEmployerBatchesRequest(page_size=100)
            ).batches
        (found,) = [b for b in batches if b.batch_id == self.batches[name].batch_id]
        return found

    def valid_until(self, person: str) -> datetime:
        with self.local.desk(LANZHOU.node_id) as desk:
            found = desk.stub.GetBeneficiary(
                desk_pb2.GetBeneficiaryRequest(beneficiary_id=self.people[person])
            ).beneficiary
        moment: datetime = found.valid_until.ToDatetime(UTC)
        return moment


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desk]:
    workdir: Path = tmp_path_factory.mktemp("channel-pages")
    with LocalFederation(workdir, sign_in=True) as local:
        local.start_registry()
        local.add_node(LANZHOU, settings={"cycle_hour_utc": -1})
        names = ("failed", "own-1", "own-2", "approve-1", "approve-2", "reject-1")
        numbers = {
            name: resident_id("620102", date(1952, 3, 4), 40 + serial)
            for serial, name in enumerate(names)
        }
        people: dict[str, str] = {}
        with local.desk(LANZHOU.node_id) as clerk:
            for name, number in numbers.items():
                people[name] = clerk.stub.RegisterBeneficiary(
                    desk_pb2.RegisterBeneficiaryRequest(
                        identity=resident(number),
                        residence_region="620102",
                        monthly_amount_fen=250_000,
                        valid_until=to_timestamp(datetime.now(UTC) + timedelta(days=20)),
                    )
                ).beneficiary.beneficiary_id
        feed = face_recognition_feed(local, LANZHOU.node_id, PROVIDER)
        record_failed_face_recognition(local, LANZHOU.node_id, feed, numbers["failed"], "K-101")
        node = LANZHOU.node_id
        batches = {
            # Uploaded by an operator who also reviews: the four-eyes rule must stop them.
            "own": upload_employer_batch(
                local, node, "senior", "own.csv", [numbers["own-1"], numbers["own-2"]]
            ),
            "approve": upload_employer_batch(
                local, node, "clerk", "approve.csv", [numbers["approve-1"], numbers["approve-2"]]
            ),
            "reject": upload_employer_batch(
                local, node, "clerk", "reject.csv", [numbers["reject-1"]]
            ),
        }
        url = local.start_web_desk(node)
        yield Desk(local, url, numbers, people, batches)


def masked(number: str) -> str:
    return number[:2] + "*" * 14 + number[-2:]


def no_identity_number(desk: Desk, *answers: Answer) -> None:
    for answer in answers:
        for number in desk.numbers.values():
            assert number not in answer.text


def test_the_face_recognition_follow_ups_say_who_to_certify_another_way(desk: Desk) -> None:
    clerk = desk.signed_in("clerk")
    page = clerk.get("/lists/face-recognition")
    assert page.status == 200
    person = desk.people["failed"]
    assert f'<a href="/beneficiaries/{person}">{masked(desk.numbers["failed"])}</a>' in page.text
    assert f'href="/beneficiaries/{person}/assistance"' in page.text
    assert PROVIDER in page.text
    assert ">62<" in page.text
    assert ">93.5<" in page.text
    home = clerk.get("/")
    card = re.search(
        r'<a href="/lists/face-recognition"><span class="card-number">(\d+)</span>', home.text
    )
    assert card is not None
    assert card.group(1) == "1"
    chinese = desk.signed_in("reviewer", "zh-Hans").get("/lists/face-recognition")
    assert chinese.status == 200
    assert "人脸识别未通过" in chinese.text
    # A reviewer is sent to the person's page, not to ask for assistance (a clerk's step).
    assert f'href="/beneficiaries/{person}/assistance"' not in chinese.text
    no_identity_number(desk, page, home, chinese)
    refused = desk.signed_in("admin").get("/lists/face-recognition")
    assert refused.status == 403


def test_the_uploader_of_a_batch_is_refused_its_decision_and_nothing_changes(desk: Desk) -> None:
    before = desk.valid_until("own-1")
    batch_id = desk.batches["own"].batch_id
    senior = desk.signed_in("senior")
    page = senior.get(f"/employer-batches/{batch_id}")
    assert page.status == 200
    assert 'id="four-eyes"' in page.text
    assert 'name="decision"' not in page.text
    # A form sent anyway (an old tab, a forged post): the desk says why at the check step...
    checked = senior.post(
        f"/employer-batches/{batch_id}", {"step": "check", "decision": "approve", "reason": ""}
    )
    assert checked.status == 400
    four_eyes = "You uploaded this batch: a different reviewer must approve or reject it."
    assert four_eyes in checked.text
    # ...and the node refuses the decision itself, which the page shows in the operator's words.
    confirmed = senior.post(
        f"/employer-batches/{batch_id}", {"step": "confirm", "decision": "approve", "reason": ""}
    )
    assert confirmed.status == 403
    assert four_eyes in confirmed.text
    assert 'href="#four-eyes"' in confirmed.text
    chinese = desk.signed_in("senior", "zh-Hans")
    chinese.get(f"/employer-batches/{batch_id}")
    refused = chinese.post(
        f"/employer-batches/{batch_id}", {"step": "confirm", "decision": "approve", "reason": ""}
    )
    assert refused.status == 403
    assert "须由另一位复核员审批或驳回" in refused.text
    assert desk.batch("own").state == desk_pb2.EMPLOYER_BATCH_STATE_PENDING
    assert desk.valid_until("own-1") == before
    no_identity_number(desk, page, checked, confirmed, refused)


def test_a_clerk_sees_a_batch_but_cannot_decide_it(desk: Desk) -> None:
    batch_id = desk.batches["own"].batch_id
    clerk = desk.signed_in("clerk")
    listed = clerk.get("/employer-batches")
    assert listed.status == 200
    assert f'href="/employer-batches/{batch_id}"' in listed.text
    page = clerk.get(f"/employer-batches/{batch_id}")
    assert page.status == 200
    assert 'name="decision"' not in page.text
    refused = clerk.post(
        f"/employer-batches/{batch_id}", {"step": "confirm", "decision": "approve", "reason": ""}
    )
    assert refused.status == 403
    assert "Not for your role" in refused.text
    assert desk.batch("own").state == desk_pb2.EMPLOYER_BATCH_STATE_PENDING


def test_a_reviewer_approves_a_batch_after_checking_the_decision(desk: Desk) -> None:
    before = desk.valid_until("approve-1")
    batch_id = desk.batches["approve"].batch_id
    reviewer = desk.signed_in("reviewer")
    home = reviewer.get("/")
    assert '<a href="/employer-batches"><span class="card-number">' in home.text
    listed = reviewer.get("/employer-batches")
    assert f'href="/employer-batches/{batch_id}"' in listed.text
    page = reviewer.get(f"/employer-batches/{batch_id}")
    assert page.status == 200
    assert "approve.csv" in page.text
    assert "兰州市财政局" in page.text
    # The rows the reviewer decides on: each person masked, linked to their page.
    rows = page.text.split('id="batch-rows"')[1]
    for person in ("approve-1", "approve-2"):
        assert masked(desk.numbers[person]) in rows
        assert f'href="/beneficiaries/{desk.people[person]}"' in rows
    assert "Certified" not in rows
    checked = reviewer.post(
        f"/employer-batches/{batch_id}", {"step": "check", "decision": "approve", "reason": ""}
    )
    assert checked.status == 200
    assert 'id="confirm"' in checked.text
    assert "Approve the batch" in checked.text
    # The check step records nothing.
    assert desk.batch("approve").state == desk_pb2.EMPLOYER_BATCH_STATE_PENDING
    done = reviewer.post(
        f"/employer-batches/{batch_id}", {"step": "confirm", "decision": "approve", "reason": ""}
    )
    assert done.status == 200
    assert "Employer batch approved" in done.text
    assert "2 of the 2 people on the batch are certified" in done.text
    assert batch_id in done.text
    decided = desk.batch("approve")
    assert (decided.state, decided.issued) == (desk_pb2.EMPLOYER_BATCH_STATE_APPROVED, 2)
    assert desk.valid_until("approve-1") > before + timedelta(days=300)
    shown = reviewer.get(f"/employer-batches/{batch_id}")
    assert 'name="decision"' not in shown.text
    assert "People certified" in shown.text
    assert shown.text.split('id="batch-rows"')[1].count("<td>Certified</td>") == 2
    missing = reviewer.get("/employer-batches/not-a-batch")
    assert missing.status == 404
    no_identity_number(desk, page, checked, done, shown)


def test_a_rejection_needs_a_reason_and_changes_nothing(desk: Desk) -> None:
    before = desk.valid_until("reject-1")
    batch_id = desk.batches["reject"].batch_id
    reviewer = desk.signed_in("reviewer")
    reviewer.get(f"/employer-batches/{batch_id}")
    unexplained = reviewer.post(
        f"/employer-batches/{batch_id}", {"step": "check", "decision": "reject", "reason": ""}
    )
    assert unexplained.status == 400
    assert "Say why you reject the batch" in unexplained.text
    undecided = reviewer.post(f"/employer-batches/{batch_id}", {"step": "check", "reason": "x"})
    assert undecided.status == 400
    assert "Choose whether to approve or reject the batch" in undecided.text
    reason = "The unit sent the list of the previous year"
    fields = {"decision": "reject", "reason": reason}
    checked = reviewer.post(f"/employer-batches/{batch_id}", {"step": "check", **fields})
    assert checked.status == 200
    assert "Reject the batch" in checked.text
    done = reviewer.post(f"/employer-batches/{batch_id}", {"step": "confirm", **fields})
    assert done.status == 200
    assert "Employer batch rejected" in done.text
    decided = desk.batch("reject")
    assert (decided.state, decided.reason) == (desk_pb2.EMPLOYER_BATCH_STATE_REJECTED, reason)
    assert desk.valid_until("reject-1") == before
    every = reviewer.get("/employer-batches?show=all")
    assert f'href="/employer-batches/{batch_id}"' in every.text
    assert reason in reviewer.get(f"/employer-batches/{batch_id}").text
    pending = reviewer.get("/employer-batches")
    assert f'href="/employer-batches/{batch_id}"' not in pending.text


def test_an_unknown_batch_is_not_found(desk: Desk) -> None:
    reviewer = desk.signed_in("reviewer")
    assert reviewer.get("/employer-batches/no-such-batch").status == 404
    reviewer.get("/employer-batches")
    answer = reviewer.post(
        "/employer-batches/no-such-batch", {"step": "confirm", "decision": "approve"}
    )
    assert answer.status == 404
