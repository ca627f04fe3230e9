"""Readers in a real Chromium: Ukrainian and English from widget to confirmed page, and typos.

The expected texts come from the app's own catalogue (``texts``), never written out here: the
Ukrainian is the translators' to change. A Ukrainian text equal to its English fails, so a
missing or stale catalogue shows here as well as in tests/test_translations.py.
"""

import re

import pytest
import sqlalchemy as sa
from flask_babel import force_locale, gettext

from newsletters.mail import worker
from newsletters.models import Newsletter, Status, Subscriber, Subscription

SLUG, NAME = "ranok", "Morning Letter"

# Once, not per database, as the other browser scenarios: what the reader sees does not depend
# on it, and the signup and the address checks are proven on both by their own tests.
pytestmark = [
    pytest.mark.browser,
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]

WIDGET_PAGE = """<!doctype html>
<html lang="uk">
<head><meta charset="utf-8"><title>Publisher: an article</title></head>
<body style="font-family: Georgia, serif; max-width: 44rem; margin: 2rem auto;">
  <h1>An article</h1>
  <p>Some reporting.</p>
  <script src="{app}/n/{slug}/embed.js" data-lang="uk"></script>
</body>
</html>
"""

# The iframe as the editors' snippet gives it (embed/snippets.py), size included.
FRAME_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Publisher: a framed form</title></head>
<body style="font-family: Georgia, serif; max-width: 44rem; margin: 2rem auto;">
  <h1>An article</h1>
  <iframe src="{app}/n/{slug}/embed" title="{name} signup" width="480" height="190"></iframe>
</body>
</html>
"""

# What a reader reads on the way, by the catalogue's English: (message, its variables).
MESSAGES = {
    "placeholder": ("Enter your email to subscribe", {}),
    "button": ("Subscribe", {}),
    "success_title": ("Successfully subscribed", {}),
    "success_text": (
        "Thank you for signing up for this newsletter. We've sent you a confirmation email.",
        {},
    ),
    "subject": ("Confirm your subscription to %(names)s", {"names": NAME}),
    "hello": ("Hello,", {}),
    "open_link": ("To confirm, open this link and press the button on the page:", {}),
    "confirm_title": ("Confirm your subscription", {}),
    "confirm_button": ("Confirm subscription", {}),
    "confirmed_title": ("Subscription confirmed", {}),
    "every_issue": ("Every issue carries a link to unsubscribe.", {}),
}


def texts(app, language: str) -> dict[str, str]:
    """Return ``MESSAGES`` in ``language``, by the app's catalogue; each one translated."""
    with app.app_context():
        with force_locale(language):
            found = {key: gettext(text, **values) for key, (text, values) in MESSAGES.items()}
        with force_locale("en"):
            english = {key: gettext(text, **values) for key, (text, values) in MESSAGES.items()}
    if language != "en":
        untranslated = [english[key] for key in MESSAGES if found[key] == english[key]]
        assert not untranslated, f"no {language} translation in the catalogue: {untranslated}"
    return found


@pytest.fixture
def publisher(app, session, live_server, publisher_site, smtp_server):
    """Serve a publisher's pages on another origin; the app's links point at the live server."""
    root, site = publisher_site
    app.config["BASE_URL"] = live_server
    app.config["MAIL_URL"] = smtp_server.url
    session.add(Newsletter(slug=SLUG, name=NAME))
    session.commit()
    (root / "article.html").write_text(WIDGET_PAGE.format(app=live_server, slug=SLUG))
    (root / "framed.html").write_text(FRAME_PAGE.format(app=live_server, slug=SLUG, name=NAME))
    return site


@pytest.fixture
def open_page(browser):
    """Return a function opening a page in a fresh browser context of the given locale."""
    contexts = []

    def open_in(locale: str):
        context = browser.new_context(locale=locale, viewport={"width": 1000, "height": 700})
        contexts.append(context)
        return context.new_page()

    yield open_in
    for context in contexts:
        context.close()


def subscriptions(session) -> dict[str, tuple]:
    """Return each subscribed address with its subscription's status, language and flags."""
    rows = session.execute(
        sa.select(
            Subscriber.email,
            Subscription.status,
            Subscription.language,
            Subscription.address_flags,
        ).join(Subscription.subscriber)
    )
    return {email: (status, language, flags) for email, status, language, flags in rows}


