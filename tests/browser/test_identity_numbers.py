"""An identity number with a wrong check character is caught at the desk, as the clerk types
and again when the form is sent, with the error in the operator's language; the number never
appears in a URL or a server log."""

from __future__ import annotations

import re

import pytest

from adapters.web_desk.i18n import translations
from adapters.web_desk.identity import LIVE_MESSAGES
from cli.demo import LANZHOU
from tests.browser.desk_federation import DeskFederation, assert_no_identity_number_leaked
from tests.browser.desk_page import OpenDesk

CJK = re.compile(r"[\u4e00-\u9fff]")


def _wrong_check_character(number: str) -> str:
    wrong = "0" if number[-1] != "0" else "1"
    return number[:-1] + wrong


@pytest.mark.parametrize("locale", ["zh-Hans", "pt"])
def test_wrong_check_character_is_shown_inline_in_the_operators_language(
    locale: str, desk_federation: DeskFederation, open_desk: OpenDesk, request_urls: list[str]
) -> None:
    person = desk_federation.register(LANZHOU, residence_region="620102")
    typo = _wrong_check_character(person.identity_number)
    desk_federation.identity_numbers.add(typo)
    expected = translations(locale).gettext(LIVE_MESSAGES["check"])
    assert expected != LIVE_MESSAGES["check"], f"not translated into {locale}"
    if locale.startswith("zh"):
        assert CJK.search(expected)

    clerk = open_desk(LANZHOU.node_id, locale)
    clerk.sign_in("clerk2", desk_federation.password(LANZHOU.node_id, "clerk2"))
    clerk.open("/beneficiaries/find")
    # As the clerk types (desk.js), before anything is sent.
    clerk.page.type("#identity_number", typo)
    clerk.page.locator("#identity_number-live").wait_for(state="visible", timeout=5_000)
    assert clerk.text("#identity_number-live") == expected
    # And from the server when sent anyway: the summary links to the field.
    clerk.press("find")
    assert clerk.path == "/beneficiaries/find"
    assert expected in clerk.text("#identity_number-error")
    assert clerk.has(".error-summary[role=alert] a[href='#identity_number']")
    assert expected in clerk.alert()
    # The right number finds the person.
    clerk.fill(identity_number=person.identity_number)
    clerk.press("find")
    assert clerk.path == f"/beneficiaries/{person.beneficiary_id}"
    assert_no_identity_number_leaked(desk_federation, request_urls)
