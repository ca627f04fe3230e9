"""Every mail to a reader is in the reader's language: queued with it, built in it, over SMTP.

The checks read the language each mail was queued with (its payload) and the one it was built
in (the ``lang`` of its HTML part, which the templates take from the language the worker
forced), whatever the real catalogue holds; one test serves a catalogue of its own to see the
words change.
"""

import re

import pytest
import sqlalchemy as sa
from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo

from newsletters import db, i18n, tokens
from newsletters.models import LinkRequest, OutboxKind, OutboxMessage, TokenPurpose
from newsletters.subscriptions import links
from tests.mail.test_welcome_and_reminder import (
    CONFIRM_LINK,
    READER,
    confirm,
    confirm_link,
    deliver,
    hours_pass,
    set_newsletter,
    subscription_of,
    text_of,
)

HTML_LANG = re.compile(r'<html lang="([^"]*)">')


def html_lang(mail) -> str:
    [language] = HTML_LANG.findall(mail.get_body(("html",)).get_content())
    return language


def payload_of(session, kind: OutboxKind) -> dict:
    session.expire_all()
    [payload] = session.scalars(
        sa.select(OutboxMessage.payload).where(OutboxMessage.kind == kind)
    ).all()
    return payload


def sign_up_in_ukrainian(client) -> None:
    response = client.post("/n/briefing/subscribe", data={"email": READER, "lang": "uk"})
    assert response.status_code == 303


def test_the_welcome_mail_is_in_the_language_the_reader_signed_up_in(
    app, client, newsletter, smtp_server, session
):
    set_newsletter(session, welcome_enabled=True)
    sign_up_in_ukrainian(client)
    assert subscription_of(session).language == "uk"
    deliver(app, smtp_server)
    confirm(client, confirm_link(smtp_server))
    assert deliver(app, smtp_server) == {"sent": 1}

    payload = payload_of(session, OutboxKind.WELCOME)
    assert payload["language"] == "uk"
    # The receipt keeps its English labels; the template translates them.
    assert "Newsletter" in payload["receipt"]
    welcome = smtp_server.messages[1]
    assert html_lang(welcome) == "uk"
    # The receipt's labels in Ukrainian: the English one is not in the mail.
    assert ": Morning Briefing" in text_of(welcome)
    assert "Newsletter:" not in text_of(welcome)


@pytest.fixture
def ukrainian_words(settings, tmp_path):
    """Serve a Ukrainian catalogue of a few of the mails' texts, in place of the real one."""
    catalog = Catalog(locale="uk")
    catalog.add("Hello,", "Вітаю,")
    catalog.add("Newsletter", "Розсилка")  # a receipt's label, stored in English
    catalog.add("Welcome to %(names)s", "Ласкаво просимо до %(names)s")
    folder = tmp_path / "translations" / "uk" / "LC_MESSAGES"
    folder.mkdir(parents=True)
    with (folder / "messages.mo").open("wb") as mo:
        write_mo(mo, catalog)
    settings["BABEL_TRANSLATION_DIRECTORIES"] = str(tmp_path / "translations")
    # Flask-Babel keeps the catalogues it loaded on the one (module-level) Babel's domain, for
    # every app of the process: loaded again from here, and forgotten after.
    cache = i18n.babel.domain_instance.cache
    cache.clear()
    yield
    cache.clear()


def test_the_welcome_mail_speaks_the_readers_catalogue(
    ukrainian_words, app, client, newsletter, smtp_server, session
):
    set_newsletter(session, welcome_enabled=True)
    sign_up_in_ukrainian(client)
    client.post("/n/briefing/subscribe", data={"email": "other@example.com"})
    deliver(app, smtp_server)
    [mail] = [m for m in smtp_server.messages if m["To"] == READER]
    [link] = CONFIRM_LINK.findall(text_of(mail))
    confirm(client, link)
    deliver(app, smtp_server)

    [welcome] = [m for m in smtp_server.messages if m["Subject"].startswith("Ласкаво")]
    assert welcome["Subject"] == "Ласкаво просимо до Morning Briefing"
    text = text_of(welcome)
    assert text.startswith("Вітаю,") and "Розсилка: Morning Briefing" in text
    assert ">Розсилка</td>" in welcome.get_body(("html",)).get_content()
    # The other reader signed up in English: their confirmation is in English.
    [other] = [m for m in smtp_server.messages if m["To"] == "other@example.com"]
    assert text_of(other).startswith("Hello,")


def test_the_reminder_is_in_the_language_the_reader_signed_up_in(
    app, client, newsletter, smtp_server, session
):
    set_newsletter(session, reminder_hours=24)
    sign_up_in_ukrainian(client)
    deliver(app, smtp_server)
    hours_pass(session, 25)
    assert deliver(app, smtp_server) == {"sent": 1}

    assert payload_of(session, OutboxKind.REMINDER)["language"] == "uk"
    assert html_lang(smtp_server.messages[0]) == "uk"  # the confirmation
    assert html_lang(smtp_server.messages[1]) == "uk"


@pytest.mark.parametrize("processing", ["inline", "worker"])
def test_a_preference_link_is_in_the_language_of_the_page_it_was_asked_from(
    app, client, newsletter, smtp_server, session, processing
):
    app.config["SIGNUP_PROCESSING"] = processing
    sign_up_in_ukrainian(client)
    deliver(app, smtp_server)
    asked = client.post("/preferences", data={"email": READER}, headers={"Accept-Language": "uk"})
    assert asked.status_code == 200
    if processing == "worker":
        assert session.scalars(sa.select(LinkRequest.language)).all() == ["uk"]
    assert deliver(app, smtp_server) == {"sent": 1}

    assert payload_of(session, OutboxKind.PREFERENCES_LINK)["language"] == "uk"
    assert html_lang(smtp_server.messages[1]) == "uk"
    assert session.scalars(sa.select(LinkRequest)).all() == []


def test_a_data_link_is_in_the_language_of_the_preference_page(
    app, client, newsletter, smtp_server, session
):
    client.post("/n/briefing/subscribe", data={"email": READER})
    deliver(app, smtp_server)
    with app.app_context():
        secret = tokens.secret_for(subscription_of(session).unsubscribe_token)
    sent = client.post(f"/preferences/{secret}?lang=uk", data={"action": "send_data"})
    assert sent.status_code == 200
    assert '<html lang="uk">' in sent.get_data(as_text=True)
    assert deliver(app, smtp_server) == {"sent": 1}

    assert payload_of(session, OutboxKind.DATA_LINK)["language"] == "uk"
    assert html_lang(smtp_server.messages[0]) == "en"  # signed up in English
    assert html_lang(smtp_server.messages[1]) == "uk"


def test_a_link_queued_without_a_language_still_goes_out(
    app, client, newsletter, smtp_server, session
):
    client.post("/n/briefing/subscribe", data={"email": READER})
    deliver(app, smtp_server)
    with app.app_context():
        queued = links.queue(
            db.session(), [READER], TokenPurpose.PREFERENCES, OutboxKind.PREFERENCES_LINK
        )
        db.session().commit()
    assert queued == {READER}
    assert deliver(app, smtp_server) == {"sent": 1}

    assert "language" not in payload_of(session, OutboxKind.PREFERENCES_LINK)
    assert html_lang(smtp_server.messages[1]) == "en"