def sign_up_and_confirm(app, page, session, smtp_server, url, address, language, shots=None):
    """Sign ``address`` up with the widget on ``url``, then confirm from the mail: all in
    ``language``. With ``shots`` (a folder), screenshot the widget and the confirmation page."""
    said = texts(app, language)
    page.goto(url)
    widget = page.locator(".nl-widget")
    field = widget.locator("input[type=email]")
    button = widget.locator(".nl-widget__button")
    assert widget.get_attribute("lang") == language
    assert field.get_attribute("placeholder") == said["placeholder"]
    assert button.inner_text() == said["button"]
    if shots:
        page.screenshot(path=str(shots / f"widget-{language}.png"))

    field.fill(address)
    button.click()
    success = widget.locator(".nl-widget__message--success")
    success.wait_for()
    # The title on its line, the text under it (embed/widget.js).
    assert success.inner_text().splitlines() == [said["success_title"], said["success_text"]]
    # Only the success message stays.
    assert field.is_hidden() and button.is_hidden()
    assert widget.locator(".nl-widget__note").is_hidden()

    with app.app_context():
        assert worker.run(once=True)["sent"] == 1
    [mail] = [m for m in smtp_server.messages if m["To"] == address]
    assert mail["Subject"] == said["subject"]
    text = mail.get_body(("plain",)).get_content()
    html = mail.get_body(("html",)).get_content()
    assert said["hello"] in text and said["open_link"] in text
    assert f'<html lang="{language}">' in html and said["confirm_button"] in html
    site = app.config["BASE_URL"]
    [link] = re.findall(re.escape(f"{site}/confirm/") + r"[A-Za-z0-9_.-]{20,}", text)

    page.goto(link)
    assert page.locator("html").get_attribute("lang") == language
    assert page.locator("h1").inner_text() == said["confirm_title"]
    if shots:
        page.screenshot(path=str(shots / f"confirm-page-{language}.png"), full_page=True)
    page.get_by_role("button", name=said["confirm_button"], exact=True).click()
    page.get_by_role("heading", name=said["confirmed_title"], exact=True).wait_for()
    assert page.locator("html").get_attribute("lang") == language
    assert said["every_issue"] in page.locator(".note").inner_text()

    status, kept_language, _flags = subscriptions(session)[address]
    assert (status, kept_language) == (Status.CONFIRMED, language)


def test_a_ukrainian_reader_signs_up_and_confirms_in_ukrainian(
    app, open_page, publisher, session, smtp_server, artifacts
):
    page = open_page("uk-UA")
    url = f"{publisher}/article.html"
    sign_up_and_confirm(app, page, session, smtp_server, url, "olena@example.com", "uk", artifacts)


def test_an_english_browser_beats_the_embeds_ukrainian(
    app, open_page, publisher, session, smtp_server
):
    page = open_page("en-US")
    url = f"{publisher}/article.html"
    sign_up_and_confirm(app, page, session, smtp_server, url, "reader@example.com", "en")


def test_a_newsletter_that_pins_ukrainian_speaks_it_to_an_english_browser(
    app, open_page, publisher, session, smtp_server
):
    session.execute(
        sa.update(Newsletter)
        .where(Newsletter.slug == SLUG)
        .values(language="uk", pin_language=True)
    )
    session.commit()
    page = open_page("en-US")
    url = f"{publisher}/article.html"
    sign_up_and_confirm(app, page, session, smtp_server, url, "pinned@example.com", "uk")


