"""A reader's language: chosen per request, kept with the subscription, spoken in every mail.

Expected Ukrainian texts are read from the app's own catalogue (``in_ukrainian``), and each is
checked to differ from the English, so a missing translation fails here too.
"""

import json
import re

import pytest
import sqlalchemy as sa
from flask_babel import force_locale, gettext

from newsletters.mail import worker
from newsletters.models import Newsletter, Subscriber, Subscription
from tests.conftest import set_texts

UKRAINIAN = {"Accept-Language": "uk-UA,uk;q=0.9,en;q=0.5"}
ENGLISH = {"Accept-Language": "en-US,en;q=0.9"}


def in_ukrainian(app, text: str, **variables) -> str:
    """Return the catalogue's Ukrainian for ``text``; fail if there is none."""
    with app.app_context(), force_locale("uk"):
        translated = gettext(text, **variables)
    assert translated != text % variables if variables else translated != text
    return translated


def html_lang(page: str) -> str:
    return re.search(r'<html lang="([^"]+)"', page).group(1)


def set_newsletter(session, **values) -> None:
    session.execute(sa.update(Newsletter).values(**values))
    session.commit()


def deliver(app, smtp_server) -> None:
    app.config["MAIL_URL"] = smtp_server.url
    with app.app_context():
        worker.run(once=True, report=lambda line: None)


def test_an_english_newsletter_speaks_ukrainian_to_a_browser_that_asks_for_it(
    app, client, newsletter
):
    page = client.get("/n/briefing", headers=UKRAINIAN).get_data(as_text=True)
    assert html_lang(page) == "uk"
    assert in_ukrainian(app, "Enter your email to subscribe") in page
    assert f">{in_ukrainian(app, 'Subscribe')}</button>" in page
    english = client.get("/n/briefing", headers=ENGLISH).get_data(as_text=True)
    assert html_lang(english) == "en"
    assert 'placeholder="Enter your email to subscribe"' in english


def test_the_newsletters_language_serves_a_browser_whose_first_language_is_neither(
    app, client, newsletter, session
):
    set_newsletter(session, language="uk")
    # Russian first, English second: the page stays in the newsletter's Ukrainian.
    page = client.get("/n/briefing", headers={"Accept-Language": "ru,en;q=0.8"})
    assert html_lang(page.get_data(as_text=True)) == "uk"
    assert html_lang(client.get("/n/briefing").get_data(as_text=True)) == "uk"


def test_the_embeds_language_is_overridden_by_the_browsers_unless_the_newsletter_pins_it(
    client, newsletter, session
):
    assert html_lang(client.get("/n/briefing/embed?lang=uk").get_data(as_text=True)) == "uk"
    asked = client.get("/n/briefing/embed?lang=uk", headers=ENGLISH).get_data(as_text=True)
    assert html_lang(asked) == "en"
    set_newsletter(session, language="uk", pin_language=True)
    pinned = client.get("/n/briefing/embed", headers=ENGLISH).get_data(as_text=True)
    assert html_lang(pinned) == "uk"
    # Pinned against the browser, not against the embed's own choice.
    assert html_lang(client.get("/n/briefing?lang=en", headers=UKRAINIAN).get_data(True)) == "en"


def test_an_unknown_language_is_ignored_not_refused(client, newsletter):
    response = client.get("/n/briefing?lang=xx-%00", headers={"Accept-Language": "*;q=0.1"})
    assert response.status_code == 200
    assert html_lang(response.get_data(as_text=True)) == "en"


def test_a_refused_signup_answers_in_the_readers_language(app, client, newsletter):
    response = client.post("/n/briefing/subscribe", json={"email": "not an address", "lang": "uk"})
    assert response.status_code == 400
    assert response.json["message"] == in_ukrainian(app, "Please, enter correct email address")
    typo = client.post("/n/briefing/subscribe", json={"email": "a@gmial.com", "lang": "uk"})
    assert typo.json["message"] == in_ukrainian(
        app, "Did you mean %(suggestion)s?", suggestion="a@gmail.com"
    )
    assert typo.json["suggestion"] == "a@gmail.com"


