"""One person at a web desk, in a real Chromium: the page they look at and what the tests check
on every page they open.

A `DeskPage` is one browser context (its own cookies: one person's session). It opens pages by
path, fills fields and presses buttons by the ids the desk gives them (every form field's id is
its name, every action button's id is its action), and on every page it lands on runs the
axe-core accessibility check once per page and language (serious or critical violations fail
the test). Every URL the browser requested, from any context, is recorded, so that a test can
show no identity number ever travelled in one. `screenshot` saves the page under the run's
`screenshots/` folder as `<name>-<locale>.png`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, BrowserContext, Page, Response

REPOSITORY = Path(__file__).resolve().parents[2]
AXE_SCRIPT = REPOSITORY / ".tools" / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# The desk's languages; the browser's own locale for each (its Accept-Language).
LOCALES = {"zh-Hans": "zh-CN", "zh-Hant": "zh-HK", "en": "en-GB", "pt": "pt-PT"}
SERIOUS = ("serious", "critical")
# Path segments that name one record (ids): replaced by {id} so each page is checked once.
_RECORD_ID = re.compile(r"/[0-9a-fA-F-]{16,}|/[0-9A-Za-z_-]{20,}")
_AXE_RUN = """async () => {
  const result = await axe.run(document, {resultTypes: ['violations']});
  return result.violations.map(v => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.slice(0, 3).map(n => n.target.join(' ')),
  }));
}"""


def page_kind(url: str) -> str:
    """A page's path with record ids replaced, e.g. /beneficiaries/{id}."""
    path = re.sub(r"^https?://[^/]+", "", url).split("?", 1)[0].split("#", 1)[0]
    return _RECORD_ID.sub("/{id}", path) or "/"


class AccessibilityAudit:
    """axe-core run on each page (by kind and language) once; what it found, page by page."""

    def __init__(self) -> None:
        if not AXE_SCRIPT.exists():
            raise RuntimeError(f"{AXE_SCRIPT} is missing: run `make browser-tools`")
        self._source = AXE_SCRIPT.read_text(encoding="utf-8")
        self.checked: set[tuple[str, str]] = set()

    def check(self, page: Page, locale: str) -> None:
        key = (page_kind(page.url), locale)
        if key in self.checked:
            return
        # Evaluated through the DevTools protocol, which the desk's Content Security Policy
        # (rightly) does not let a page's own <script> do.
        if not page.evaluate("typeof window.axe === 'object'"):
            page.evaluate(self._source)
        violations: list[dict[str, Any]] = page.evaluate(_AXE_RUN)
        serious = [v for v in violations if v["impact"] in SERIOUS]
        if serious:
            shown = page.evaluate("document.body ? document.body.innerText : ''")[:300]
            found = "; ".join(
                f"{v['impact']} {v['id']}: {v['help']} at {', '.join(v['nodes'])}" for v in serious
            )
            raise AssertionError(f"axe on {key[0]} ({locale}): {found} (page shows: {shown!r})")
        self.checked.add(key)


class DeskPage:
    def __init__(
        self,
        context: BrowserContext,
        base_url: str,
        locale: str,
        audit: AccessibilityAudit,
        screenshots: Path,
    ) -> None:
        self.context = context
        self.page = context.new_page()
        self.base_url = base_url
        self.locale = locale
        self._audit = audit
        self._screenshots = screenshots

    # Moving around.

    def open(self, path: str) -> Response:
        response = self.page.goto(self.base_url + path)
        assert response is not None, path
        if "text/html" in (response.header_value("content-type") or ""):
            self.checked()
        return response

    def checked(self) -> None:
        """The accessibility check of the page now shown (once per page kind and language)."""
        self.page.wait_for_load_state("load")
        self._audit.check(self.page, self.locale)

    def press(self, button_id: str) -> None:
        """Press a button (or follow a link) by id and wait for the page it leads to."""
        with self.page.expect_navigation():
            self.page.click(f"#{button_id}")
        self.checked()

    def fill(self, **fields: str) -> None:
        for name, value in fields.items():
            self.page.fill(f"#{name}", value)

    def choose(self, field: str, value: str) -> None:
        """Pick a value of a select, or check the radio button of that value."""
        element = self.page.locator(f"#{field}")
        if element.count() and element.evaluate("e => e.tagName") == "SELECT":
            element.select_option(value)
        else:
            self.page.check(f"input[name='{field}'][value='{value}']")

    @property
    def path(self) -> str:
        return re.sub(r"^https?://[^/]+", "", self.page.url)

    def text(self, selector: str) -> str:
        return self.page.locator(selector).first.inner_text().strip()

    def has(self, selector: str) -> bool:
        return self.page.locator(selector).count() > 0

    def alert(self) -> str:
        """The text of the page's error summary (or other alert), empty when there is none."""
        alerts = self.page.locator("[role=alert]")
        return alerts.first.inner_text().strip() if alerts.count() else ""

    def csrf_token(self) -> str:
        token = self.page.locator("input[name=csrf_token]").first.get_attribute("value")
        assert token, f"no CSRF token on {self.path}"
        return token

    def submit_forged(self, action: str, fields: dict[str, str]) -> None:
        """Submit a form the page does not offer, as a person editing the page would."""
        with self.page.expect_navigation():
            self.page.evaluate(
                """([action, fields]) => {
                  const form = document.createElement('form');
                  form.method = 'post';
                  form.action = action;
                  for (const [name, value] of Object.entries(fields)) {
                    const input = document.createElement('input');
                    input.type = 'hidden'; input.name = name; input.value = value;
                    form.appendChild(input);
                  }
                  document.body.appendChild(form);
                  HTMLFormElement.prototype.submit.call(form);
                }""",
                [action, fields],
            )
        self.checked()

    # Who and which language.

    def sign_in(self, user_name: str, password: str) -> None:
        """Sign in, then make sure the desk speaks this page's language (an operator's stored
        choice, which another test may have changed, wins over the browser's)."""
        self.try_sign_in(user_name, password)
        assert not self.path.startswith("/sign-in"), (
            f"{user_name} could not sign in: {self.alert()}"
        )
        if self.page.get_attribute("html", "lang") != self.locale:
            self.set_language(self.locale)

    def try_sign_in(self, user_name: str, password: str) -> None:
        if not self.path.startswith("/sign-in"):
            self.open("/sign-in")
        self.fill(user_name=user_name, password=password)
        self.press("sign-in")

    def set_language(self, locale: str) -> None:
        """Change the language with the masthead's switcher (remembered for the operator)."""
        self.page.select_option("#locale", locale)
        self.locale = locale
        self.press("change-language")

    def screenshot(self, name: str) -> Path:
        path = self._screenshots / f"{name}-{self.locale}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


@contextmanager
def desk_page(
    browser: Browser,
    base_url: str,
    locale: str,
    audit: AccessibilityAudit,
    screenshots: Path,
    urls: list[str],
) -> Iterator[DeskPage]:
    """A new person (browser context) at the desk at `base_url`, reading `locale`."""
    context = browser.new_context(
        locale=LOCALES[locale], viewport={"width": 1280, "height": 900}, accept_downloads=True
    )
    context.on("request", lambda request: urls.append(request.url))
    try:
        yield DeskPage(context, base_url, locale, audit, screenshots)
    finally:
        context.close()


# The `open_desk` fixture: `open_desk(node_id, locale="zh-Hans")`, a new person at that desk.
OpenDesk = Callable[..., DeskPage]
