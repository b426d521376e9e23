"""The web desk's pure rules: which language a browser gets, CSRF tokens bound to one session,
identity numbers checked with the words of the operator's language, money and dates."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from adapters.web_desk.i18n import Formats, negotiate
from adapters.web_desk.security import csrf_ok, csrf_token


@pytest.mark.parametrize(
    ("header", "locale"),
    [
        ("", "zh-Hans"),
        ("zh-CN,zh;q=0.9", "zh-Hans"),
        ("zh-HK,en;q=0.5", "zh-Hant"),
        ("zh-Hant-MO", "zh-Hant"),
        ("pt-PT,pt;q=0.9,en;q=0.8", "pt"),
        ("fr-FR,en;q=0.4", "en"),
        ("de-DE", "zh-Hans"),
        ("en;q=0.2,pt;q=0.9", "pt"),
    ],
)
def test_a_browser_gets_the_nearest_desk_language(header: str, locale: str) -> None:
    assert negotiate(header) == locale


def test_a_csrf_token_is_good_for_its_own_session_only() -> None:
    secret = b"k" * 32
    token = csrf_token(secret, "session-a")
    assert csrf_ok(secret, "session-a", token)
    assert not csrf_ok(secret, "session-b", token)
    assert not csrf_ok(b"j" * 32, "session-a", token)
    assert not csrf_ok(secret, "", csrf_token(secret, ""))
    assert not csrf_ok(secret, "session-a", "")


def test_money_is_yuan_with_two_decimals_in_each_locale() -> None:
    assert Formats("zh-Hans").money(312_345) == "¥3,123.45"
    assert Formats("en").money(5) == "CN¥0.05"
    assert "3123,45" in Formats("pt").money(312_345).replace("\xa0", "").replace(".", "")


def test_dates_are_shown_in_the_offices_time_zone() -> None:
    # 17:00 UTC is already the next day in Beijing.
    late = datetime(2026, 12, 31, 17, 0, tzinfo=UTC)
    assert Formats("zh-Hans").day(late) == "2027年1月1日"
    assert Formats("en").day(date(2026, 12, 31)) == "31 Dec 2026"
    assert Formats("en").day(None) == "—"
