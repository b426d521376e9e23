"""What the desk process keeps between requests: its settings, the one channel to the node, a
Jinja2 environment per language, and small bounded memories that spare the node repeated work
(page tokens of the lists, liaison form results, the directory's freshness for a few seconds).
Nothing here outlives the process, and nothing in it is needed for correctness: a forgotten
entry costs a few more calls.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

from jinja2 import Environment, FileSystemLoader, select_autoescape

from adapters.web_desk.freshness import FreshnessWatch
from adapters.web_desk.i18n import LOCALE_NAMES, LOCALES, translations
from adapters.web_desk.settings import WebDeskSettings
from federation.desk_client import DeskChannel

TEMPLATE_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"

K = TypeVar("K")
V = TypeVar("V")


class Memory(Generic[K, V]):
    """A thread-safe map that forgets its oldest entries beyond `capacity`."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self._capacity:
                self._entries.popitem(last=False)


def environment(locale: str) -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATE_DIR),
        autoescape=select_autoescape(["html"]),
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.install_gettext_translations(translations(locale), newstyle=True)  # type: ignore[attr-defined]
    env.filters["short_ref"] = short_ref
    return env


# Characters of a reference a list shows. Ids are UUIDv7s, whose first characters are the time
# they were made: rows made within a minute share them, so a list shows the random end.
SHORT_REF = 12


def short_ref(reference: str) -> str:
    """The end of a long reference, marked as cut, for a list's column (the link holds it all)."""
    return reference if len(reference) <= SHORT_REF else "…" + reference[-SHORT_REF:]


@dataclass
class DeskState:
    settings: WebDeskSettings
    channel: DeskChannel
    environments: dict[str, Environment] = field(
        default_factory=lambda: {locale: environment(locale) for locale in LOCALES}
    )
    # (session, list, filter) -> the page token of each page seen so far.
    page_tokens: Memory[tuple[str, str], list[str]] = field(default_factory=lambda: Memory(4096))
    # (session, batch id) -> a liaison form with its results, as uploaded and answered.
    form_batches: Memory[tuple[str, str], object] = field(default_factory=lambda: Memory(64))
    # The node's directory freshness, for the banner on every signed-in page.
    freshness: FreshnessWatch = field(default_factory=FreshnessWatch)

    @property
    def locale_names(self) -> dict[str, str]:
        return LOCALE_NAMES
