"""The embeds in a real Chromium: the iframe fits its form, a signup leaves only its answer,
the settings page runs and copies each embed, and the demo article of ``make run`` signs up.

Each host page is on another origin than the app (``publisher_site``), as a publisher's is.
Screenshots go to test-artifacts/embeds/ at a phone's and a desktop's width.
"""

import threading

import pytest
import sqlalchemy as sa

from newsletters import db, demo, editors
from newsletters.embed.snippets import FRAME_HEIGHT, KINDS, snippets
from newsletters.models import Newsletter, Subscriber, Subscription

from .checkers import Findings, require_tools

pytestmark = [
    pytest.mark.browser,
    # One database is enough to drive a browser; the server side runs on both elsewhere.
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]

PASSWORD = "correct horse battery"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}

HOST_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>An article</title></head>
<body>
  <h1>An article</h1>
  <section id="framed">{iframe}</section>
  <p id="after">The article goes on under the frame.</p>
  <section id="widget">{widget}</section>
  <section id="asked">{asked}</section>
</body>
</html>
"""


@pytest.fixture
def shots(artifacts):
    folder = artifacts / "embeds"
    folder.mkdir(exist_ok=True)

    def shoot(page, name, part=None):
        """Save the page (or ``part``): the viewport grown to it, so its iframes are painted."""
        size = page.viewport_size
        height = page.evaluate("document.documentElement.scrollHeight")
        page.set_viewport_size({"width": size["width"], "height": max(height, size["height"])})
        path = str(folder / f"{name}-{size['width']}.png")
        (part or page).screenshot(path=path)
        page.set_viewport_size(size)

    return shoot


@pytest.fixture
def publisher(app, session, live_server, publisher_site):
    """Two articles of another origin: the snippets as given, and the iframe's without script."""
    root, site = publisher_site
    app.config["BASE_URL"] = live_server
    session.add_all(
        [
            Newsletter(slug="briefing", name="Morning Briefing", allowed_origins=site),
            Newsletter(slug="weekly", name="The Weekly", accent_color="#8a1538"),
        ]
    )
    session.commit()
    with app.app_context():
        rows = {n.slug: n for n in db.session().scalars(sa.select(Newsletter))}
        framed, widget = snippets(rows["briefing"]), snippets(rows["weekly"])
    # The host asks for its own colour: a light one, so the button's text turns dark.
    asked = widget["widget"].replace("<script ", '<script data-accent="#ffd500" ')
    script = framed["iframe"].splitlines()[-1]
    assert "resize.js" in script
    (root / "with.html").write_text(
        HOST_PAGE.format(iframe=framed["iframe"], widget=widget["widget"], asked=asked)
    )
    without = framed["iframe"].replace(script, "")
    (root / "without.html").write_text(HOST_PAGE.format(iframe=without, widget="", asked=""))
    return site


def frame_of(page, selector="#framed iframe"):
    return page.locator(selector).element_handle().content_frame()


def content_height(frame) -> float:
    return frame.evaluate("document.documentElement.getBoundingClientRect().height")


def height_of(page, selector="#framed iframe") -> float:
    return page.locator(selector).evaluate("e => e.getBoundingClientRect().height")


def fits(page, frame, selector="#framed iframe"):
    """Wait until the iframe is as tall as its page; return that height."""
    wanted = content_height(frame)
    page.wait_for_function(
        "([e, h]) => Math.abs(e.getBoundingClientRect().height - h) < 1",
        arg=[page.locator(selector).element_handle(), wanted],
    )
    return wanted


def test_the_iframe_follows_its_content_with_the_script(browser, publisher, shots):
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    page.goto(f"{publisher}/with.html")
    frame = frame_of(page)
    frame.wait_for_selector("input[type=email]")
    form = fits(page, frame)
    assert 60 <= form <= FRAME_HEIGHT

    frame.fill("input[type=email]", "not an address")
    with page.expect_event("framenavigated"):
        frame.click("button[type=submit]")
    frame = frame_of(page)
    frame.wait_for_selector("text=Please, enter correct email address")
    error = fits(page, frame)
    assert error > form + 20  # the message and its detail are shown whole, not cut

    frame.fill("input[type=email]", "framed.reader@example.com")
    with page.expect_event("framenavigated"):
        frame.click("button[type=submit]")
    frame = frame_of(page)
    frame.wait_for_selector("text=Successfully subscribed")
    success = fits(page, frame)
    assert success < error
    # Only the answer: no field, no button, no note.
    assert frame.locator("input, button, .note").count() == 0
    assert "indicates required" not in frame.inner_text("body")
    shots(page, "iframe-with-resize-after-signup")

    # On a small phone the answer wraps onto one more line, and the frame grows with it.
    page.set_viewport_size({"width": 320, "height": 700})
    page.wait_for_function(
        "([e, h]) => e.getBoundingClientRect().height > h + 10",
        arg=[page.locator("#framed iframe").element_handle(), success],
    )
    fits(page, frame)
    page.set_viewport_size(PHONE)
    fits(page, frame)
    shots(page, "iframe-with-resize-after-signup")
    context.close()


