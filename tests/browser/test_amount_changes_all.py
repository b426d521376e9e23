"""A year's adjustment at the desk: a roll import proposes a new amount for 600 people, more
than a page of the node's list, and a reviewer approves every change awaiting review from the
browser: checked first with how many await review, then the desk's script asks for each next
page by itself until the last. The office is one of its own (a registry, Lanzhou and its web
desk), so the 600 people stay out of the other browser tests' federation. The check page and
the result are saved as screenshots."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser

from cli.launcher import LocalFederation
from federation.amount_reviews import awaiting_review
from tests.browser.desk_page import AccessibilityAudit, desk_page
from tests.helpers.adjustment import propose_yearly_rise
from tests.helpers.nodes import LANZHOU

PEOPLE = 600
LOCALE = "en"


@pytest.fixture(scope="module")
def adjusted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalFederation, str]]:
    workdir = tmp_path_factory.mktemp("adjustment")
    with LocalFederation(workdir, federation_id="certfed-adjustment", sign_in=True) as local:
        local.start_registry()
        local.add_node(LANZHOU, settings={"cycle_hour_utc": -1})
        with local.desk(LANZHOU.node_id) as clerk:
            assert propose_yearly_rise(clerk, workdir, PEOPLE) == PEOPLE
        yield local, local.start_web_desk(LANZHOU.node_id)


def _awaiting(local: LocalFederation) -> int:
    with local.desk(LANZHOU.node_id, "reviewer") as desk:
        return awaiting_review(desk)


def test_a_reviewer_approves_a_years_adjustment_from_the_browser(
    adjusted: tuple[LocalFederation, str],
    browser: Browser,
    accessibility: AccessibilityAudit,
    screenshots: Path,
    request_urls: list[str],
) -> None:
    local, url = adjusted
    password = local.nodes[LANZHOU.node_id].passwords["reviewer"]
    with desk_page(browser, url, LOCALE, accessibility, screenshots, request_urls) as reviewer:
        reviewer.sign_in("reviewer", password)
        reviewer.open("/amount-changes")
        reviewer.screenshot("amount-changes-awaiting")
        reviewer.press("approve-all")
        assert reviewer.has("#confirm")
        assert "600" in reviewer.text(".summary")
        reviewer.screenshot("amount-changes-all-check")
        assert _awaiting(local) == PEOPLE
        reviewer.fill(reason="2027 adjustment")
        # The script sends each next page as soon as one shows; the last says it is done.
        reviewer.page.click("#confirm")
        reviewer.page.wait_for_selector(".panel-confirm #decided", timeout=60_000)
        reviewer.checked()
        assert reviewer.text("#decided") == "600"
        assert reviewer.text("#left") == "0"
        reviewer.screenshot("amount-changes-all-done")
    assert _awaiting(local) == 0
    pages = [u for u in request_urls if u.endswith("/amount-changes/approve-all")]
    # The check, then two pages of the node's list (500 and 100).
    assert len(pages) == 3
