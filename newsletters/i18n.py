"""Languages: which one a page, an answer or a mail is in, and the catalogues that say it.

The product speaks English and Ukrainian (``LANGUAGES``); Flask-Babel translates, with the
catalogues in ``newsletters/translations`` (``messages.po``, compiled to ``messages.mo`` by the
build, and by ``compile_stale`` in a source tree whose catalogue changed since).

A reader's language, from weakest to strongest (SPEC: ``lang``):

1. the newsletter's default language (``Newsletter.language``);
2. the embed's choice: ``?lang=`` on the hosted page and the iframe, ``data-lang`` on the
   widget's script tag (which asks ``embed.js?lang=``), ``lang`` in a signup's body;
3. the reader's browser: the first language of ``Accept-Language``, when it is one of ours,
   unless the newsletter pins its language (``Newsletter.pin_language``).

Only the browser's first choice counts: a reader whose browser asks for Russian, then
English, reads a Ukrainian page in Ukrainian rather than in their second choice. The editors'
area follows the editor's browser, or the language chosen in its menu (kept in the session).
"""

from contextlib import suppress
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from flask import Flask, g, has_request_context, request, session
from flask_babel import Babel, force_locale, get_locale, gettext, refresh
from werkzeug.exceptions import BadRequest, HTTPException

from .models import DEFAULT_TEXTS

LANGUAGES = ("en", "uk")
LANGUAGE_NAMES = {"en": "English", "uk": "Українська"}
DEFAULT_LANGUAGE = "en"
TRANSLATIONS = Path(__file__).parent / "translations"

babel = Babel()


def init_app(app: Flask) -> None:
    """Set up Flask-Babel with this module's choice of language, catalogues compiled."""
    compile_stale()
    babel.init_app(
        app,
        default_locale=DEFAULT_LANGUAGE,
        default_translation_directories=str(TRANSLATIONS),
        locale_selector=select_language,
    )
    app.jinja_env.globals["current_language"] = current_language
    app.jinja_env.globals["default_text"] = default_text
    app.jinja_env.globals["LANGUAGE_NAMES"] = LANGUAGE_NAMES


def supported(language: str | None) -> str | None:
    """Return ``language`` (``uk``, ``uk-UA``, ``UK``) as one of ``LANGUAGES``, else None."""
    if not language or not isinstance(language, str):
        return None
    primary = language.strip().replace("_", "-").split("-")[0].lower()
    return primary if primary in LANGUAGES else None


def browser_language() -> str | None:
    """Return the first language of the request's ``Accept-Language`` if it is one of ours."""
    for value, _quality in request.accept_languages:
        return supported(value)
    return None


def reader_language(newsletters, asked: str | None = None) -> str:
    """Return the language to speak to a reader of ``newsletters`` (see the module's text)."""
    first = newsletters[0] if newsletters else None
    language = supported(first.language if first else None) or DEFAULT_LANGUAGE
    language = supported(asked) or language
    pinned = first is not None and first.pin_language
    if not pinned and has_request_context():
        language = browser_language() or language
    return language


def select_language() -> str:
    """Return the current request's language: Flask-Babel's locale selector."""
    if not has_request_context():
        return DEFAULT_LANGUAGE
    if request.blueprint in ("admin", "api_docs"):
        return supported(session.get("language")) or browser_language() or DEFAULT_LANGUAGE
    newsletters = g.get("reader_newsletters") or g.get("signup_newsletters") or []
    return reader_language(newsletters, asked_language())


def asked_language() -> str | None:
    """Return the language the embed asked for: a signup body's ``lang``, or ``?lang=``."""
    asked = g.get("asked_language")
    if asked:
        return asked
    if request.method == "POST" and request.mimetype in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        # A body too large or malformed to read still gets its error page, in a language.
        with suppress(HTTPException):
            return request.form.get("lang") or request.args.get("lang")
    return request.args.get("lang")


def speak_to(subscriptions) -> None:
    """Speak to the reader of ``subscriptions`` (a link's page): in the language they chose.

    Their newsletters' language, then the one kept from their signup (or the page's own
    ``?lang=``, a choice made on it), then their browser's unless the newsletter pins its
    own: the rule of the forms, with the stored language in the place of the embed's.
    """
    subscriptions = list(subscriptions)
    if subscriptions:
        g.reader_newsletters = [s.newsletter for s in subscriptions]
        latest = max(subscriptions, key=lambda s: s.optin_at or s.created_at)
        choose_again(supported(request.args.get("lang")) or latest.language)


def choose_again(asked: str | None = None) -> None:
    """Forget the request's language once what it depends on is known (newsletter, body)."""
    if asked is not None:
        g.asked_language = asked
    refresh()


def current_language() -> str:
    """Return the language the current page or mail is being written in."""
    locale = get_locale()
    return (supported(str(locale)) if locale else None) or DEFAULT_LANGUAGE


def default_text(key: str) -> str:
    """Return SPEC's form text ``key`` in the current language (a form of no one newsletter)."""
    return gettext(DEFAULT_TEXTS[key])


def translate(text: str, language: str) -> str:
    """Return ``text`` (a catalogue's English) in ``language``, whatever the current one is."""
    with force_locale(language):
        return gettext(text)


def compile_stale() -> None:
    """Compile each catalogue whose ``.po`` is newer than its ``.mo``, where one may write.

    The wheel's build compiles them (``hatch_build.py``); this covers a source tree whose
    catalogue was edited since, so ``make run`` and the tests never serve stale texts.
    """
    for po in TRANSLATIONS.glob("*/LC_MESSAGES/messages.po"):
        mo = po.with_suffix(".mo")
        if mo.exists() and mo.stat().st_mtime >= po.stat().st_mtime:
            continue
        # An installed package may be read-only: its build compiled what it serves.
        with suppress(OSError):
            compile_catalogue(po, mo)


def compile_catalogue(po: Path, mo: Path) -> None:
    """Write the compiled form of the catalogue ``po`` to ``mo``."""
    with po.open("rb") as source:
        catalogue = read_po(source)
    with mo.open("wb") as target:
        write_mo(target, catalogue)


def known_language(asked: str) -> str:
    """Return ``asked`` if it is one of ours; else a 400 that lists ours (an editor's choice)."""
    if asked not in LANGUAGES:
        raise BadRequest(
            gettext(
                "There is no language %(language)s here: choose one of %(choices)s.",
                language=repr(asked[:20]),
                choices=", ".join(LANGUAGES),
            )
        )
    return asked
