"""The subscriber list in Chromium: it fits a phone, and a selection is deleted after asking."""

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from newsletters import db, editors
from newsletters.models import Newsletter, Status, Subscription

from ..admin.conftest import PASSWORD
from ..admin.test_subscribers import LIST, add
from . import checkers

pytestmark = [
    pytest.mark.browser,
    # The page's layout does not depend on the database: one run is enough.
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]

T0 = datetime(2026, 1, 1, tzinfo=UTC)
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


def test_on_a_phone_the_list_fits_and_a_selection_is_deleted_after_asking(
    app, browser, artifacts, live_server, session, newsletter, tmp_path
):
    # The confirmation answers a POST: the accessibility walk of every page cannot reach it.
    checkers.require_tools()
    findings = checkers.Findings(tmp_path)
    with app.app_context():
        briefing = db.session().scalar(sa.select(Newsletter).where(Newsletter.slug == "briefing"))
        editors.create(db.session(), "editor@example.org", PASSWORD, newsletters=[briefing])
        db.session().commit()
    for n in range(12):
        add(
            session,
            "briefing",
            f"a.rather.long.address.number{n:02d}@newsroom.example.org",
            Status.PENDING if n % 3 else Status.CONFIRMED,
            name=f"Reader With A Long Name {n}",
            optin_at=T0 + timedelta(hours=n),
        )
    shots = artifacts / "subscribers"
    shots.mkdir(exist_ok=True)
    for deleted, (size, viewport) in enumerate({"phone": PHONE, "desktop": DESKTOP}.items()):
        context = browser.new_context(viewport=viewport)
        page = context.new_page()
        page.goto(f"{live_server}/admin/login")
        page.fill("#email", "editor@example.org")
        page.fill("#password", PASSWORD)
        page.press("#password", "Enter")
        page.wait_for_url("**/admin/")
        page.goto(f"{live_server}{LIST}")
        page.screenshot(path=shots / f"list-{size}.png", full_page=True)
        assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
        if size == "phone":
            # The table scrolls in its own named, focusable box, not the page.
            box = page.locator(".table-scroll")
            assert box.evaluate("b => b.scrollWidth > b.clientWidth")
            assert box.get_attribute("tabindex") == "0" and box.get_attribute("aria-label")
        page.check("#select-page")
        assert page.locator("input[name=id]:checked").count() == 12 - deleted
        page.uncheck("#pick-" + page.locator("input[name=id]").first.get_attribute("value"))
        assert page.evaluate("document.getElementById('select-page').indeterminate")
        page.check("#select-page")
        page.uncheck("#select-page")
        assert page.locator("input[name=id]:checked").count() == 0
        address = f"a.rather.long.address.number{11 - len(size):02d}@newsroom.example.org"
        page.check(f"[aria-label='Select {address}']")
        page.click("button[value=delete]")
        assert page.locator("h2").inner_text() == "Delete 1 subscriber?"
        page.screenshot(path=shots / f"confirm-delete-{size}.png", full_page=True)
        findings.axe(page, f"confirm delete ({size})")
        findings.keep_html(f"confirm delete ({size})", page.content())
        assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
        page.click("button.danger")
        assert "Deleted 1 subscriber from Morning Briefing." in page.locator(".flash").inner_text()
        context.close()
    assert len(session.scalars(sa.select(Subscription)).all()) == 10
    assert findings.problems + findings.html_errors() == []
