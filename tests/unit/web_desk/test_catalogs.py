"""Every word the web desk shows is translated: the message ids Babel extracts from the desk's
code and templates are each in every language's catalog, translated, with the same
placeholders; and no template holds words outside a translation call."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from adapters.web_desk.i18n import BABEL_LOCALES, LOCALES, catalog_path, translations

PACKAGE = Path(__file__).parents[3] / "adapters" / "web_desk"
PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def extracted_ids() -> set[str]:
    found: set[str] = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
        str(PACKAGE),
        method_map=[("**.py", "python"), ("templates/**.html", "jinja2.ext:babel_extract")],
        options_map={"templates/**.html": {"extensions": "jinja2.ext.i18n"}},
        keywords={"_": None, "N_": None, "gettext": None},
    ):
        found.add(message[0] if isinstance(message, tuple) else message)
    return found


def catalog(locale: str) -> Catalog:
    with catalog_path(locale).open("rb") as source:
        return read_po(source, locale=BABEL_LOCALES[locale])


def test_the_desk_has_messages_to_translate() -> None:
    ids = extracted_ids()
    assert len(ids) > 200
    assert "Sign in" in ids
    assert (
        "The check character does not match the other 17: re-read the number from the card." in ids
    )


@pytest.mark.parametrize("locale", LOCALES)
def test_every_message_is_translated_in_every_catalog(locale: str) -> None:
    messages = {message.id: message for message in catalog(locale) if message.id}
    missing = sorted(extracted_ids() - set(messages))
    assert not missing, f"{locale} lacks {missing[:5]}"
    for message_id in extracted_ids():
        message = messages[message_id]
        assert message.string, f"{locale}: {message_id!r} has no translation"
        assert not message.fuzzy, f"{locale}: {message_id!r} is marked fuzzy"
        assert set(PLACEHOLDER.findall(message.string)) == set(PLACEHOLDER.findall(message_id))


@pytest.mark.parametrize("locale", ["zh-Hans", "zh-Hant", "pt"])
def test_the_catalogs_are_in_their_own_language(locale: str) -> None:
    translated = translations(locale).gettext("Sign in")
    assert translated != "Sign in"
    assert translations(locale).gettext("Certification desk") != "Certification desk"


def _visible_text(template: str) -> str:
    text = re.sub(r"\{#.*?#\}|\{%.*?%\}|\{\{.*?\}\}", " ", template, flags=re.S)
    return re.sub(r"<[^>]*>", " ", text, flags=re.S)


@pytest.mark.parametrize("template", sorted((PACKAGE / "templates").glob("*.html")), ids=str)
def test_no_template_shows_words_outside_a_translation(template: Path) -> None:
    left = _visible_text(template.read_text(encoding="utf-8"))
    words = re.findall(r"[^\W\d_]{2,}", left)
    assert not words, f"{template.name} shows untranslated words: {words[:5]}"
