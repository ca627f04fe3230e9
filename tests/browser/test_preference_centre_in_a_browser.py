"""A reader in a real Chromium, with real mail: asks for their link, changes their lists,
downloads their data and erases themselves."""

import json
import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from newsletters.mail import worker
from newsletters.models import ConsentEvent, Newsletter, Status, Subscriber, Subscription

READER = "reader@example.com"

# Once, not per database: what the browser sees does not depend on it, and the flows are
# proven on both databases by tests/subscriptions/test_preference_centre.py.
pytestmark = [
    pytest.mark.browser,
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]


@pytest.fixture
def site(app, session, live_server, smtp_server):
    """Serve the app with three newsletters; its links point at the live server, mail at SMTP."""
    app.config["BASE_URL"] = live_server
    app.config["MAIL_URL"] = smtp_server.url
    session.add_all([Newsletter(slug=s, name=s.title()) for s in ("alpha", "beta", "gamma")])
    session.commit()
    return live_server


def mailed_link(app, smtp_server, site, path: str) -> str:
    """Send what is due over SMTP; return the one link under ``path`` in the newest mail."""
    with app.app_context():
        assert worker.run(once=True)["sent"] == 1
    mail = smtp_server.messages[-1]
    assert mail["To"] == READER
    text = mail.get_body(("plain",)).get_content()
    [link] = re.findall(re.escape(site + path) + r"[A-Za-z0-9_-]{20,}", text)
    return link


def statuses(session) -> dict:
    session.expire_all()
    rows = session.execute(
        sa.select(Newsletter.slug, Subscription.status)
        .join(Subscription.newsletter)
        .join(Subscription.subscriber)
        .where(Subscriber.email == READER)
    )
    return dict(rows.all())


def test_a_reader_manages_downloads_and_erases_their_subscriptions(
    app, page, site, session, smtp_server, artifacts
):
    # Signed up to two newsletters with one form, and confirmed both.
    page.goto(f"{site}/")
    several = page.locator(
        "section", has=page.get_by_role("heading", name="Choose your newsletters")
    )
    several.get_by_label("Alpha").check()
    several.get_by_label("Beta").check()
    several.get_by_placeholder("Enter your email to subscribe").fill(READER)
    several.get_by_role("button", name="Subscribe").click()
    page.wait_for_url("**/thanks**")
    page.goto(mailed_link(app, smtp_server, site, "/confirm/"))
    assert page.get_by_label("Alpha").is_checked() and page.get_by_label("Beta").is_checked()
    page.screenshot(path=str(artifacts / "preferences-1-confirm-several.png"), full_page=True)
    page.get_by_role("button", name="Confirm the ticked newsletters").click()
    page.get_by_role("heading", name="Subscription confirmed").wait_for()
    assert statuses(session) == {"alpha": Status.CONFIRMED, "beta": Status.CONFIRMED}

    # "Send me my link".
    page.goto(f"{site}/preferences")
    page.get_by_label("Email").fill(READER)
    page.get_by_role("button", name="Send me my link").click()
    page.get_by_text("If this address is on any of our lists, we've sent it a link.").wait_for()
    page.screenshot(path=str(artifacts / "preferences-2-link-sent.png"), full_page=True)

    # The mailed link: leave Beta, join Gamma.
    page.goto(mailed_link(app, smtp_server, site, "/preferences/"))
    page.get_by_role("heading", name="Your newsletters").wait_for()
    assert page.get_by_text(READER).first.is_visible()
    assert page.get_by_label("Alpha").is_checked()
    assert not page.get_by_label("Gamma").is_checked()
    page.screenshot(path=str(artifacts / "preferences-3-centre.png"), full_page=True)
    page.get_by_label("Beta").uncheck()
    page.get_by_label("Gamma").check()
    page.get_by_role("button", name="Save my choices").click()
    page.get_by_text("Saved.").wait_for()
    assert not page.get_by_label("Beta").is_checked()
    assert page.get_by_label("Gamma").is_checked()
    page.screenshot(path=str(artifacts / "preferences-4-saved.png"), full_page=True)
    assert statuses(session) == {
        "alpha": Status.CONFIRMED,
        "beta": Status.UNSUBSCRIBED,
        "gamma": Status.CONFIRMED,
    }

    # The data: a link by mail, and the browser downloads the file.
    centre = page.url
    page.get_by_role("button", name="Email me my data").click()
    page.get_by_text("We've sent a link to download your data").wait_for()
    data_link = mailed_link(app, smtp_server, site, "/preferences/data/")
    with page.expect_download() as download:
        page.evaluate("url => { window.location.href = url }", data_link)
    assert download.value.suggested_filename.endswith(".json")
    data = json.loads(Path(download.value.path()).read_text(encoding="utf-8"))
    assert data["email"] == READER
    assert {s["newsletter"]: s["status"] for s in data["subscriptions"]} == {
        "alpha": "confirmed",
        "beta": "unsubscribed",
        "gamma": "confirmed",
    }
    history = [(h["newsletter"], h["action"]) for h in data["consent_history"]]
    assert ("beta", "unsubscribed") in history and ("gamma", "joined") in history
    assert len(history) == 6  # two signups, two confirmations, a leave and a join
    assert page.url == centre  # a download is no navigation

    # Erase: the box first, then the button.
    page.get_by_label("I want my data erased").check()
    page.get_by_role("button", name="Erase my data").click()
    page.get_by_role("heading", name="Your data is erased").wait_for()
    page.screenshot(path=str(artifacts / "preferences-5-erased.png"), full_page=True)
    assert session.scalar(sa.select(Subscriber).where(Subscriber.email == READER)) is None
    rows = session.execute(sa.select(ConsentEvent.action, ConsentEvent.ip)).all()
    assert len(rows) == 9  # the six, and an "erased" for each subscription
    assert all(ip is None for _, ip in rows)
    page.goto(centre)
    page.get_by_role("heading", name="This link cannot be used").wait_for()
    page.screenshot(path=str(artifacts / "preferences-6-link-gone.png"), full_page=True)
