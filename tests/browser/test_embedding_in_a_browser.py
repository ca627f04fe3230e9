"""A publisher's page on another origin, in a real Chromium: three widgets, a form, an iframe."""

import pytest
import sqlalchemy as sa

from newsletters.mail import worker
from newsletters.models import Newsletter, Status, Subscriber, Subscription

pytestmark = pytest.mark.browser

PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Publisher: an article</title>
  <style>
    body {{ font-family: Georgia, serif; max-width: 44rem; margin: 2rem auto; }}
    /* The host page restyles the widget: its rules beat the widget's defaults. */
    .nl-widget__button {{ background: rgb(138, 21, 56); }}
  </style>
</head>
<body>
  <h1>An article with signup boxes</h1>
  <p>Some reporting.</p>
  <section id="alpha"><h2>Alpha</h2><script src="{app}/n/alpha/embed.js"></script></section>
  <section id="beta"><h2>Beta</h2>
    <script src="{app}/n/beta/embed.js" data-name="true"></script></section>
  <section id="gamma"><h2>Gamma</h2><script src="{app}/n/gamma/embed.js"></script></section>
  <section id="plain">
    <h2>Delta</h2>
    <form method="post" action="{app}/n/delta/subscribe">
      <input type="email" name="email" placeholder="Enter your email to subscribe" required>
      <input type="hidden" name="return_url" value="{site}/thanks.html">
      <button type="submit">Subscribe</button>
    </form>
  </section>
  <section id="framed">
    <h2>Epsilon</h2>
    <iframe src="{app}/n/epsilon/embed" title="Epsilon signup" width="520" height="130"></iframe>
  </section>