def test_without_the_script_the_iframe_keeps_the_forms_own_height(browser, publisher, shots):
    for viewport in (PHONE, DESKTOP):
        context = browser.new_context(viewport=viewport)
        page = context.new_page()
        page.goto(f"{publisher}/without.html")
        frame = frame_of(page)
        frame.wait_for_selector("input[type=email]")
        assert height_of(page) == FRAME_HEIGHT
        # The form fills the frame: no empty space under it worth the name.
        assert 0 <= FRAME_HEIGHT - content_height(frame) <= 8
        shots(page, "iframe-without-resize")
        if viewport is DESKTOP:
            frame.fill("input[type=email]", "plain.frame.reader@example.com")
            with page.expect_event("framenavigated"):
                frame.click("button[type=submit]")
            frame = frame_of(page)
            frame.wait_for_selector("text=Successfully subscribed")
            # At a desktop's width the answer fits the default height too.
            assert content_height(frame) <= FRAME_HEIGHT
            assert height_of(page) == FRAME_HEIGHT
            shots(page, "iframe-without-resize-after-signup")
        context.close()


def test_the_widget_wears_the_accent_and_after_a_signup_shows_only_its_answer(
    browser, publisher, session, shots
):
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    page.goto(f"{publisher}/with.html")
    widget = page.locator("#widget .nl-widget")
    button = widget.get_by_role("button", name="Subscribe")
    colours = "b => [getComputedStyle(b).backgroundColor, getComputedStyle(b).color]"
    assert button.evaluate(colours) == ["rgb(138, 21, 56)", "rgb(255, 255, 255)"]
    # data-accent: the host's own colour, with the text that reads on it.
    asked = page.locator("#asked .nl-widget__button")
    assert asked.evaluate(colours) == ["rgb(255, 213, 0)", "rgb(29, 29, 31)"]
    shots(page, "widgets-before-signup")

    widget.get_by_label("Email (required)").fill("widget.reader@example.com")
    button.click()
    widget.get_by_text("Successfully subscribed").wait_for()
    message = widget.locator(".nl-widget__message")
    assert message.inner_text().splitlines() == [
        "Successfully subscribed",
        "Thank you for signing up for this newsletter. We've sent you a confirmation email.",
    ]
    # Everything else of the form is gone, the note included.
    assert widget.locator("input:visible, button:visible, .nl-widget__note:visible").count() == 0
    assert not widget.get_by_text("* indicates required").is_visible()
    assert message.evaluate("m => document.activeElement === m")
    shots(page, "widget-after-signup")
    context.close()
    assert session.scalar(sa.select(sa.func.count()).select_from(Subscription)) == 1


@pytest.fixture
def editor(app, session, live_server):
    app.config["BASE_URL"] = live_server
    session.add(Newsletter(slug="briefing", name="Morning Briefing", accent_color="#8a1538"))
    session.commit()
    with app.app_context():
        editors.create(db.session(), "ed@example.com", PASSWORD, is_admin=True)
        db.session().commit()
        shown = snippets(db.session().scalar(sa.select(Newsletter)))
    return live_server, shown


def test_the_settings_page_runs_each_embed_and_copies_its_exact_snippet(browser, editor, shots):
    server, shown = editor
    for viewport in (DESKTOP, PHONE):
        context = browser.new_context(
            viewport=viewport, permissions=["clipboard-read", "clipboard-write"]
        )
        page = context.new_page()
        page.goto(f"{server}/admin/login")
        page.get_by_label("Email").fill("ed@example.com")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url("**/admin/")
        page.goto(f"{server}/admin/n/briefing/settings")

        previews = {kind: page.frame_locator(f"#embed-{kind} iframe") for kind in KINDS}
        for kind in KINDS:  # loaded lazily, as they come into view
            page.locator(f"#embed-{kind} iframe").scroll_into_view_if_needed()
        previews["form"].locator("form.signup-form input[type=email]").wait_for()
        framed = previews["iframe"].frame_locator("iframe.nl-frame")
        framed.get_by_role("button", name="Subscribe").wait_for()
        previews["widget"].locator(".nl-widget__button").wait_for()
        # Each preview is as tall as its embed (resize.js on this page, frame.js in it).
        for kind in KINDS:
            page.locator(f"#embed-{kind} iframe").scroll_into_view_if_needed()
            preview = frame_of(page, f"#embed-{kind} iframe")
            assert fits(page, preview, f"#embed-{kind} iframe") >= 60
        # The accent reaches the running iframe and widget.
        accent = "b => getComputedStyle(b).backgroundColor"
        assert framed.locator("button").evaluate(accent) == "rgb(138, 21, 56)"
        assert previews["widget"].locator(".nl-widget__button").evaluate(accent) == (
            "rgb(138, 21, 56)"
        )

        for kind in KINDS:
            box = page.locator(f"#embed-{kind}")
            box.get_by_role("button", name="Copy").click()
            box.get_by_role("status").get_by_text("Copied").wait_for()
            assert page.evaluate("navigator.clipboard.readText()") == shown[kind]
            # Shown whole, each line unbroken: the box scrolls sideways instead.
            code = box.locator("pre")
            assert code.evaluate("e => getComputedStyle(e).whiteSpace") == "pre"
            assert code.inner_text().rstrip("\n") == shown[kind]
        assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
        shots(page, "settings-page")
        shots(page, "settings-embeds", page.locator(".embeds"))
        context.close()


