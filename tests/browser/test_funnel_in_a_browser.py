"""The signup funnel in a real Chromium, on a desktop screen and on a phone's.

For speed, the few hundred signups of the last 30 days (from a dozen pages, a few campaigns,
every form) and their form views and stopped signups are inserted directly, in bulk, as the
signup worker and counters.py would have written them; one more signup goes through the
hosted page in the browser, as a reader's Chrome (READER_USER_AGENT), so that the page also
shows what the real path counted. The screenshots land in test-artifacts/.
"""

import random
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from newsletters import db, editors
from newsletters.models import DailyCount, Newsletter, Status, Subscriber, Subscription

pytestmark = pytest.mark.browser

PASSWORD = "correct horse battery"
SIGNUPS = 400
LONG_PATH = "/2026/12/" + "a-very-long-headline-about-the-local-council-budget-" * 4 + "story.html"
# Pages and the forms on them, with how often each is viewed per signup.
PAGES = [
    ("https://news.example.org/", "widget", 40),
    (
        "https://news.example.org/politics/a-1?utm_campaign=budget&utm_source=newsletter",
        "iframe",
        25,
    ),
    (
        "https://news.example.org/sport/b-2?utm_campaign=cup&utm_source=x&utm_medium=social",
        "widget",
        60,
    ),
    ("https://news.example.org" + LONG_PATH, "iframe", 30),
    ("https://blog.example.com/why-we-write", "widget", 20),
    ("https://blog.example.com/archive?utm_campaign=autumn-drive", "iframe", 50),
    ("https://partner.example.net/newsletters", "plain", 0),
    ("https://news.example.org/weather", "widget", 80),
    ("https://news.example.org/culture/c-3", "iframe", 45),
    ("https://news.example.org/opinion/d-4", "widget", 35),
    ("https://news.example.org/science/e-5", "widget", 55),
    ("https://news.example.org/money/f-6", "iframe", 40),
    ("https://news.example.org/travel/g-7", "widget", 70),
]
PHONE = {"width": 390, "height": 844}
DEFENCES = ("honeypot", "automation", "too_fast", "forged", "proof", "replay")


def campaign(page: str) -> dict:
    from newsletters.attribution import campaign as read

    found = read(page)
    return {"utm_campaign": found.campaign, "utm_source": found.source, "utm_medium": found.medium}


@pytest.fixture
def funnel_data(app, session, live_server):
    """Insert 400 signups of the last 30 days, their views and stops; add an editor."""
    app.config["BASE_URL"] = live_server
    session.add(Newsletter(slug="briefing", name="Morning Briefing"))
    session.commit()
    briefing = session.scalar(sa.select(Newsletter.id).where(Newsletter.slug == "briefing"))
    draw = random.Random(2026)
    now = datetime.now(UTC)
    subscriber_ids = session.scalars(
        sa.insert(Subscriber).returning(Subscriber.id),
        [{"email": f"reader{n}@example.com"} for n in range(SIGNUPS)],
    ).all()
    rows, views = [], {}
    for n, subscriber_id in enumerate(subscriber_ids):
        if n % 10 == 9:
            page, form = None, "api"
        else:
            page, form, per_signup = PAGES[min(int(draw.expovariate(0.3)), len(PAGES) - 1)]
            if form != "plain":
                day = (now - timedelta(days=draw.randrange(30))).date()
                views[(day, form, page)] = views.get((day, form, page), 0) + per_signup
        optin = now - timedelta(days=draw.randrange(30), minutes=draw.randrange(1440))
        accepted = draw.random() < 0.93
        confirmed = accepted and draw.random() < 0.7
        took = timedelta(minutes=draw.lognormvariate(3, 1.5))
        rows.append(
            {
                "newsletter_id": briefing,
                "subscriber_id": subscriber_id,
                "status": Status.CONFIRMED if confirmed else Status.PENDING,
                "source": form,
                "page": page,
                **campaign(page or ""),
                "optin_at": optin,
                "confirmation_mailed_at": optin,
                "mail_accepted_at": optin + timedelta(seconds=3) if accepted else None,
                "confirmed_at": min(optin + took, now) if confirmed else None,
            }
        )
    session.execute(sa.insert(Subscription), rows)
    counts = [
        {
            "day": day,
            "newsletter_id": briefing,
            "metric": "view",
            "form": form,
            "page": page,
            "count": n,
        }
        for (day, form, page), n in views.items()
    ]
    for days_ago in range(0, 30, 2):
        for defence in draw.sample(DEFENCES, 3):
            counts.append(
                {
                    "day": (now - timedelta(days=days_ago)).date(),
                    "newsletter_id": briefing,
                    "metric": f"stopped:{defence}",
                    "form": "widget",
                    "page": "",
                    "count": draw.randrange(1, 40),
                }
            )
    session.execute(sa.insert(DailyCount), counts)
    session.commit()
    with app.app_context():
        newsletter = db.session().get(Newsletter, briefing)
        editors.create(db.session(), "editor@example.com", PASSWORD, newsletters=[newsletter])
        db.session().commit()
    return live_server


