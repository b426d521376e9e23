"""The desk's four languages: gettext catalogs (locale/<name>/LC_MESSAGES/messages.po), compiled
in memory when the desk starts, so the text shown is always the text in the .po files.

Message ids are English. `LOCALES` are the names the node stores as an operator's preference;
`BABEL_LOCALES` the Babel locales that format their dates and money.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_date, format_datetime, format_timedelta
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_currency, format_decimal
from babel.support import Translations

LOCALE_DIR = Path(__file__).parent / "locale"
LOCALES = ("zh-Hans", "zh-Hant", "en", "pt")
DEFAULT_LOCALE = "zh-Hans"
# Each language's own name, as the language switch shows it.
LOCALE_NAMES = {"zh-Hans": "简体中文", "zh-Hant": "繁體中文", "en": "English", "pt": "Português"}
BABEL_LOCALES = {"zh-Hans": "zh_Hans_CN", "zh-Hant": "zh_Hant_HK", "en": "en_GB", "pt": "pt_MO"}
# The catalog directory of each locale (gettext names).
CATALOG_NAMES = {"zh-Hans": "zh_Hans", "zh-Hant": "zh_Hant", "en": "en", "pt": "pt"}
# Dates are shown where the offices are.
OFFICE_ZONE = ZoneInfo("Asia/Shanghai")


def catalog_path(locale: str) -> Path:
    return LOCALE_DIR / CATALOG_NAMES[locale] / "LC_MESSAGES" / "messages.po"


@cache
def translations(locale: str) -> Translations:
    """The locale's catalog, compiled from its .po file."""
    with catalog_path(locale).open("rb") as source:
        catalog = read_po(source, locale=BABEL_LOCALES[locale])
    compiled = io.BytesIO()
    write_mo(compiled, catalog, use_fuzzy=False)
    compiled.seek(0)
    return Translations(fp=compiled)


def supported(locale: str) -> str | None:
    return locale if locale in LOCALES else None


def negotiate(accept_language: str) -> str:
    """The desk locale closest to an Accept-Language header; the default when none fits."""
    wanted: list[tuple[float, int, str]] = []
    for position, part in enumerate(accept_language.split(",")):
        tag, _sep, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        if tag:
            wanted.append((-quality, position, tag.strip().lower()))
    for _quality, _position, tag in sorted(wanted):
        if tag.startswith("zh"):
            traditional = ("hant", "-tw", "-hk", "-mo")
            return "zh-Hant" if any(mark in tag for mark in traditional) else "zh-Hans"
        if tag.startswith("en"):
            return "en"
        if tag.startswith("pt"):
            return "pt"
    return DEFAULT_LOCALE


@dataclass(frozen=True)
class Formats:
    """Dates, times and money as the operator's locale writes them."""

    locale: str

    @property
    def _babel(self) -> Locale:
        return Locale.parse(BABEL_LOCALES[self.locale])

    def day(self, moment: datetime | date | None) -> str:
        if moment is None:
            return "—"
        if isinstance(moment, datetime):
            moment = moment.astimezone(OFFICE_ZONE).date()
        return format_date(moment, format="medium", locale=self._babel)

    def moment(self, moment: datetime | None) -> str:
        if moment is None:
            return "—"
        return format_datetime(moment.astimezone(OFFICE_ZONE), format="medium", locale=self._babel)

    def duration(self, seconds: int) -> str:
        """A length of time, roughly ("3 hours"), as the locale says it."""
        return format_timedelta(timedelta(seconds=seconds), locale=self._babel)

    def count(self, value: int) -> str:
        """A whole number grouped as the locale groups digits (1,234,567)."""
        return format_decimal(value, format="#,##0", locale=self._babel)

    def money(self, fen: int) -> str:
        """An amount in fen as yuan with two decimals."""
        return format_currency(Decimal(fen).scaleb(-2), "CNY", locale=self._babel)

    def change(self, percent: float | None) -> str:
        """A relative change with its sign and one decimal ("+3.0%"); a dash when there is
        none to compute (from an amount of 0)."""
        if percent is None:
            return "—"
        return format_decimal(percent / 100, format="+#,##0.0%;-#,##0.0%", locale=self._babel)

    def score(self, value: float) -> str:
        """A face-recognition score (0 to 100), with a decimal only when it has one."""
        return format_decimal(value, format="#,##0.#", locale=self._babel)
