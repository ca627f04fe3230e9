"""Every page of the editors' area fits a phone (390 × 844) and a desktop (1280 × 900).

The pages are read from the admin blueprint's rules (every GET rule that answers HTML), so a
page added later is visited without anyone remembering to list it; a rule with an argument
this test has no sample value for fails the test and says which. The sample data is what
makes a page wide: hundreds of subscribers with long addresses and names, a webhook with a
long URL and failed deliveries, dead mails with long errors, an export, an API key, editors.
Screenshots land in test-artifacts/admin/<page>-<size>.png.
"""

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from newsletters import apikeys, db, editors
from newsletters.models import (
    ExportRecord,
    ImportJob,
    Newsletter,
    OutboxMessage,
    OutboxState,
    Status,
    Subscriber,
    Subscription,
    Webhook,
)

pytestmark = [
    pytest.mark.browser,
    # The pages' layout does not depend on the database: one run is enough.
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]

PASSWORD = "correct horse battery"
ADMIN = "the.editor-in-chief.of.the.morning.briefing.and.the.evening.digest@newsroom.example.org"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
SUBSCRIBERS = 400
LONG_URL = (
    "https://crm.partner-platform.example.net/api/v2/integrations/newsletters/webhooks/"
    "receive-subscription-change?account=4f9c2a7e-very-long-account-identifier&token=abcdef"
)
LONG_ERROR = (
    "550 5.1.1 <someone.with.a.very.long.address.indeed@mail.subdomain.example.com>: "
    "Recipient address rejected: User unknown in virtual mailbox table; "
    "see https://postmaster.example.com/errors/550-5.1.1/recipient-unknown-in-virtual-table"
)


@pytest.fixture
def admin_area(app, client, session, live_server):
    """Fill every admin page with data that makes it wide; return the ids the rules need."""
    app.config["BASE_URL"] = live_server
    session.add_all(
        [
            Newsletter(
                slug="briefing",
                name="The Morning Briefing: news, analysis and opinion from the city desk",
                description="Every weekday at six.",
            ),
            Newsletter(slug="digest", name="Evening Digest"),
        ]
    )
    session.commit()
    briefing = session.scalar(sa.select(Newsletter).where(Newsletter.slug == "briefing"))
    # One reader through the real form, so the subscriber's page has a consent ledger.
    long_address = (
        "anastasia.konstantinopolskaya-vanderbilt.subscriptions@very-long-domain-name.example.co.uk"
    )
    client.post(
        "/n/briefing/subscribe",
        data={"email": long_address, "name": "Anastasia Konstantinopolskaya-Vanderbilt"},
        headers={
            "User-Agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) "
            "AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
            "Referer": "https://news.example.org/2026/12/"
            + "a-very-long-headline-about-the-local-council-budget-" * 3
            + "story.html?utm_campaign=budget-autumn-drive",
        },
    )
    subscription_id = session.scalar(
        sa.select(Subscription.id).join(Subscriber).where(Subscriber.email == long_address)
    )
    assert subscription_id, "the signup through the form was not stored"

    now = datetime.now(UTC)
    subscriber_ids = session.scalars(
        sa.insert(Subscriber).returning(Subscriber.id),
        [
            {"email": f"reader.number.{n}.with-a-rather-long-address@subdomain{n % 7}.example.org"}
            for n in range(SUBSCRIBERS)
        ],
    ).all()
    rows = []
    for n, subscriber_id in enumerate(subscriber_ids):
        optin = now - timedelta(days=(n * 401) % 400, minutes=n)
        status = (Status.CONFIRMED, Status.PENDING, Status.UNSUBSCRIBED)[n % 3]
        rows.append(
            {
                "newsletter_id": briefing.id,
                "subscriber_id": subscriber_id,
                "status": status,
                "name": f"Maximilian-Alexander von Long-Name-{n} Jr.",
                "source": "widget",
                "optin_at": optin,
                "confirmed_at": optin + timedelta(hours=2) if status != Status.PENDING else None,
                "unsubscribed_at": now - timedelta(days=n % 20)
                if status == Status.UNSUBSCRIBED
                else None,
            }
        )
    session.execute(sa.insert(Subscription), rows)

    webhook = Webhook(
        newsletter_id=briefing.id,
        url=LONG_URL,
        secret="whsec_x",
        paused_at=now,
        paused_reason="10 failures in a row: " + LONG_ERROR,
    )
    session.add(webhook)
    session.flush()
    for n in range(5):
        session.add(
            OutboxMessage(
                kind="webhook",
                recipient=LONG_URL,
                payload={},
                message_id=f"delivery-{n}-{'x' * 40}@newsletters",
                state=OutboxState.FAILED,
                attempts=7,
                last_error=LONG_ERROR,
                webhook_id=webhook.id,
            )
        )
    for n, state in enumerate([OutboxState.DEAD, OutboxState.FAILED, OutboxState.PENDING]):
        session.add(
            OutboxMessage(
                kind="confirm",
                recipient=f"reader.number.{n}.with-a-rather-long-address@subdomain.example.org",
                payload={},
                message_id=f"mail-{n}",
                state=state,
                attempts=12,
                last_error=LONG_ERROR,
            )
        )
    session.commit()

    with app.app_context():
        s = db.session()
        newsletters = list(s.scalars(sa.select(Newsletter)))
        admin = editors.create(s, ADMIN, PASSWORD, is_admin=True, newsletters=newsletters)
        other = editors.create(
            s,
            "a.colleague.with.a.long.name@regional-office.newsroom.example.org",
            PASSWORD,
            newsletters=newsletters[:1],
        )
        key, _secret = apikeys.create(s, admin, "The CRM sync job on the partner platform")
        s.add(
            ExportRecord(
                newsletter_id=briefing.id,
                editor=admin,
                via="admin",
                status="confirmed",
                format="csv",
                rows=SUBSCRIBERS,
            )
        )
        job = ImportJob(
            newsletter_id=briefing.id,
            editor_id=admin.id,
            filename="the-whole-list-exported-from-the-old-tool-2026-12-05-final-v2.csv",
            state="running",
            lines=10_000,
            rows_done=4_000,
            refused=12,
            started_at=datetime.now(UTC),
        )
        s.add(job)
        s.commit()
        ids = {
            "slug": "briefing",
            "subscription_id": subscription_id,
            "webhook_id": webhook.id,
            "editor_id": other.id,
            "key_id": key.id,
            "job_id": job.id,
            # A mail's HTML part, as the settings page previews it.
            "kind": "confirm",
        }
    return live_server, ids


