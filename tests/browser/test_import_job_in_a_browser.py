"""An editor imports a list of a few thousand rows in Chromium and follows the job to its report.

The worker runs in a thread of the test's process, as ``make run`` runs it. It is held after
its first batch until the browser has shown that batch's count and been reloaded (so the
test sees the page mid-way without a sleep), then let go; the page finds the end by itself,
with JavaScript (polling) and without (a refresh every few seconds).
PostgreSQL only: there the counts are committed while the import's transaction is open (on
SQLite the import holds the write lock and the page waits for its end; see import_jobs.py).
"""

import threading

import pytest
import sqlalchemy as sa

from newsletters import db, editors, import_jobs, imports
from newsletters.mail import worker
from newsletters.models import ImportJob, Newsletter, Subscription

pytestmark = [
    pytest.mark.browser,
    pytest.mark.parametrize("database_url", ["postgresql"], indirect=True),
]

PASSWORD = "correct horse battery"
ROWS = 3000
# The line the first batch of 500 rows ends on: rows 249 and 499 are refused, so it takes
# row 501, on line 503 (the header is line 1). Those two are refused so far.
FIRST_BATCH_ENDS = 503
PHONE = {"width": 390, "height": 844}


def the_list() -> bytes:
    """Return a CSV of ROWS rows, every 250th of them with an address that is not one."""
    lines = ["email,name"]
    for n in range(ROWS):
        if n % 250 == 249:
            lines.append(f"reader{n}-at-example.com,Reader {n}")
        else:
            lines.append(f"reader{n:05d}@example.com,Reader number {n}")
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture
def held_worker(app, live_server, monkeypatch):
    """Run the worker in a thread, holding each import after its first batch until let go."""
    app.config["BASE_URL"] = live_server
    monkeypatch.setattr(imports, "BATCH", 500)
    held, release = threading.Event(), threading.Event()
    advance = import_jobs._Pulse.advance

    def gated(pulse, lines):
        advance(pulse, lines)
        if not release.is_set():
            held.set()
            assert release.wait(60), "the test never let the import go"

    monkeypatch.setattr(import_jobs._Pulse, "advance", gated)
    stop = worker.start_in_thread(app, report=lambda line: None)
    yield held, release
    release.set()
    stop.set()


def test_an_editor_uploads_a_list_and_follows_the_import_to_its_report(
    app, session, browser, held_worker, live_server, artifacts
):
    held, release = held_worker
    session.add(Newsletter(slug="briefing", name="Morning Briefing"))
    session.commit()
    with app.app_context():
        briefing = db.session().scalar(sa.select(Newsletter))
        editors.create(db.session(), "editor@example.org", PASSWORD, newsletters=[briefing])
        db.session().commit()
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    page.goto(f"{live_server}/admin/login")
    page.get_by_label("Email").fill("editor@example.org")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()

    page.goto(f"{live_server}/admin/n/briefing/import")
    page.get_by_label("CSV file").set_input_files(
        {"name": "subscribers.csv", "mimeType": "text/csv", "buffer": the_list()}
    )
    page.get_by_role("button", name="Import").click()
    page.wait_for_url("**/admin/n/briefing/imports/*")
    job_url = page.url

    # Mid-way: the first batch's count, shown by the page's own polling, and after a reload.
    assert held.wait(30), "the worker never started the import"
    count = page.locator('[data-field="rows_done"]')
    count.filter(has_text=str(FIRST_BATCH_ENDS)).wait_for(timeout=10_000)
    assert page.locator('[data-field="state"]').inner_text() == "running"
    page.screenshot(path=artifacts / "import-job-running-phone.png", full_page=True)
    page.reload()
    assert count.inner_text() == str(FIRST_BATCH_ENDS)
    assert page.locator('[data-field="refused"]').inner_text() == "2"
    assert page.locator("progress").get_attribute("max") == str(ROWS + 1)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]

    # Without JavaScript, the same page (same login) reloads itself instead.
    plain = browser.new_context(viewport=PHONE, java_script_enabled=False)
    plain.add_cookies(context.cookies())
    plain_page = plain.new_page()
    plain_page.goto(job_url)
    assert plain_page.locator('[data-field="rows_done"]').inner_text() == str(FIRST_BATCH_ENDS)

    release.set()
    # The page notices the end by itself and comes back with the report.
    report = page.get_by_role("heading", name="Import report")
    report.wait_for(timeout=30_000)
    plain_page.get_by_role("heading", name="Import report").wait_for(timeout=30_000)
    plain.close()
    refused = ROWS // 250
    text = page.locator("main").inner_text()
    assert f"{ROWS - refused:,} rows taken, 0 already on the list (left unchanged), " in text
    assert f"{refused} refused." in text
    assert page.locator("table.refused tbody tr").count() == refused
    assert "reader249-at-example.com" in text
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.screenshot(path=artifacts / "import-job-done-phone.png", full_page=True)

    # After: the same report on a reload, and the import listed on the import page.
    page.goto(job_url)
    assert page.get_by_role("heading", name="Import report").is_visible()
    page.goto(f"{live_server}/admin/n/briefing/import")
    page.locator("table.imports tbody a").first.click()
    assert page.url == job_url
    page.goto(f"{live_server}/admin/n/briefing/import")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.screenshot(path=artifacts / "import-page-phone.png", full_page=True)
    context.close()

    job = session.scalar(sa.select(ImportJob))
    assert (job.state, job.rows_done, job.refused, job.content) == ("done", ROWS + 1, refused, None)
    assert session.scalar(sa.select(sa.func.count()).select_from(Subscription)) == ROWS - refused