def test_the_readers_language_is_kept_and_their_confirmation_mail_speaks_it(
    app, client, newsletter, session, smtp_server
):
    ok = client.post("/n/briefing/subscribe", data={"email": "olena@example.com", "lang": "uk"})
    assert ok.status_code == 303
    answer = client.post(
        "/n/briefing/subscribe", json={"email": "ann@example.com"}, headers=ENGLISH
    )
    assert answer.json["title"] == "Successfully subscribed"
    languages = dict(
        session.execute(sa.select(Subscriber.email, Subscription.language).join(Subscription)).all()
    )
    assert languages == {"olena@example.com": "uk", "ann@example.com": "en"}
    deliver(app, smtp_server)
    mails = {m["To"]: m for m in smtp_server.messages}
    ukrainian, english = mails["olena@example.com"], mails["ann@example.com"]
    assert ukrainian["Subject"] == in_ukrainian(
        app, "Confirm your subscription to %(names)s", names="Morning Briefing"
    )
    assert english["Subject"] == "Confirm your subscription to Morning Briefing"
    html = ukrainian.get_body(("html",)).get_content()
    assert html_lang(html) == "uk"
    assert html_lang(english.get_body(("html",)).get_content()) == "en"
    # The confirmation page the link opens speaks Ukrainian too, by the subscription's language.
    link = re.search(
        r"https://news\.example\.org(/confirm/\S+)", ukrainian.get_body(("plain",)).get_content()
    )
    page = client.get(link.group(1)).get_data(as_text=True)
    assert html_lang(page) == "uk"


def test_an_editors_text_in_one_language_and_the_fallbacks_of_the_other(
    app, client, newsletter, session
):
    set_texts(session, language="uk", button="Приєднатися")
    set_texts(session, language="en", placeholder="Your email, please")
    ukrainian = client.get("/n/briefing", headers=UKRAINIAN).get_data(as_text=True)
    assert ">Приєднатися</button>" in ukrainian
    # No Ukrainian placeholder: the newsletter's own language's text, never an empty one.
    assert 'placeholder="Your email, please"' in ukrainian
    english = client.get("/n/briefing", headers=ENGLISH).get_data(as_text=True)
    assert ">Subscribe</button>" in english
    assert 'placeholder="Your email, please"' in english


def test_the_widget_carries_every_language_and_the_embeds_choice(app, client, newsletter):
    script = client.get("/n/briefing/embed.js?lang=uk").get_data(as_text=True)
    assert '"asked": "uk"' in script
    assert json.dumps(in_ukrainian(app, "Subscribe")) in script  # escaped as \\uXXXX
    assert '"button": "Subscribe"' in script
    # The same script for every reader: what the browser asks for is decided by the widget.
    assert script == client.get("/n/briefing/embed.js?lang=uk", headers=UKRAINIAN).get_data(True)


def test_the_index_and_the_several_at_once_form_speak_the_browsers_language(
    app, client, newsletter, session
):
    session.add(Newsletter(slug="weekly", name="Weekly"))
    session.commit()
    page = client.get("/", headers=UKRAINIAN).get_data(as_text=True)
    assert html_lang(page) == "uk"
    assert in_ukrainian(app, "Choose your newsletters") in page
    refused = client.post("/subscribe", data={"email": "x@example.com"}, headers=UKRAINIAN)
    assert refused.status_code == 400
    assert in_ukrainian(app, "Choose at least one newsletter.") in refused.get_data(True)


@pytest.mark.parametrize("path", ["/admin/login", "/n/nothing-here", "/confirm/not-a-token"])
def test_error_and_admin_pages_speak_the_browsers_language(app, client, newsletter, path):
    page = client.get(path, headers=UKRAINIAN).get_data(as_text=True)
    assert html_lang(page) == "uk"
