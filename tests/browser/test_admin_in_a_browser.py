"""An editor in a real Chromium: logs in, searches the list, opens a subscriber, exports."""

import csv
import io

import pytest
import sqlalchemy as sa

from newsletters import db, editors
from newsletters.models import Newsletter, Subscription

pytestmark = pytest.mark.browser

PASSWORD = "correct horse battery"


@pytest.fixture
def editor_setup(app, client, session, live_server):
    app.config["BASE_URL"] = live_server
    session.add_all(
        [
            Newsletter(slug="briefing", name="Morning Briefing"),
            Newsletter(slug="other", name="Other"),
        ]
    )
    session.commit()
    for address in ("anna@example.com", "annabel@example.com", "joanna@example.com"):
        client.post("/n/briefing/subscribe", data={"email": address, "name": "=HYPERLINK(1)"})
    client.post("/n/other/subscribe", data={"email": "anna.other@example.com"})
    session.execute(sa.update(Subscription).values(status="confirmed"))
    session.commit()
    with app.app_context():
        briefing = db.session().scalar(sa.select(Newsletter).where(Newsletter.slug == "briefing"))
        editors.create(db.session(), "editor@example.com", PASSWORD, newsletters=[briefing])
        db.session().commit()
    return live_server


def test_an_editor_logs_in_searches_and_downloads_an_export(page, editor_setup, artifacts):
    page.goto(f"{editor_setup}/admin/")
    assert "/admin/login" in page.url
    page.get_by_label("Email").fill("editor@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()

    page.get_by_role("heading", name="Newsletters").wait_for()
    assert page.get_by_role("link", name="Morning Briefing").is_visible()
    assert page.get_by_role("link", name="Other", exact=True).count() == 0
    page.get_by_role("link", name="Morning Briefing").click()
    page.locator("svg").first.wait_for()
    page.screenshot(path=str(artifacts / "admin-dashboard.png"), full_page=True)

    page.get_by_role("link", name="Subscribers").click()
    page.get_by_role("searchbox").fill("anna")
    page.get_by_role("searchbox").press("Enter")
    # The unfiltered list shows these links too: wait for the search's own page.
    page.wait_for_url("**q=anna**")
    page.get_by_role("link", name="annabel@example.com").wait_for()
    rows = page.locator("tbody tr").all_inner_texts()
    assert any("anna@example.com" in r for r in rows)
    assert any("joanna" in r for r in rows)  # any part of an address is found
    assert not any("anna.other" in r for r in rows)  # another newsletter's is not
    page.screenshot(path=str(artifacts / "admin-search.png"), full_page=True)

    page.get_by_role("link", name="anna@example.com", exact=True).click()
    page.get_by_role("heading", name="Consent evidence").wait_for()
    assert "127.0.0.1" in page.content()

    page.get_by_role("link", name="Dashboard").click()
    with page.expect_download() as download_info:
        page.get_by_role("link", name="confirmed.csv").click()
    download = download_info.value
    assert download.suggested_filename == "briefing-confirmed.csv"
    rows = list(csv.DictReader(io.StringIO(download.path().read_text(encoding="utf-8"))))
    assert sorted(r["email"] for r in rows) == [
        "anna@example.com",
        "annabel@example.com",
        "joanna@example.com",
    ]
    assert {r["name"] for r in rows} == {"'=HYPERLINK(1)"}
    assert all(r["unsubscribe_url"].startswith(f"{editor_setup}/unsubscribe/") for r in rows)