def test_the_demo_article_signs_readers_up_through_its_three_embeds(
    app, browser, live_server, session, shots
):
    app.config["BASE_URL"] = live_server
    server = demo.server(app, 0)
    with app.app_context():
        demo.add_newsletters(db.session(), server.server_port)
        db.session().commit()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    article = f"http://127.0.0.1:{server.server_port}/"
    try:
        for viewport in (PHONE, DESKTOP):
            context = browser.new_context(viewport=viewport)
            page = context.new_page()
            page.goto(article)
            page.get_by_text("A sample publisher's page").wait_for()
            page.locator(".box-iframe iframe").scroll_into_view_if_needed()
            frame_of(page, ".box-iframe iframe").wait_for_selector("input[type=email]")
            page.locator(".box-widget .nl-widget").wait_for()
            assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
            shots(page, "demo-article")
            context.close()

        context = browser.new_context(viewport=DESKTOP)
        page = context.new_page()
        page.goto(article)
        frame = frame_of(page, ".box-iframe iframe")
        frame.fill("input[type=email]", "iframe.reader@example.com")
        with page.expect_event("framenavigated"):
            frame.click("button[type=submit]")
        frame_of(page, ".box-iframe iframe").wait_for_selector("text=Successfully subscribed")
        fits(page, frame_of(page, ".box-iframe iframe"), ".box-iframe iframe")

        widget = page.locator(".box-widget .nl-widget")
        widget.get_by_label("Email (required)").fill("widget.reader@example.com")
        widget.get_by_role("button", name="Subscribe").click()
        widget.get_by_text("Successfully subscribed").wait_for()
        shots(page, "demo-article-after-signups")

        plain = page.locator(".box-form form.signup-form")
        plain.locator("input[type=email]").fill("plain.reader@example.com")
        plain.locator("button[type=submit]").click()
        page.wait_for_url(f"{live_server}/n/demo-uk/thanks**")
        context.close()
    finally:
        server.shutdown()
        thread.join()

    rows = session.execute(
        sa.select(Newsletter.slug, Subscriber.email, Subscription.source, Subscription.status)
        .join(Subscription.newsletter)
        .join(Subscription.subscriber)
    ).all()
    assert {(slug, email, source) for slug, email, source, _ in rows} == {
        ("demo", "iframe.reader@example.com", "iframe"),
        ("demo-explainer", "widget.reader@example.com", "widget"),
        ("demo-uk", "plain.reader@example.com", "plain"),
    }
    assert {status for *_, status in rows} == {"pending"}


def test_the_previews_and_the_demo_page_are_accessible_and_valid_html(
    app, browser, live_server, session, tmp_path
):
    """axe-core (WCAG 2.2 AA) and the Nu Html Checker over the pages this part adds."""
    require_tools()
    app.config["BASE_URL"] = live_server
    server = demo.server(app, 0)
    with app.app_context():
        demo.add_newsletters(db.session(), server.server_port)
        db.session().commit()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    findings = Findings(folder=tmp_path)
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    try:
        for kind in KINDS:
            label = f"the {kind} preview"
            response = page.goto(f"{live_server}/n/demo-explainer/embed/preview/{kind}")
            shown = page.frame_locator("iframe") if kind == "iframe" else page
            shown.locator("form").first.wait_for()
            findings.keep_html(label, response.text())
            findings.language(page, label)
            findings.axe(page, label)
        response = page.goto(f"http://127.0.0.1:{server.server_port}/")
        page.locator(".box-widget .nl-widget").wait_for()
        for selector in (".box-iframe iframe", ".box-widget", ".box-form"):
            page.locator(selector).scroll_into_view_if_needed()
        frame_of(page, ".box-iframe iframe").wait_for_selector("input[type=email]")
        findings.keep_html("the demo article", response.text())
        findings.language(page, "the demo article")
        findings.axe(page, "the demo article at 1280 px")
        page.set_viewport_size(PHONE)
        findings.axe(page, "the demo article at 390 px")
    finally:
        context.close()
        server.shutdown()
        thread.join()
    assert findings.problems == []
    assert findings.html_errors() == []
