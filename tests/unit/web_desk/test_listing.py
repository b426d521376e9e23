"""Finding one record in a list the node pages: the first match, across pages, and never more
than `MAX_SCAN_PAGES` calls however long the list."""

from __future__ import annotations

from collections.abc import Sequence

from adapters.web_desk.i18n import Formats
from adapters.web_desk.listing import MAX_SCAN_PAGES, SCAN_PAGE_SIZE, find_in
from adapters.web_desk.state import environment, short_ref


class EndlessList:
    """A list of consecutive numbers, `size` per page, that never ends; counts the calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, size: int, token: str) -> tuple[Sequence[int], str]:
        self.calls += 1
        start = int(token or "0")
        return list(range(start, start + size)), str(start + size)


def test_a_record_on_a_later_page_is_found() -> None:
    pages = EndlessList()
    wanted = SCAN_PAGE_SIZE * 3 + 7
    assert find_in(pages, lambda row: row == wanted) == wanted
    assert pages.calls == 4


def test_the_scan_stops_at_the_end_of_the_list() -> None:
    def two_pages(size: int, token: str) -> tuple[Sequence[str], str]:
        return (["a", "b"], "next") if not token else (["c"], "")

    assert find_in(two_pages, lambda row: row == "c") == "c"
    assert find_in(two_pages, lambda row: row == "z") is None


def test_the_scan_of_an_endless_list_is_bounded() -> None:
    pages = EndlessList()
    assert find_in(pages, lambda row: row < 0) is None
    assert pages.calls == MAX_SCAN_PAGES


def test_scores_show_a_decimal_only_when_they_have_one() -> None:
    assert Formats("en").score(62.0) == "62"
    assert Formats("en").score(93.5) == "93.5"
    assert Formats("pt").score(93.5) == "93,5"


def test_a_change_shows_its_sign_and_one_decimal_in_each_language() -> None:
    assert Formats("en").change(3.0) == "+3.0%"
    assert Formats("en").change(-12.345) == "-12.3%"
    assert Formats("pt").change(3.0) == "+3,0%"
    # From an amount of 0 there is no percentage to show.
    assert Formats("zh-Hans").change(None) == "—"


def test_a_list_shows_the_end_of_a_reference_that_differs_between_rows() -> None:
    # Two UUIDv7s made in the same second share their first characters, not their last.
    made_together = ["01a24886-cb78-77f0-b19b-5bf57c41f89f", "01a24886-cbae-77d5-ba37-9f6f22490dca"]
    assert [short_ref(ref) for ref in made_together] == ["…5bf57c41f89f", "…9f6f22490dca"]
    template = environment("en").from_string("{{ r | short_ref }}")
    assert template.render(r=made_together[0]) == "…5bf57c41f89f"
    assert short_ref("op-1") == "op-1"