def admin_pages(app, ids) -> dict[str, str]:
    """Return every GET page of the admin blueprint, by endpoint, with sample arguments."""
    pages = {}
    with app.test_request_context():
        from flask import url_for

        for rule in app.url_map.iter_rules():
            if rule.endpoint.split(".")[0] != "admin" or "GET" not in rule.methods:
                continue
            missing = rule.arguments - ids.keys()
            assert not missing, (
                f"{rule.rule}: no sample value for {sorted(missing)}; add one to admin_area()"
            )
            pages[rule.endpoint] = url_for(rule.endpoint, **{a: ids[a] for a in rule.arguments})
    # The dashboard's other periods: 30 days per day, a year per week.
    pages["admin.dashboard-30"] = pages["admin.dashboard"] + "?days=30"
    pages["admin.dashboard-365"] = pages["admin.dashboard"] + "?days=365"
    return pages


def log_in(page, server):
    page.goto(f"{server}/admin/login")
    page.get_by_label("Email").fill(ADMIN)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("heading", name="Newsletters").wait_for()


def widths(page) -> dict:
    return page.evaluate(
        "({scroll: document.documentElement.scrollWidth, inner: window.innerWidth})"
    )


def test_every_admin_page_fits_a_phone_and_a_desktop(browser, app, admin_area, artifacts):
    server, ids = admin_area
    folder = artifacts / "admin"
    folder.mkdir(exist_ok=True)
    pages = admin_pages(app, ids)
    too_wide, visited, downloads = [], [], []
    for size, viewport, options in (
        ("phone", PHONE, {"device_scale_factor": 2, "is_mobile": True, "has_touch": True}),
        ("desktop", DESKTOP, {}),
    ):
        context = browser.new_context(viewport=viewport, **options)
        page = context.new_page()
        # The login page, before logging in.
        page.goto(f"{server}/admin/login")
        page.screenshot(path=str(folder / f"login-{size}.png"), full_page=True)
        if widths(page)["scroll"] > viewport["width"]:
            too_wide.append(("login", size, widths(page)))
        log_in(page, server)
        check_menu(page, server, size, folder)
        for endpoint, path in sorted(pages.items()):
            if endpoint == "admin.login":
                continue
            name = endpoint.removeprefix("admin.")
            answer = context.request.get(server + path)
            assert answer.status == 200, (path, answer.status, answer.text()[:500])
            if not answer.headers["content-type"].startswith("text/html"):
                downloads.append(name)
                continue
            response = page.goto(server + path)
            assert response.status == 200, (path, response.status)
            found = widths(page)
            # A phone's browser widens its layout (innerWidth) to a page wider than the screen
            # and zooms out: innerWidth must still be the screen's.
            if found["scroll"] > viewport["width"] or found["inner"] != viewport["width"]:
                culprits = page.evaluate(WIDEST, viewport["width"])
                too_wide.append((name, size, found, culprits))
            if name.startswith("dashboard"):
                check_chart(page, viewport)
            page.screenshot(path=str(folder / f"{name}-{size}.png"), full_page=True)
            visited.append(name)
        context.close()

    assert not too_wide, too_wide
    # Every page of the area, and the downloads told apart by what they answer.
    assert {
        "dashboard",
        "subscribers",
        "subscriber",
        "subscriber_receipt",
        "funnel",
        "index",
        "newsletter_new",
        "newsletter_edit",
        "import_",
        "import_job",
        "webhooks",
        "webhook_log",
        "apikey_list",
        "apikey_revoke",
        "editor_list",
        "editor_remove",
        "export_log",
        "outbox_list",
        "password",
    } <= set(visited)
    assert set(downloads) >= {"export", "subscriber_consent", "funnel_csv"}


