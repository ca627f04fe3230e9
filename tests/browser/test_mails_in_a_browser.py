"""Every mail, as it arrives over SMTP, shown by Chromium at a phone's and a desktop's width.

No mail may be wider than the window, its button must be there and large enough to tap, and
its written-out link must wrap on a phone instead of widening the mail. Screenshots of each
mail at both widths, in English and Ukrainian (and one in dark mode), go to
test-artifacts/mails/.
"""

import pytest
import sqlalchemy as sa

from newsletters import db, editors
from newsletters.mail import messages, outbox, worker
from newsletters.models import Newsletter, OutboxKind

pytestmark = [
    pytest.mark.browser,
    # One run is enough: what is checked is the mails' HTML, not the database.
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]

WIDTHS = (390, 1280)
LANGUAGES = ("en", "uk")
LOGO_URL = "https://publisher.example/logo.svg"
# The publisher's logo, served by the test in place of the publisher's site: wider than the
# logo's width in the mail, which scales it down.
LOGO = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="360" height="90" viewBox="0 0 360 90">'
    '<rect width="360" height="90" rx="10" fill="#7a1038"/>'
    '<text x="24" y="60" font-family="sans-serif" font-size="44" fill="#fff">KYIV DAILY</text>'
    "</svg>"
)
# Each mail's layout measured in the page: its width, its button's box, its written-out link.
MEASURE = """() => {
    const button = document.querySelector('td[style*="background-color"] > a');
    const link = document.querySelector('a.raw-link');
    const box = (el) => el && el.getBoundingClientRect().toJSON();
    return {
        width: document.documentElement.scrollWidth,
        button: box(button),
        link: box(link),
        linkLines: link ? link.getClientRects().length : 0,
        logo: document.querySelector('img') && document.querySelector('img').naturalWidth,
        card: getComputedStyle(document.querySelector('.card')).backgroundColor,
    };
}"""


@pytest.fixture
def mails(app, session, smtp_server):
    """Send a test of every mail in each language over SMTP; return them by (kind, language)."""
    session.add(
        Newsletter(
            slug="daily",
            name="Kyiv Daily: morning news and the week's long reads",
            accent_color="#c2185b",
            logo_url=LOGO_URL,
            site_url="https://www.kyiv-daily.example/",
        )
    )
    session.commit()
    app.config["MAIL_URL"] = smtp_server.url
    with app.app_context():
        newsletter_id = db.session().scalars(sa.select(Newsletter.id)).one()
        for kind in messages.SAMPLES:
            for language in LANGUAGES:
                outbox.enqueue(
                    db.session(),
                    OutboxKind.SAMPLE,
                    f"{kind}.{language}@example.com",
                    {"of": str(kind), "newsletter_ids": [newsletter_id], "language": language},
                )
        db.session().commit()
        assert worker.run(once=True) == {"sent": len(messages.SAMPLES) * len(LANGUAGES)}
    return {
        tuple(str(m["To"]).split("@")[0].split(".")): m.get_body(("html",)).get_content()
        for m in smtp_server.messages
    }


