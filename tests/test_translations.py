"""The catalogues: every string of the product translated into Ukrainian, none stale.

The test extracts the strings as `pybabel extract -F babel.cfg` does (docs/translating.md)
and compares them with the Ukrainian catalogue, so a string added without its translation,
or a translation left for a string that is gone, fails here rather than reaching a reader.
"""

import re
from pathlib import Path

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po
from flask_babel import force_locale, gettext

from newsletters import i18n

ROOT = Path(__file__).resolve().parents[1]
# Babel's own (gettext, ngettext, pgettext …) and Flask-Babel's lazy ones, as `make translations`.
KEYWORDS = DEFAULT_KEYWORDS | {
    "_l": None,
    "lazy_gettext": None,
    "_lp": ((1, "c"), 2),
    "lazy_pgettext": ((1, "c"), 2),
}
CATALOGUE = i18n.TRANSLATIONS / "uk" / "LC_MESSAGES" / "messages.po"


def extracted() -> set[tuple[str, str | None]]:
    """Return every (msgid, context) of the source tree, as `pybabel extract` finds them."""
    with (ROOT / "babel.cfg").open() as config:
        method_map, options_map = parse_mapping_cfg(config)
    found = set()
    for _file, _line, message, _comments, context in extract_from_dir(
        ROOT, method_map, options_map, keywords=KEYWORDS
    ):
        found.add((message[0] if isinstance(message, tuple) else message, context))
    return found


@pytest.fixture(scope="module")
def ukrainian():
    with CATALOGUE.open("rb") as source:
        return read_po(source, locale="uk")


def translated(message) -> bool:
    """Tell whether a catalogue entry has every form translated, and is no fuzzy guess."""
    strings = message.string if isinstance(message.string, tuple) else (message.string,)
    return all(strings) and not message.fuzzy


def test_every_string_of_the_product_has_a_ukrainian_translation(ukrainian):
    missing = sorted(
        message
        for message, context in extracted()
        if (entry := ukrainian.get(message, context=context)) is None or not translated(entry)
    )
    assert not missing, f"{len(missing)} strings lack a Ukrainian translation: {missing[:20]}"


def test_the_ukrainian_catalogue_holds_no_string_the_product_no_longer_has(ukrainian):
    kept = {(m.id if isinstance(m.id, str) else m.id[0], m.context) for m in ukrainian if m.id}
    stale = sorted(message for message, _context in kept - extracted())
    assert not stale, f"translations of strings that are gone: {stale[:20]}"


def test_placeholders_are_kept_in_each_translation(ukrainian):
    placeholder = re.compile(r"%\((\w+)\)[sdr]")
    broken = []
    for message in ukrainian:
        if not message.id:
            continue
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        wanted = set(placeholder.findall(ids[-1]))
        if any(string and set(placeholder.findall(string)) != wanted for string in strings):
            broken.append(ids[0])
    assert not broken, f"translations that lose or add placeholders: {broken[:10]}"


def test_the_app_serves_the_compiled_ukrainian_catalogue(app):
    with app.app_context(), force_locale("uk"):
        assert gettext("Subscribe") == "Підписатися"
