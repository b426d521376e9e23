"""The whole assistance round trip, by three people in three browsers: the Lanzhou clerk asks
Qingdao, the Qingdao clerk accepts and records an on-site check with a photo, a Qingdao reviewer
opens the photo and approves, and the Lanzhou clerk sees the new validity on the person's page."""

from __future__ import annotations

from datetime import UTC, datetime

from adapters.web_desk.i18n import OFFICE_ZONE, Formats
from certfed.v1 import desk_pb2
from cli.demo import LANZHOU, QINGDAO, screen_capture_png
from cli.launcher import wait_until
from federation.timestamps import to_datetime
from tests.browser.desk_federation import DeskFederation, assert_no_identity_number_leaked
from tests.browser.desk_page import DeskPage, OpenDesk


def _valid_until(federation: DeskFederation, beneficiary_id: str) -> datetime:
    with federation.local.desk(LANZHOU.node_id) as desk:
        person = desk.stub.GetBeneficiary(
            desk_pb2.GetBeneficiaryRequest(beneficiary_id=beneficiary_id)
        ).beneficiary
    return to_datetime(person.valid_until)


def _open_when_listed(desk: DeskPage, listing: str, link: str) -> None:
    """Reload `listing` until it links to `link` (a message between offices takes a moment),
    then follow the link."""

    def listed() -> bool:
        desk.open(listing)
        return desk.has(f"a[href='{link}']")

    wait_until(listed, 30, f"{link} on {listing}")
    with desk.page.expect_navigation():
        desk.page.click(f"a[href='{link}']")
    desk.checked()


def test_three_people_complete_an_assistance_round_trip(
    desk_federation: DeskFederation, open_desk: OpenDesk, request_urls: list[str]
) -> None:
    person = desk_federation.register(LANZHOU, residence_region="370202")
    before = _valid_until(desk_federation, person.beneficiary_id)
    day = Formats("zh-Hans").day

    # Lanzhou's clerk finds the person by identity number and asks Qingdao.
    lanzhou = open_desk(LANZHOU.node_id)
    lanzhou.sign_in("clerk", desk_federation.password(LANZHOU.node_id, "clerk"))
    lanzhou.open("/beneficiaries/find")
    lanzhou.fill(identity_number=person.identity_number)
    lanzhou.press("find")
    assert lanzhou.path == f"/beneficiaries/{person.beneficiary_id}"
    assert day(before) in lanzhou.text("main")
    lanzhou.press("ask-assistance")
    assert lanzhou.path == f"/beneficiaries/{person.beneficiary_id}/assistance"
    lanzhou.press("continue")
    assert lanzhou.has("#change")
    lanzhou.screenshot("assistance-check")
    lanzhou.press("confirm")
    request_id = lanzhou.text("#reference")
    assert request_id

    # Qingdao's clerk accepts it and records an on-site check with a photo of the counter.
    clerk = open_desk(QINGDAO.node_id)
    clerk.sign_in("clerk", desk_federation.password(QINGDAO.node_id, "clerk"))
    _open_when_listed(clerk, "/inbox", f"/requests/{request_id}")
    clerk.press("accept")
    assert clerk.path.startswith(f"/requests/{request_id}")
    clerk.press("certify")
    assert clerk.path == f"/requests/{request_id}/certify"
    clerk.choose("method", "on_site")
    clerk.fill(observed_date=datetime.now(OFFICE_ZONE).date().isoformat())
    photo = screen_capture_png(41)
    clerk.page.set_input_files(
        "#evidence", files=[{"name": "counter.png", "mimeType": "image/png", "buffer": photo}]
    )
    clerk.press("continue")
    # Checking the answers: the photo is shown before anything is recorded.
    assert clerk.has("main img[src^='/evidence/']")
    clerk.press("confirm")
    certification_id = clerk.text("#reference")
    assert certification_id

    # A Qingdao reviewer opens the photo, then approves.
    reviewer = open_desk(QINGDAO.node_id)
    reviewer.sign_in("reviewer", desk_federation.password(QINGDAO.node_id, "reviewer"))
    _open_when_listed(reviewer, "/reviews", f"/certifications/{certification_id}")
    recorder = desk_federation.local.nodes[QINGDAO.node_id].operator_ids["clerk"]
    assert recorder in reviewer.text("main")  # who recorded it
    evidence_link = reviewer.page.locator("a[href^='/evidence/']").first.get_attribute("href")
    assert evidence_link
    shown = reviewer.open(evidence_link)
    assert shown.status == 200
    assert shown.header_value("content-type") == "image/png"
    assert shown.body() == photo
    reviewer.open(f"/certifications/{certification_id}")
    reviewer.press("approve")
    assert reviewer.text("#reference")

    # Lanzhou's clerk sees the new validity on the person's page.
    after = wait_until(
        lambda: (moved := _valid_until(desk_federation, person.beneficiary_id)) != before and moved,
        30,
        "Lanzhou to apply Qingdao's attestation",
    )
    assert after > before
    assert (after - datetime.now(UTC)).days > 300
    lanzhou.open(f"/beneficiaries/{person.beneficiary_id}")
    assert day(after) in lanzhou.text("main")

    assert_no_identity_number_leaked(desk_federation, request_urls)