# The elements that stick out of the viewport, deepest first: what to fix when a page is wide.
WIDEST = """width => [...document.querySelectorAll('body *')]
  .filter(e => e.getBoundingClientRect().right > width + 0.5)
  .filter(e => ![...e.children].some(c => c.getBoundingClientRect().right > width + 0.5))
  .slice(0, 5)
  .map(e => [e.tagName, e.className, Math.round(e.getBoundingClientRect().right),
    e.textContent.trim().slice(0, 60)])"""


def check_chart(page, viewport):
    """The dashboard's chart fills its card at any width, and its labels stay readable."""
    chart = page.locator("svg.trend-chart")
    box = chart.bounding_box()
    card = page.locator("section.trend").bounding_box()
    assert box["x"] >= card["x"] and box["x"] + box["width"] <= card["x"] + card["width"]
    assert box["width"] >= card["width"] * 0.8
    assert chart.locator(".plot").get_attribute("viewBox") == "0 0 1000 1000"
    sizes = chart.locator("text.tick").evaluate_all(
        "ticks => ticks.map(t => t.getBoundingClientRect().height)"
    )
    # At most four day labels and a few count labels, each at least 12 px tall on screen.
    assert 3 <= len(sizes) <= 10 and min(sizes) >= 12, sizes
    # Nothing on the page is drawn outside the screen.
    assert box["x"] + box["width"] <= viewport["width"]


def check_menu(page, server, size, folder):
    """On a phone the menu is folded and opens on a tap; on a desktop it is a row of links."""
    page.goto(f"{server}/admin/exports")
    menu = page.locator("header details.menu")
    link = page.get_by_role("navigation", name="Editors' area").get_by_role(
        "link", name="Export log"
    )
    if size == "phone":
        assert not link.is_visible()
        menu.locator("summary").click()
        assert link.is_visible()
        assert widths(page)["scroll"] <= PHONE["width"]
        page.screenshot(path=str(folder / "menu-open-phone.png"))
    else:
        assert not menu.locator("summary").is_visible()
        assert link.is_visible()
    assert link.get_attribute("aria-current") == "page"
    box = link.bounding_box()
    assert box["width"] >= 24 and box["height"] >= 24
    # Keyboard users see where they are.
    page.keyboard.press("Tab")
    focused = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert focused != "none"
