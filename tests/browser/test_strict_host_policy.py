"""The widget and the iframe on a news site with a strict Content-Security-Policy, in Chromium.

The host page allows scripts, styles, frames and requests from itself and this product only,
and no inline style at all: what such a policy refuses must not be what hides the honeypot.
"""

import functools
import http.server
import threading
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from newsletters import db, editors
from newsletters.embed.snippets import snippets
from newsletters.models import Newsletter, Subscriber, Subscription

from .conftest import QuietHandler

pytestmark = pytest.mark.browser

PASSWORD = "correct horse battery"

# Each frame (the host page and the product's iframe) keeps every violation it sees.
RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__violations.push(e.violatedDirective + " " + (e.blockedURI || "inline"));
});
"""

PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>The Daily Strict: an article</title>
  <link rel="stylesheet" href="/site.css">
</head>
<body>
  <h1>An article on a site with a strict policy</h1>
  <p>Some reporting, then the newsletter boxes the editors pasted in.</p>
  <section id="widget"><h2>Widget</h2>
{widget}
  </section>
  <section id="framed"><h2>iframe</h2>
{iframe}
  </section>
</body>
</html>
"""


class StrictHandler(QuietHandler):
    """Serve files with the host's strict Content-Security-Policy on every answer."""

    policy = ""

    def end_headers(self):
        self.send_header("Content-Security-Policy", self.policy)
        super().end_headers()