</body>
</html>
"""


@pytest.fixture
def publisher(app, session, live_server, publisher_site, smtp_server):
    """Serve the publisher's page on its own origin; point the app's links at the live server."""
    root, site = publisher_site
    app.config["BASE_URL"] = live_server
    app.config["MAIL_URL"] = smtp_server.url
    for slug in ("alpha", "beta", "gamma", "delta", "epsilon"):
        session.add(Newsletter(slug=slug, name=slug.title()))
    session.commit()
    # Beta and Delta name the publisher explicitly: exact CORS origin, and a return URL.
    session.execute(
        sa.update(Newsletter)
        .where(Newsletter.slug.in_(["beta", "delta"]))
        .values(allowed_origins=site)
    )
    session.commit()
    (root / "article.html").write_text(PAGE.format(app=live_server, site=site))
    (root / "thanks.html").write_text("<!doctype html><title>Back</title><h1>Back home</h1>")
    return f"{site}/article.html"


def statuses(session):
    rows = session.execute(
        sa.select(Newsletter.slug, Subscriber.email, Subscription.status)
        .join(Subscription.newsletter)
        .join(Subscription.subscriber)
    )
    return {(slug, email): status for slug, email, status in rows}


def test_widgets_form_and_iframe_on_another_origin_sign_readers_up(
    app, page, publisher, session, smtp_server, artifacts
):
    page.goto(publisher)
    widgets = {slug: page.locator(f"#{slug} .nl-widget") for slug in ("alpha", "beta", "gamma")}
    for widget in widgets.values():
        assert widget.get_by_placeholder("Enter your email to subscribe").is_visible()
        assert widget.get_by_text("* indicates required").is_visible()

    # A bad address: the message shows in that widget only.
    alpha = widgets["alpha"]
    alpha.get_by_label("Email (required)").fill("not an address")
    alpha.get_by_role("button", name="Subscribe").click()
    alpha.get_by_text("Please, enter correct email address").wait_for()
    assert widgets["beta"].locator(".nl-widget__message").inner_text() == ""

    # A typo the browser-side check lets through is caught by the server's validation.
    # The widget clears the last message while a request is out, so waiting for an error
    # here waits for the server's answer, not for the browser-side one still on screen.
    alpha.get_by_label("Email (required)").fill("reader@example")
    with page.expect_response(lambda r: r.url.endswith("/n/alpha/subscribe")) as answer:
        alpha.get_by_role("button", name="Subscribe").click()
    assert answer.value.status == 400
    alpha.locator(".nl-widget__message--error").wait_for()
    alpha.locator("form:not([aria-busy])").wait_for()
    assert (
        "Please, enter correct email address" in alpha.locator(".nl-widget__message").inner_text()
    )

    # Keyboard only: type and press Enter.
    alpha.get_by_label("Email (required)").fill("alpha.reader@example.com")
    alpha.get_by_label("Email (required)").press("Enter")
    alpha.get_by_text("Successfully subscribed").wait_for()

    beta = widgets["beta"]
    beta.get_by_label("Email (required)").fill("beta.reader@example.com")
    beta.get_by_label("Name (optional)").fill("Bea")
    beta.get_by_role("button", name="Subscribe").click()
    beta.get_by_text("Successfully subscribed").wait_for()

    gamma = widgets["gamma"]
    gamma.get_by_label("Email (required)").fill("gamma.reader@example.com")
    gamma.get_by_role("button", name="Subscribe").click()
    gamma.get_by_text("We've sent you a confirmation email.").wait_for()

    frame = page.frame_locator("#framed iframe")
    frame.get_by_placeholder("Enter your email to subscribe").fill("nope")
    frame.get_by_role("button", name="Subscribe").click()
    frame.get_by_text("Please, enter correct email address").wait_for()
    frame.get_by_placeholder("Enter your email to subscribe").fill("frame.reader@example.com")
    frame.get_by_role("button", name="Subscribe").click()
    frame.get_by_text("Successfully subscribed").wait_for()

    # The host page's CSS wins over the widget's defaults.
    button = page.locator("#gamma .nl-widget__button")
    assert button.evaluate("b => getComputedStyle(b).backgroundColor") == "rgb(138, 21, 56)"
    # After a success, a widget shows its message alone: no field, button or note.
    assert not widgets["gamma"].get_by_role("button", name="Subscribe").is_visible()
    assert not widgets["gamma"].get_by_text("* indicates required").is_visible()
    page.screenshot(path=str(artifacts / "publisher-page-after-signups.png"), full_page=True)

    # The plain form posts across origins and, its origin being allowed, comes back home.
    page.locator("#plain input[type=email]").fill("plain.reader@example.com")
    page.locator("#plain button").click()
    page.get_by_text("Back home").wait_for()
    assert page.url.endswith("/thanks.html")

    expected = {
        ("alpha", "alpha.reader@example.com"),
        ("beta", "beta.reader@example.com"),
        ("gamma", "gamma.reader@example.com"),
        ("delta", "plain.reader@example.com"),
        ("epsilon", "frame.reader@example.com"),
    }
    assert set(statuses(session)) == expected
    assert set(statuses(session).values()) == {Status.PENDING}

    with app.app_context():
        assert worker.run(once=True)["sent"] == 5
    assert sorted(m["To"] for m in smtp_server.messages) == sorted(e for _, e in expected)


def test_plain_form_works_with_javascript_off(browser, publisher, session):
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    try:
        page.goto(publisher)
        assert page.locator(".nl-widget").count() == 0  # no JS, no widgets
        page.locator("#plain input[type=email]").fill("nojs.reader@example.com")
        page.locator("#plain button").click()
        page.get_by_text("Back home").wait_for()
    finally:
        context.close()
    assert ("delta", "nojs.reader@example.com") in statuses(session)


def test_one_widget_for_several_newsletters_sends_one_mail(
    app, page, publisher, publisher_site, live_server, session, smtp_server
):
    root, site = publisher_site
    (root / "several.html").write_text(
        "<!doctype html><title>Several</title><body>"
        f'<script src="{live_server}/n/alpha/embed.js" data-newsletters="alpha gamma"></script>'
    )
    page.goto(f"{site}/several.html")
    widget = page.locator(".nl-widget")
    assert widget.get_by_label("Alpha").is_checked()
    assert widget.get_by_label("Gamma").is_checked()
    widget.get_by_label("Email (required)").fill("both@example.com")
    widget.get_by_role("button", name="Subscribe").click()
    widget.get_by_text("Successfully subscribed").wait_for()
    assert {k for k in statuses(session) if k[1] == "both@example.com"} == {
        ("alpha", "both@example.com"),
        ("gamma", "both@example.com"),
    }
    with app.app_context():
        assert worker.run(once=True)["sent"] == 1
