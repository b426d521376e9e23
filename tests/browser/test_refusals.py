"""What the desk refuses, as designed: a POST without its CSRF token, a session that has
expired, an operator an administrator disabled (at once, in the middle of their session), and
a sixth attempt after five wrong passwords, even with the right one."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from cli.demo import LANZHOU
from cli.launcher import NodeSpec
from tests.browser.desk_federation import DeskFederation
from tests.browser.desk_page import OpenDesk

# An office whose sessions end after three seconds without a call.
BRIEF = NodeSpec("zhuhai", "Zhuhai office", ("440400",), ("paying_office",))
IDLE_S = 3.0


@pytest.fixture(scope="module")
def brief_sessions(desk_federation: DeskFederation) -> Iterator[str]:
    local = desk_federation.local
    local.add_node(BRIEF, settings={"operator_sessions": {"idle_minutes": IDLE_S / 60}})
    local.start_web_desk(BRIEF.node_id)
    yield BRIEF.node_id
    local.stop_web_desk(BRIEF.node_id)
    local.stop_node(BRIEF.node_id)


def test_post_without_csrf_token_is_refused_and_changes_nothing(
    desk_federation: DeskFederation, open_desk: OpenDesk
) -> None:
    clerk = open_desk(LANZHOU.node_id)
    clerk.sign_in("clerk", desk_federation.password(LANZHOU.node_id, "clerk"))
    # The same browser, its session cookie sent, the form's token left out.
    refused = clerk.page.request.post(
        f"{clerk.base_url}/sign-out", form={}, max_redirects=0, fail_on_status_code=False
    )
    assert refused.status == 403
    forged = clerk.page.request.post(
        f"{clerk.base_url}/sign-out",
        form={"csrf_token": "not-the-token"},
        max_redirects=0,
        fail_on_status_code=False,
    )
    assert forged.status == 403
    clerk.open("/")
    assert clerk.has("#sign-out"), "the refused sign-out signed the clerk out"
    # In the page itself: the token removed from the form, the refusal shown.
    clerk.page.evaluate(
        "document.querySelectorAll('input[name=csrf_token]').forEach(e => e.remove())"
    )
    clerk.press("sign-out")
    assert clerk.alert() or clerk.text("main")
    clerk.open("/")
    assert clerk.has("#sign-out")


def test_expired_session_is_refused_and_the_operator_signs_in_again(
    brief_sessions: str, desk_federation: DeskFederation, open_desk: OpenDesk
) -> None:
    clerk = open_desk(brief_sessions)
    clerk.sign_in("clerk", desk_federation.password(brief_sessions, "clerk"))
    clerk.open("/lists/due")
    assert clerk.has("#sign-out")
    time.sleep(IDLE_S + 1.5)  # idle past the office's limit: the one thing to wait for here
    clerk.open("/lists/due")
    assert clerk.path.startswith("/sign-in")
    assert clerk.text("main"), "no word on why the clerk must sign in again"
    assert not clerk.has("#sign-out")
    clerk.sign_in("clerk", desk_federation.password(brief_sessions, "clerk"))
    assert clerk.has("#sign-out")


def test_disabled_operator_is_refused_at_once_and_cannot_sign_in(
    desk_federation: DeskFederation, open_desk: OpenDesk
) -> None:
    operator_id, user_name, password = desk_federation.add_operator(
        LANZHOU.node_id, "counter", "clerk"
    )
    clerk = open_desk(LANZHOU.node_id)
    clerk.sign_in(user_name, password)
    clerk.open("/lists/due")
    assert clerk.has("#sign-out")

    admin = open_desk(LANZHOU.node_id)
    admin.sign_in("admin", desk_federation.password(LANZHOU.node_id, "admin"))
    admin.open("/admin/operators")
    assert user_name in admin.text("main")
    manage = f"/admin/operators/{operator_id}/password"
    with admin.page.expect_navigation():
        admin.page.click(f"a[href='{manage}']")
    admin.checked()
    admin.press("disable")
    assert not admin.alert()

    # The clerk's open session ends with the next page they ask for.
    clerk.open("/lists/due")
    assert not clerk.has("#sign-out")
    assert clerk.alert() or clerk.text("main")
    clerk.try_sign_in(user_name, password)
    assert clerk.path.startswith("/sign-in")
    assert clerk.alert()
    assert not clerk.has("#sign-out")


def test_five_wrong_passwords_lock_the_account_even_for_the_right_one(
    desk_federation: DeskFederation, open_desk: OpenDesk
) -> None:
    _operator_id, user_name, password = desk_federation.add_operator(
        LANZHOU.node_id, "locked", "clerk"
    )
    guesser = open_desk(LANZHOU.node_id)
    guesser.try_sign_in("nobody-here", "not-the-password")
    unknown_user = guesser.alert()
    assert unknown_user
    for attempt in range(5):
        guesser.try_sign_in(user_name, f"wrong-password-{attempt}")
        assert guesser.path.startswith("/sign-in")
        # The same words as for an unknown user: no hint that the account exists.
        assert guesser.alert() == unknown_user
    guesser.try_sign_in(user_name, password)
    assert guesser.path.startswith("/sign-in")
    locked = guesser.alert()
    assert locked
    assert locked != unknown_user
    assert not guesser.has("#sign-out")