@pytest.fixture
def strict_site(app, session, live_server, tmp_path):
    """Serve a host page with both snippets under a strict CSP; return its URL."""
    app.config["BASE_URL"] = live_server
    session.add(Newsletter(slug="daily", name="The Daily"))
    session.commit()
    with app.app_context():
        pasted = snippets(db.session().scalar(sa.select(Newsletter)))
    root = tmp_path / "strict"
    root.mkdir()
    (root / "article.html").write_text(PAGE.format(**pasted))
    (root / "site.css").write_text("body { font-family: Georgia, serif; max-width: 44rem; }")
    policy = (
        f"default-src 'self'; script-src 'self' {live_server}; connect-src {live_server}; "
        f"frame-src {live_server}; style-src 'self' {live_server}; worker-src blob:"
    )
    handler = functools.partial(
        type("Handler", (StrictHandler,), {"policy": policy}), directory=str(root)
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    # "localhost": another host than the product's 127.0.0.1, so another origin for sure.
    yield f"http://localhost:{server.server_port}/article.html"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def watched_page(browser):
    """Return a page that records CSP violations in every frame, and console errors."""
    context = browser.new_context(viewport={"width": 1000, "height": 900})
    context.add_init_script(RECORD_VIOLATIONS)
    page = context.new_page()
    page.console_errors = []

    def keep(message):
        # Chromium asks every origin for a favicon, which neither site has.
        if message.type == "error" and not message.location["url"].endswith("/favicon.ico"):
            page.console_errors.append(f"{message.text} ({message.location['url']})")

    page.on("console", keep)
    yield page
    context.close()


def violations(page) -> list[str]:
    """Return the CSP violations seen so far in any frame of ``page``."""
    found = []
    for frame in page.frames:
        found += frame.evaluate("window.__violations || []")
    return found


def focus_order(scope, start, presses=4) -> list[str]:
    """Press Tab from ``start``; return the name (or text) of each element that got focus."""
    start.focus()
    names = []
    for _ in range(presses):
        start.page.keyboard.press("Tab")
        names.append(
            scope.evaluate(
                "() => { const e = document.activeElement;"
                " return e.name || e.textContent.trim() || e.tagName; }"
            )
        )
    return names


def assert_out_of_sight(honeypot, label, order):
    assert not honeypot.is_visible()
    assert honeypot.get_attribute("tabindex") == "-1"
    assert honeypot.get_attribute("autocomplete") == "off"
    assert "website" not in order
    box = label.bounding_box()
    assert box is None or (box["width"] <= 1 and box["height"] <= 1)


def stored(session) -> set[tuple[str, str]]:
    rows = session.execute(
        sa.select(Newsletter.slug, Subscriber.email)
        .join(Subscription.newsletter)
        .join(Subscription.subscriber)
    )
    return {(slug, email) for slug, email in rows}


def test_widget_and_iframe_keep_their_looks_and_hide_the_honeypot_under_a_strict_host_policy(
    watched_page, strict_site, session, artifacts
):
    page = watched_page
    page.goto(strict_site)
    widget = page.locator("#widget .nl-widget")
    widget.wait_for()
    frame = page.frame_locator("#framed iframe")
    frame.get_by_role("button", name="Subscribe").wait_for()

    email = widget.get_by_label("Email (required)")
    assert_out_of_sight(
        widget.locator("input[name=website]"),
        widget.locator("label.nl-widget__label"),
        focus_order(page, email),
    )
    frame_email = frame.get_by_label("Email (required)")
    frame_body = frame.locator("body")
    assert_out_of_sight(
        frame.locator("input[name=website]"),
        frame.locator("label.visually-hidden"),
        focus_order(frame_body, frame_email),
    )

    # Styled by the product's stylesheet, which the host's style-src lets in.
    button = widget.get_by_role("button", name="Subscribe")
    page.wait_for_function(
        "() => getComputedStyle(document.querySelector('.nl-widget__button'))"
        ".backgroundColor === 'rgb(11, 87, 208)'",
        timeout=5000,
    )
    iframe = page.locator("#framed iframe")
    assert iframe.evaluate("f => getComputedStyle(f).borderTopWidth") == "0px"
    assert widget.locator(".nl-widget__required").inner_text() == "*"
    assert widget.locator(".nl-widget__required").is_visible()
    assert frame.locator(".required-mark").is_visible()

    page.screenshot(path=str(artifacts / "strict-host-policy-before.png"), full_page=True)
    email.fill("strict.widget@example.com")
    button.click()
    widget.get_by_text("Successfully subscribed").wait_for()
    frame_email.fill("strict.frame@example.com")
    frame.get_by_role("button", name="Subscribe").click()
    frame.get_by_text("Successfully subscribed").wait_for()
    page.screenshot(path=str(artifacts / "strict-host-policy-after.png"), full_page=True)

    assert violations(page) == []
    assert page.console_errors == []
    assert stored(session) == {
        ("daily", "strict.widget@example.com"),
        ("daily", "strict.frame@example.com"),
    }


def test_the_products_own_pages_break_no_rule_of_their_own_policy(
    app, watched_page, live_server, session, artifacts
):
    app.config["BASE_URL"] = live_server
    session.add_all([Newsletter(slug="daily", name="The Daily"), Newsletter(slug="w", name="W")])
    session.commit()
    with app.app_context():
        editors.create(db.session(), "boss@example.com", PASSWORD, is_admin=True)
        db.session().commit()
    page = watched_page
    seen = []
    for path in ("/", "/n/daily", "/n/daily/embed", "/n/daily/thanks"):
        page.goto(live_server + path)
        name = path.strip("/").replace("/", "-") or "index"
        page.screenshot(path=str(artifacts / f"own-policy-{name}.png"), full_page=True)
        # Styled: the stylesheet came in under the page's own policy.
        assert page.evaluate("getComputedStyle(document.body).fontFamily").startswith("system-ui")
        if path != "/n/daily/thanks":
            assert page.locator(".required-mark").first.is_visible()
            assert not page.locator("input[name=website]").first.is_visible()
        seen += violations(page)

    page.goto(f"{live_server}/admin/login")
    page.get_by_label("Email").fill("boss@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("heading", name="Newsletters").wait_for()
    seen += violations(page)
    # A signup, so that the dashboard draws its chart.
    daily = session.scalar(sa.select(Newsletter).where(Newsletter.slug == "daily"))
    session.add(
        Subscription(
            newsletter=daily,
            subscriber=Subscriber(email="charted@example.com"),
            status="pending",
            optin_at=datetime.now(UTC),
        )
    )
    session.commit()
    page.get_by_role("link", name="The Daily").click()
    page.locator("figure.chart svg").first.wait_for()
    chart = page.locator("figure.chart svg").first.bounding_box()
    card = page.locator("figure.chart").first.bounding_box()
    assert 300 < chart["width"] <= card["width"]  # the chart fills its card, and no more
    seen += violations(page)
    page.get_by_role("link", name="Settings & embedding").click()
    page.get_by_role("heading", name="Embed this form").wait_for()
    seen += violations(page)
    assert seen == []
    assert page.console_errors == []