def sign_up_in_the_browser(page, server):
    """Sign up on the hosted page as a reader's Chrome does, proof of work and all."""
    page.goto(f"{server}/n/briefing")
    field = page.locator("form.signup-form input[name=altcha]")
    page.wait_for_function("f => f.value !== ''", arg=field.element_handle(), timeout=15_000)
    page.get_by_placeholder("Enter your email to subscribe").fill("browser.reader@example.com")
    page.get_by_role("button", name="Subscribe", exact=True).click()
    page.wait_for_url(f"{server}/n/briefing/thanks")


def log_in(page, server):
    page.goto(f"{server}/admin/login")
    page.get_by_label("Email").fill("editor@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("heading", name="Newsletters").wait_for()


def test_an_editor_reads_the_funnel_on_a_desktop_and_on_a_phone(
    browser, funnel_data, session, artifacts
):
    server = funnel_data
    desktop = browser.new_context(viewport={"width": 1280, "height": 900})
    page = desktop.new_page()
    sign_up_in_the_browser(page, server)
    stored = session.scalar(
        sa.select(Subscription.source)
        .join(Subscriber)
        .where(Subscriber.email == "browser.reader@example.com")
    )
    assert stored == "hosted"

    log_in(page, server)
    page.goto(f"{server}/admin/n/briefing/")
    page.get_by_role("link", name="Signup funnel").click()
    page.get_by_role("heading", name="Signup funnel").wait_for()
    page.get_by_role("link", name="30 days").wait_for()
    forms = page.get_by_role("region", name="By form").locator("tbody tr").all_inner_texts()
    # The browser's signup on the hosted page, with the view its page counted.
    assert any(row.startswith("hosted page\t1\t1\t") for row in forms), forms
    assert len(page.get_by_role("region", name="Top pages").locator("tbody tr").all()) == 12
    page.screenshot(path=str(artifacts / "funnel-desktop.png"), full_page=True)
    page.locator(".funnel-forms").screenshot(path=str(artifacts / "funnel-desktop-by-form.png"))

    page.get_by_role("link", name="365 days").click()
    page.wait_for_url("**days=365")
    page.get_by_role("button", name="Українська").click()
    page.get_by_role("heading", name="Воронка підписок").wait_for()
    page.screenshot(path=str(artifacts / "funnel-desktop-uk.png"), full_page=True)
    state = desktop.storage_state()
    desktop.close()

    phone = browser.new_context(
        viewport=PHONE,
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
        storage_state=state,
    )
    page = phone.new_page()
    for language, name, pages in (
        ("en", "English", "Top pages"),
        ("uk", "Українська", "Провідні сторінки"),
    ):
        page.goto(f"{server}/admin/n/briefing/funnel?days=30")
        page.get_by_role("button", name=name).click()
        page.get_by_role("region", name=pages).wait_for()
        widths = page.evaluate(
            "({scroll: document.documentElement.scrollWidth, inner: window.innerWidth})"
        )
        # A phone's browser widens its layout (innerWidth) to a page wider than the screen
        # and zooms out: innerWidth must still be the screen's.
        assert widths["scroll"] <= widths["inner"] == PHONE["width"], widths
        chart = page.locator(".funnel-chart svg").bounding_box()
        assert chart["x"] >= 0 and chart["x"] + chart["width"] <= PHONE["width"]
        # A table wider than the phone scrolls inside its own box.
        overflow = page.get_by_role("region", name=pages).evaluate(
            "box => [box.scrollWidth, box.clientWidth]"
        )
        assert overflow[0] > overflow[1]
        page.screenshot(path=str(artifacts / f"funnel-phone-{language}.png"), full_page=True)
        page.screenshot(path=str(artifacts / f"funnel-phone-{language}-top.png"))
        for n, card in enumerate(page.locator("section.card").all()):
            card.screenshot(path=str(artifacts / f"funnel-phone-{language}-card-{n}.png"))
    phone.close()