def test_every_mail_fits_a_phone_and_a_desktop_in_english_and_ukrainian(browser, mails, artifacts):
    folder = artifacts / "mails"
    folder.mkdir(exist_ok=True)
    context = browser.new_context(viewport={"width": WIDTHS[0], "height": 844})
    context.route(LOGO_URL, lambda route: route.fulfill(body=LOGO, content_type="image/svg+xml"))
    page = context.new_page()
    problems = []
    try:
        for (kind, language), html in sorted(mails.items()):
            for width in WIDTHS:
                page.set_viewport_size({"width": width, "height": 844 if width < 600 else 900})
                page.set_content(html, wait_until="load")
                found = page.evaluate(MEASURE)
                name = f"{kind} ({language}) at {width} px"
                page.screenshot(path=str(folder / f"{kind}-{language}-{width}.png"), full_page=True)
                if found["width"] > width:
                    problems.append(f"{name}: {found['width']} px wide")
                # The editors' own mail (a webhook paused) has the product's look, no logo.
                if found["logo"] != (None if kind == OutboxKind.WEBHOOK_PAUSED else 360):
                    problems.append(f"{name}: the logo did not load")
                button = found["button"]
                if button is None or button["height"] < 24 or button["right"] > width:
                    problems.append(f"{name}: the button is missing, too small or cut: {button}")
                elif not page.locator('td[style*="background-color"] > a').is_visible():
                    problems.append(f"{name}: the button is not visible")
                if kind == OutboxKind.WELCOME:  # its button leads to the site: no secret link
                    continue
                link = found["link"]
                if link is None or link["right"] > width:
                    problems.append(f"{name}: the written-out link is missing or cut: {link}")
                elif width < 600 and found["linkLines"] < 2:
                    problems.append(f"{name}: the written-out link does not wrap")
        # Dark mode: the card turns dark, and the screenshot shows what still reads.
        page.emulate_media(color_scheme="dark")
        page.set_viewport_size({"width": WIDTHS[0], "height": 844})
        page.set_content(mails[("confirm", "uk")], wait_until="load")
        page.screenshot(path=str(folder / "confirm-uk-390-dark.png"), full_page=True)
        assert page.evaluate(MEASURE)["card"] == "rgb(31, 31, 31)"
    finally:
        context.close()
    assert not problems, "\n".join(problems)


PASSWORD = "correct horse battery"


def test_an_editor_previews_a_mail_and_sends_a_test_from_the_settings_page(
    app, session, browser, live_server, smtp_server, artifacts
):
    app.config["BASE_URL"] = live_server
    session.add(Newsletter(slug="daily", name="Kyiv Daily", accent_color="#c2185b"))
    session.commit()
    with app.app_context():
        daily = db.session().scalar(sa.select(Newsletter))
        editors.create(db.session(), "editor@example.com", PASSWORD, newsletters=[daily])
        db.session().commit()
    folder = artifacts / "mails"
    folder.mkdir(exist_ok=True)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    page = context.new_page()
    try:
        page.goto(f"{live_server}/admin/login")
        page.get_by_label("Email").fill("editor@example.com")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.goto(f"{live_server}/admin/n/daily/settings")
        page.locator("#mails").get_by_role("link", name="Reminder").click()
        page.wait_for_url("**/admin/n/daily/mails?kind=reminder**")
        for width, shown in ((1280, ("phone", "wide")), (390, ("phone",))):
            page.set_viewport_size({"width": width, "height": 900})
            for name in shown:
                # The mail's own inline styles apply under its frame's policy: its button
                # wears the accent, and it is no wider than its frame.
                frame = page.frame_locator(f".mail-frame.{name} iframe")
                button = frame.locator('td[style*="background-color"] > a')
                colour = button.evaluate("a => getComputedStyle(a).backgroundColor")
                assert colour == "rgb(194, 24, 91)"
                fits = "html => html.scrollWidth <= innerWidth"
                assert frame.locator("html").evaluate(fits), f"{name} frame at {width} px"
            assert page.evaluate("document.documentElement.scrollWidth") <= width
            page.screenshot(path=str(folder / f"admin-preview-{width}.png"), full_page=True)
        # The test goes from the settings page to the editor's own address, over SMTP.
        page.goto(f"{live_server}/admin/n/daily/settings")
        page.get_by_label("Send yourself a test of").select_option("welcome")
        page.locator("#mails").get_by_role("button").click()
        page.locator(".flash").wait_for()
        assert "editor@example.com" in page.locator(".flash").inner_text()
        page.set_viewport_size({"width": 390, "height": 844})
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.locator("#mails").screenshot(path=str(folder / "admin-settings-mails-390.png"))
    finally:
        context.close()
    app.config["MAIL_URL"] = smtp_server.url
    with app.app_context():
        assert worker.run(once=True) == {"sent": 1}
    [mail] = smtp_server.messages
    assert mail["To"] == "editor@example.com"
    assert mail["From"] == "Kyiv Daily <newsletters@localhost>"
    assert mail["Subject"] == "[Test] Welcome to Kyiv Daily"
