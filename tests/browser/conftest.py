"""Fixtures of the browser tests: a demo-like federation with a web desk per office, and Chromium.

``desk_federation`` (session scope)
    The registry and the demo's Lanzhou (paying office), Qingdao (residence agency and paying
    office) and Macau (partner liaison desk) offices as real processes, each with a real
    `certfed web serve` process on a loopback port. Every office has the launcher's operators
    (clerk, clerk2, reviewer, admin, and senior who is clerk and reviewer), each with a user
    name and password. One federation serves the whole run: tests that change an account
    (disable it, lock it) add an operator of their own first (`add_operator`).

``browser`` (session scope)
    Debian's /usr/bin/chromium, launched by Playwright (nothing downloaded).

``open_desk`` (function scope)
    `open_desk(node_id, locale="zh-Hans")` is a new person at that office's desk (a browser
    context of its own, its cookies, its session), closed at the end of the test. Every page it
    lands on gets the axe-core check; every URL it requests is recorded in ``request_urls``.
    At the end of the run, no identity number a test used may be in any of those URLs or in
    any log line of the federation's processes.

``screenshots`` (session scope)
    `<basetemp>/screenshots/`, where `DeskPage.screenshot(name)` saves `<name>-<locale>.png`.

Every test in this folder carries the ``browser`` marker (`pytest -m browser`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

from cli.demo import LANZHOU, MACAU, QINGDAO
from cli.launcher import LocalFederation
from tests.browser.desk_federation import DeskFederation, assert_no_identity_number_leaked
from tests.browser.desk_page import (
    CHROMIUM,
    CHROMIUM_ARGS,
    AccessibilityAudit,
    DeskPage,
    OpenDesk,
    desk_page,
)

OFFICES = (LANZHOU, QINGDAO, MACAU)
HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def desk_federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DeskFederation]:
    workdir = tmp_path_factory.mktemp("desk-federation")
    with LocalFederation(workdir, federation_id="certfed-browser", sign_in=True) as local:
        local.start_registry()
        for spec in OFFICES:
            local.add_node(spec)
        for spec in OFFICES:
            local.start_web_desk(spec.node_id)
        yield DeskFederation(local)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make browser-tools` (Debian package chromium)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.getbasetemp() / "screenshots"
    folder.mkdir(exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def accessibility() -> AccessibilityAudit:
    return AccessibilityAudit()


@pytest.fixture(scope="session")
def request_urls() -> list[str]:
    """Every URL any browser context of the run requested, in order."""
    return []


@pytest.fixture(scope="session", autouse=True)
def _no_identity_number_in_any_url_or_log(
    desk_federation: DeskFederation, request_urls: list[str]
) -> Iterator[None]:
    """After the whole run: no identity number a test used in any URL or any server log."""
    yield
    if request_urls:
        assert_no_identity_number_leaked(desk_federation, request_urls)


@pytest.fixture
def open_desk(
    browser: Browser,
    desk_federation: DeskFederation,
    accessibility: AccessibilityAudit,
    screenshots: Path,
    request_urls: list[str],
) -> Iterator[OpenDesk]:
    with ExitStack() as contexts:

        def open_one(node_id: str, locale: str = "zh-Hans") -> DeskPage:
            return contexts.enter_context(
                desk_page(
                    browser,
                    desk_federation.url(node_id),
                    locale,
                    accessibility,
                    screenshots,
                    request_urls,
                )
            )

        yield open_one