def test_the_widget_offers_the_likely_address_and_keeps_the_typed_one_when_sent_again(
    open_page, publisher, session, artifacts
):
    page = open_page("en-US")
    page.goto(f"{publisher}/article.html")
    widget = page.locator(".nl-widget")
    field = widget.locator("input[type=email]")
    subscribe = widget.get_by_role("button", name="Subscribe", exact=True)

    field.fill("reader@gmial.com")
    subscribe.click()
    fix = widget.get_by_role("button", name="Use reader@gmail.com", exact=True)
    fix.wait_for()
    message = widget.locator(".nl-widget__message--error").inner_text()
    assert "Did you mean reader@gmail.com?" in message
    assert "Press Subscribe again to keep reader@gmial.com as you typed it." in message
    page.screenshot(path=str(artifacts / "widget-suggestion.png"))
    fix.click()
    success = widget.locator(".nl-widget__message--success")
    success.wait_for()
    assert success.inner_text().startswith("Successfully subscribed")
    page.screenshot(path=str(artifacts / "widget-after-success.png"))
    assert fix.is_hidden() and field.is_hidden()

    page.reload()
    field.fill("other@hotmial.com")
    subscribe.click()
    widget.get_by_role("button", name="Use other@hotmail.com", exact=True).wait_for()
    assert "Did you mean other@hotmail.com?" in widget.locator(".nl-widget__message").inner_text()
    subscribe.click()  # the address unchanged: kept as typed
    success.wait_for()
    assert widget.locator(".nl-widget__suggestion").is_hidden()

    found = subscriptions(session)
    assert set(found) == {"reader@gmail.com", "other@hotmial.com"}
    assert "typo" not in (found["reader@gmail.com"][2] or "").split()
    assert "typo" in (found["other@hotmial.com"][2] or "").split()


def test_the_hosted_page_and_the_iframe_offer_the_likely_address_and_keep_the_typed_one(
    open_page, publisher, live_server, session, artifacts
):
    page = open_page("en-US")
    hosted = f"{live_server}/n/{SLUG}"

    # The hosted page: one click on "Use …" signs the likely address up.
    page.goto(hosted)
    page.get_by_placeholder("Enter your email to subscribe").fill("hosted@gmial.com")
    page.get_by_role("button", name="Subscribe", exact=True).click()
    error = page.locator(".error[role=alert]")
    error.wait_for()
    assert "Did you mean hosted@gmail.com?" in error.inner_text()
    assert "Press Subscribe again to keep hosted@gmial.com as you typed it." in error.inner_text()
    page.screenshot(path=str(artifacts / "hosted-page-suggestion.png"), full_page=True)
    page.get_by_role("button", name="Use hosted@gmail.com", exact=True).click()
    page.wait_for_url(f"{hosted}/thanks")

    # Subscribe again, the address as typed: it is kept.
    page.goto(hosted)
    page.get_by_placeholder("Enter your email to subscribe").fill("hosted@hotmial.com")
    page.get_by_role("button", name="Subscribe", exact=True).click()
    page.get_by_role("button", name="Use hosted@hotmail.com", exact=True).wait_for()
    page.get_by_role("button", name="Subscribe", exact=True).click()
    page.wait_for_url(f"{hosted}/thanks")

    # The iframe on the publisher's page, the same two ways.
    page.goto(f"{publisher}/framed.html")
    frame = page.frame_locator("iframe")
    frame.get_by_placeholder("Enter your email to subscribe").fill("framed@gmial.com")
    frame.get_by_role("button", name="Subscribe", exact=True).click()
    frame.get_by_role("button", name="Use framed@gmail.com", exact=True).wait_for()
    assert "Did you mean framed@gmail.com?" in frame.locator(".error").inner_text()
    page.screenshot(path=str(artifacts / "iframe-suggestion.png"))
    frame.get_by_role("button", name="Use framed@gmail.com", exact=True).click()
    frame.get_by_text("Successfully subscribed").wait_for()

    page.reload()
    frame.get_by_placeholder("Enter your email to subscribe").fill("framed@hotmial.com")
    frame.get_by_role("button", name="Subscribe", exact=True).click()
    frame.get_by_role("button", name="Use framed@hotmail.com", exact=True).wait_for()
    frame.get_by_role("button", name="Subscribe", exact=True).click()
    frame.get_by_text("Successfully subscribed").wait_for()

    found = subscriptions(session)
    assert set(found) == {
        "hosted@gmail.com",
        "hosted@hotmial.com",
        "framed@gmail.com",
        "framed@hotmial.com",
    }
    for kept in ("hosted@gmail.com", "framed@gmail.com"):
        assert "typo" not in (found[kept][2] or "").split()
    for typed in ("hosted@hotmial.com", "framed@hotmial.com"):
        assert "typo" in (found[typed][2] or "").split()
