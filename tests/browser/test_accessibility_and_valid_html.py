"""Every page, embed and mail, checked as a reader and an editor meet them (issue 14).

One walk in Chromium, on SQLite (the pages are the same on PostgreSQL): the public pages in
the order a reader meets them (form, its errors, thank-you page, the mails, confirmation,
preferences, unsubscribing, the error pages), the embeds (the iframe page, and a publisher's
page holding the plain form, the iframe and the widget), every page of the editors' area
(each GET route of the admin blueprint, from the app's url_map: a new page cannot be left
out), and the HTML part of every kind of mail, received over SMTP. On each:

- axe-core's WCAG 2.2 A and AA rules (target sizes included), at 1280 px and, for the
  public pages and embeds, at 390 px: no violation;
- ``<html lang>`` set, and a visible focus on each element Tab reaches up to the first field
  or button;
- the HTML as served (not the DOM after scripts) kept for the Nu Html Checker, run once over
  all of it at the end: no error.

Every finding is collected and reported together, so one run lists all that is left to fix.
"""

import contextlib
import functools
import re
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from werkzeug.exceptions import HTTPException

from newsletters import apikeys, db, editors, tokens
from newsletters.db import utcnow
from newsletters.embed.snippets import snippets
from newsletters.mail import worker
from newsletters.models import (
    ApiKey,
    Editor,
    ImportJob,
    Newsletter,
    OutboxKind,
    OutboxMessage,
    OutboxState,
    Status,
    Subscriber,
    Subscription,
    Webhook,
)
from newsletters.webhooks import services as webhook_services

from ..conftest import free_port
from .checkers import Findings, require_tools

pytestmark = [
    pytest.mark.browser,
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
    # The webhook pauses at its first failed delivery: the editors' mail about it goes out.
    pytest.mark.settings(WEBHOOK_MAX_FAILURES=1),
]

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
PASSWORD = "correct horse battery"
ADMIN = "admin@example.com"
LINK = re.compile(r"https?://[^\s\"<>]+/(confirm|preferences|unsubscribe)/[A-Za-z0-9_-]{43}")
# Routes of the editors' area that answer with something other than a page.
NOT_PAGES = ("text/csv", "application/json", "application/x-ndjson", "text/plain")
# The other GET routes that answer with something other than a page: every one left must be
# met in the walk (``unvisited``), so that a new public page cannot be left out.
NOT_PAGE_ENDPOINTS = {
    "static",
    "favicon",
    "health.healthz",
    "subscriptions.challenge",  # JSON, for the forms' script
    "embed.widget",  # the widget's script
    "embed.resize_script",
    "preferences.data",  # a JSON download
    "api_docs.openapi_json",
}
# The embeds a preview page shows (embed.preview), as the settings page frames them.
EMBEDS = ("form", "iframe", "widget")
HOST_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>A publisher's article</title>
</head>
<body>
  <main>
    <h1>An article with three signup boxes</h1>
    <p>Some reporting, then the boxes an editor copied from the settings page.</p>
    <section aria-labelledby="plain"><h2 id="plain">The plain form</h2>
{form}
    </section>
    <section aria-labelledby="framed"><h2 id="framed">The iframe</h2>
{iframe}
    </section>
    <section aria-labelledby="widget"><h2 id="widget">The widget</h2>
{widget}
    </section>
  </main>
</body>
</html>
"""


WIDGET_PAGE = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>The widget</title>'
    "</head><body>{}</body></html>"
)


def deliver(app, smtp_server) -> None:
    """Run the worker once: signups, reminders, mail to the SMTP server, webhooks."""
    app.config["MAIL_URL"] = smtp_server.url
    with app.app_context():
        worker.run(once=True, report=lambda line: None)


def links_in(smtp_server, kind: str) -> list[str]:
    """Return the links to ``kind`` pages in every mail received so far, newest last."""
    found = []
    for mail in smtp_server.messages:
        text = mail.get_body(("plain",)).get_content()
        found += [m.group(0) for m in LINK.finditer(text) if m.group(1) == kind]
    return found


def a_day_passes(session) -> None:
    """Move the signups, their mails and the addresses' mail budgets a day into the past."""
    back = timedelta(hours=25)
    session.expire_all()
    for subscription in session.scalars(sa.select(Subscription)):
        for column in ("optin_at", "confirmation_mailed_at"):
            if getattr(subscription, column) is not None:
                setattr(subscription, column, getattr(subscription, column) - back)
    for subscriber in session.scalars(sa.select(Subscriber)):
        if subscriber.mail_window_start is not None:
            subscriber.mail_window_start -= back
    session.commit()


@pytest.fixture
def walk(app, client, session, live_server, publisher_site, smtp_server, tmp_path, artifacts):
    """Set up two newsletters, an admin and an editor, and a publisher's page of the embeds."""
    require_tools()
    root, site = publisher_site
    app.config["BASE_URL"] = live_server
    app.config["MAIL_URL"] = smtp_server.url
    session.add_all(
        [
            Newsletter(
                slug="briefing",
                name="Morning Briefing",
                description="The day's news before breakfast.",
                welcome_enabled=True,
                reminder_hours=24,
                accent_color="#8a1538",
                # The pages allow images of their own origin and https ones: in production a
                # logo is the publisher's https image; here, one the app serves itself.
                logo_url=f"{live_server}/static/favicon.svg",
                site_url=f"{site}/article.html",
                allowed_origins=site,
            ),
            Newsletter(slug="weekly", name="The Weekly", description="A long read on Sundays."),
        ]
    )
    session.commit()
    with app.app_context():
        briefing = db.session().scalar(sa.select(Newsletter).where(Newsletter.slug == "briefing"))
        editors.create(db.session(), ADMIN, PASSWORD, is_admin=True)
        editors.create(db.session(), "editor@example.com", PASSWORD, newsletters=[briefing])
        (root / "article.html").write_text(HOST_PAGE.format(**snippets(briefing)))
        # A receiver where nothing listens (loopback, allowed in tests): its first delivery
        # fails, the webhook pauses, and its editors get the mail about it.
        webhook_services.add(db.session(), briefing, f"http://127.0.0.1:{free_port()}/hook")
        db.session().commit()
    folder = tmp_path / "served"
    folder.mkdir()
    return Findings(folder, screenshots=artifacts), site


def served(findings, page, label, response, *, phone=False, focus=True, status=200):
    """Check the page ``response`` left in ``page``: its served HTML, lang, focus and axe."""
    if response is None:
        findings.problems.append(f"{label}: no page was loaded")
        return
    if response.status != status:
        findings.problems.append(f"{label}: answered {response.status}, not {status}")
    findings.visited.append(response.url)
    findings.keep_html(label, response.text())
    findings.language(page, label)
    if focus:
        findings.focus(page, label)
    findings.axe(page, f"{label} at 1280 px")
    if phone:
        findings.screenshot(page, label)  # both sizes: test-artifacts/a11y-<page>-<width>.png
        page.set_viewport_size(PHONE)
        findings.axe(page, f"{label} at 390 px")
        findings.screenshot(page, label)
        page.set_viewport_size(DESKTOP)


def follow(page, act):
    """Do ``act`` (a click) and return the response of the page it leads to."""
    with page.expect_navigation() as navigation:
        act()
    return navigation.value


def submit(page, form, email=None):
    """Type ``email`` into ``form``'s address field, send the form, return the new page."""
    if email is not None:
        form.locator("input[type=email]").fill(email)
    return follow(page, lambda: form.locator("button[type=submit]").first.click())


def check_public_pages(findings, page, base, app, client, session, smtp_server, sent):
    """Walk the reader's pages: forms and their errors, thanks, mails' links, errors."""
    check = functools.partial(served, findings, page, phone=True)

    check("the index (/)", page.goto(f"{base}/"))
    several = page.locator("form.signup-form:has(input[type=checkbox])")
    check("the index, nothing ticked", submit(page, several, "reader@example.com"), status=400)
    several = page.locator("form.signup-form:has(input[type=checkbox])")
    several.locator("input[type=checkbox]").first.check()
    several.locator("input[type=checkbox]").last.check()
    check("the thank-you page of several", submit(page, several, "several@example.com"))

    check("the hosted page /n/briefing", page.goto(f"{base}/n/briefing"))
    form = page.locator("form.signup-form")
    check("the hosted page, a bad address", submit(page, form, "not an address"), status=400)
    form = page.locator("form.signup-form")
    check("the hosted page, a typo", submit(page, form, "reader@gmial.com"), status=400)
    form = page.locator("form.signup-form").first
    check("the thank-you page /n/briefing/thanks", submit(page, form, "reader@example.com"))

    deliver(app, smtp_server)
    confirm = links_in(smtp_server, "confirm")[-1]
    check("the confirm page", page.goto(confirm))
    confirmed = follow(page, lambda: page.locator("main button[type=submit]").click())
    check("the confirmed page", confirmed)
    deliver(app, smtp_server)  # the welcome mail, with the preference centre's link

    preferences = links_in(smtp_server, "preferences")[-1]
    check("the preferences page", page.goto(preferences))
    data_sent = follow(page, lambda: page.locator("button[value=send_data]").click())
    check("the preferences page, data link sent", data_sent)
    # A reader who will erase their data, which needs a link from a mail: they ask for one.
    client.post("/n/weekly/subscribe", data={"email": "leaving@example.com"})
    check("the preference link form /preferences", page.goto(f"{base}/preferences"))
    form = page.locator("main form")
    check("the preference link form, sent", submit(page, form, "leaving@example.com"))

    with app.app_context():
        subscription = db.session().scalar(
            sa.select(Subscription).join(Subscriber).where(Subscriber.email == "reader@example.com")
        )
        unsubscribe = f"{base}/unsubscribe/{tokens.secret_for(subscription.unsubscribe_token)}"
    check("the unsubscribe page", page.goto(unsubscribe))
    left = follow(page, lambda: page.locator("main form button[type=submit]").click())
    check("the unsubscribed page", left)

    bogus = "A" * 43
    for kind in ("confirm", "unsubscribe", "preferences"):
        response = page.goto(f"{base}/{kind}/{bogus}")
        check(f"the link error page /{kind}/…", response, status=response.status)
        if response.status not in (400, 404, 410):
            findings.problems.append(f"/{kind}/<unknown>: answered {response.status}")
    check("the 404 page", page.goto(f"{base}/no-such-page"), status=404)
    check("the 400 page", page.goto(f"{base}/challenge"), status=400)
    check("the API's documentation /api/v1/docs", page.goto(f"{base}/api/v1/docs"))
    # A reader whose browser asks for Ukrainian: the page says so in its lang.
    page.set_extra_http_headers({"Accept-Language": "uk"})
    check("the hosted page in Ukrainian", page.goto(f"{base}/n/briefing"))
    if page.evaluate("() => document.documentElement.lang") != "uk":
        findings.problems.append("lang on the hosted page in Ukrainian: not uk")
    page.set_extra_http_headers({})

    # Erasing needs a mailed link: the preference link mail asked for above. The erasure
    # takes that address's mails out of the outbox: the kinds sent are read before it.
    deliver(app, smtp_server)
    sent.update(sent_kinds(session))
    page.goto(links_in(smtp_server, "preferences")[-1])
    page.locator("input[name=confirm_erase]").check()
    erased = follow(page, lambda: page.locator("button[value=erase]").click())
    check("the erased page", erased)


def check_embeds(findings, page, base, site):
    """Check the iframe page (empty, refused, done) and a publisher's page of all three."""
    check = functools.partial(served, findings, page, phone=True)

    check("the iframe page /n/briefing/embed", page.goto(f"{base}/n/briefing/embed"))
    form = page.locator("form.signup-form")
    check("the iframe page, a bad address", submit(page, form, "nobody"), status=400)
    form = page.locator("form.signup-form").first
    check("the iframe page, signed up", submit(page, form, "framed@example.com"))

    response = page.goto(f"{site}/article.html")
    page.locator(".nl-widget input[type=email]").wait_for()
    page.frame_locator("iframe").locator("input[type=email]").wait_for()
    # The publisher's own markup holds the plain form's snippet: no focus check of theirs.
    check("a publisher's page: plain form, iframe, widget", response, focus=False)
    # The widget has no served HTML: the markup its script built is checked as a document.
    markup = page.locator(".nl-widget").evaluate("(element) => element.outerHTML")
    findings.keep_html("the widget's markup, as its script builds it", WIDGET_PAGE.format(markup))
    widget = page.locator(".nl-widget")
    widget.locator("input[type=email]").fill("widget@example.com")
    widget.locator("button[type=submit]").click()
    widget.get_by_role("status").or_(widget.get_by_role("alert")).first.wait_for()
    findings.axe(page, "a publisher's page, the widget signed up, at 1280 px")

    # Each embed on a page of its own, as the settings page previews it.
    for embed in EMBEDS:
        response = page.goto(f"{base}/n/briefing/embed/preview/{embed}")
        if embed == "widget":
            page.locator(".nl-widget input[type=email]").wait_for()
        if embed == "iframe":
            page.frame_locator("iframe").locator("input[type=email]").wait_for()
        served(findings, page, f"the preview of the {embed}", response)


def sample_data(app, client, session) -> dict[str, object]:
    """Fill the editors' pages: subscribers of each status, an API key, an import job.

    Returns a value for each URL part of the editors' routes. A route with a part named
    otherwise makes the test fail (``admin_urls``): give it a value here, so its page is
    checked too.
    """
    for address in ("anna@example.com", "bob@example.com", "info@example.com"):
        client.post("/n/briefing/subscribe", data={"email": address, "name": "Anna Example"})
    session.execute(
        sa.update(Subscription)
        .where(
            Subscription.subscriber_id.in_(
                sa.select(Subscriber.id).where(Subscriber.email != "bob@example.com")
            )
        )
        .where(Subscription.status == Status.PENDING)
        .values(status=Status.CONFIRMED, confirmed_at=utcnow())
    )
    session.commit()
    with app.app_context():
        admin = editors.find(db.session(), ADMIN)
        apikeys.create(db.session(), admin, "Website")
        briefing = db.session().scalar(sa.select(Newsletter).where(Newsletter.slug == "briefing"))
        db.session().add(
            ImportJob(
                newsletter=briefing,
                editor_id=admin.id,
                filename="readers.csv",
                content=b"email,name\nnew.reader@example.com,New Reader\nnot an address,\n",
                size=60,
            )
        )
        db.session().commit()
    session.expire_all()
    subscription = session.scalar(
        sa.select(Subscription).join(Subscriber).where(Subscriber.email == "anna@example.com")
    )
    return {
        "slug": "briefing",
        "subscription_id": subscription.id,
        "webhook_id": session.scalar(sa.select(Webhook.id)),
        "key_id": session.scalar(sa.select(ApiKey.id)),
        "editor_id": session.scalar(sa.select(Editor.id).where(Editor.email != ADMIN)),
        "job_id": session.scalar(sa.select(ImportJob.id)),
        # A mail's preview (its HTML part alone, too): the mails themselves, every kind, are
        # checked as received (check_mails).
        "kind": OutboxKind.CONFIRM.value,
    }


def unvisited(app, urls: list[str]) -> list[str]:
    """Return the public GET routes of pages that none of ``urls`` led to."""
    adapter = app.url_map.bind("localhost")
    met = set()
    for url in urls:
        # Another origin's page, or an unknown path (the 404 page), matches none.
        with contextlib.suppress(HTTPException):
            met.add(adapter.match(urlsplit(url).path, method="GET")[0])
    return sorted(
        rule.rule
        for rule in app.url_map.iter_rules()
        if "GET" in rule.methods
        and not rule.endpoint.startswith(("admin.", "api."))
        and rule.endpoint not in NOT_PAGE_ENDPOINTS | met
    )


def admin_urls(app, samples) -> tuple[list[str], list[str]]:
    """Return the URL of each GET route of the editors' area, and the routes left without one."""
    urls, unfilled = [], []
    for rule in sorted(app.url_map.iter_rules(), key=lambda rule: rule.rule):
        if not rule.endpoint.startswith("admin.") or "GET" not in rule.methods:
            continue
        missing = [name for name in rule.arguments if samples.get(name) is None]
        if missing:
            unfilled.append(f"{rule.rule} ({', '.join(missing)})")
            continue
        with app.test_request_context():
            urls.append(
                rule.build({n: samples[n] for n in rule.arguments}, append_unknown=False)[1]
            )
    return urls, unfilled


def check_admin_pages(findings, page, base, app, client, session, smtp_server):
    """Log in as an admin through the login page, then check every page of the editors' area."""
    check = functools.partial(served, findings, page)

    check("the login page", page.goto(f"{base}/admin/login"))
    page.locator("input[name=email]").fill(ADMIN)
    page.locator("input[name=password]").fill(PASSWORD)
    follow(page, lambda: page.locator("main button[type=submit]").click())

    samples = sample_data(app, client, session)
    deliver(app, smtp_server)  # the import job, the webhook's failure: progress, a paused hook
    # An export, for the export log.
    page.request.get(f"{base}/admin/n/briefing/export?status=confirmed&format=csv")
    urls, unfilled = admin_urls(app, samples)
    for rule in unfilled:
        findings.problems.append(f"admin route {rule}: no sample value; add one to sample_data")
    for url in [*urls, "/admin/n/briefing/subscribers?q=example.com", "/admin/n/nope/"]:
        answer = page.request.get(f"{base}{url}")
        if any(answer.headers.get("content-type", "").startswith(t) for t in NOT_PAGES):
            continue
        if "attachment" in answer.headers.get("content-disposition", ""):
            continue
        status = 404 if url == "/admin/n/nope/" else 200
        policy = answer.headers.get("content-security-policy", "")
        if "sandbox" in policy and "allow-scripts" not in policy:
            # A document that may run no script (a mail's HTML part, for its preview): axe
            # runs over its HTML in a blank page, as over the mails.
            findings.keep_html(f"the editors' page {url}", answer.text())
            page.set_content(answer.text())
            findings.language(page, f"the editors' page {url}")
            findings.axe(page, f"the editors' page {url} at 1280 px")
            continue
        check(f"the editors' page {url}", page.goto(f"{base}{url}"), status=status)
    # A form sent back with its errors: each shown beside its field.
    page.goto(f"{base}/admin/newsletters/new")
    form = page.locator("form:has(input[name=slug])")
    form.locator("input[name=slug]").fill("Not a slug!")
    form.locator("input[name=accent_color]").fill("red")
    refused = follow(page, lambda: form.locator("button[type=submit]").first.click())
    check("the editors' page /admin/newsletters/new, refused", refused, status=refused.status)
    if refused.status not in (200, 400):
        findings.problems.append(f"/admin/newsletters/new refused: answered {refused.status}")
    return urls


def sent_kinds(session) -> set[str]:
    """Return the kinds of mail the outbox holds as sent."""
    session.expire_all()
    query = sa.select(OutboxMessage.kind).where(OutboxMessage.state == OutboxState.SENT)
    return set(session.scalars(query))


def check_mails(findings, page, app, smtp_server, session, kinds):
    """Check the HTML part of each mail received; every kind of mail must be among them."""
    deliver(app, smtp_server)
    # An editor's sample mail ("sample") is one of the other kinds, sent to themselves.
    not_mails = {OutboxKind.WEBHOOK, getattr(OutboxKind, "SAMPLE", OutboxKind.WEBHOOK)}
    for kind in sorted(set(OutboxKind) - not_mails - kinds - sent_kinds(session)):
        findings.problems.append(f"mail {kind}: none was sent in the walk, so none was checked")
    seen = set()
    for mail in smtp_server.messages:
        label = f"the mail {mail['Subject']!r}"
        if label in seen:
            continue
        seen.add(label)
        html = mail.get_body(("html",))
        if html is None:
            findings.problems.append(f"{label}: no HTML part")
            continue
        html = html.get_content()
        findings.keep_html(label, html)
        page.set_content(html)
        findings.language(page, label)
        findings.axe(page, f"{label} at 1280 px")
        page.set_viewport_size(PHONE)
        findings.axe(page, f"{label} at 390 px")
        page.set_viewport_size(DESKTOP)
    return seen


def test_every_page_embed_and_mail_is_accessible_and_valid_html(
    app, client, session, browser, walk, live_server, smtp_server, artifacts
):
    findings, site = walk
    kinds = set()  # the kinds of mail sent, as the outbox records them
    reader = browser.new_context(viewport=DESKTOP)
    editor = browser.new_context(viewport=DESKTOP)
    for context in (reader, editor):
        context.set_default_timeout(10_000)
    try:
        check_public_pages(
            findings, reader.new_page(), live_server, app, client, session, smtp_server, kinds
        )
        check_embeds(findings, reader.new_page(), live_server, site)
        # A day passes: the one reminder of the signup still unconfirmed goes out.
        a_day_passes(session)
        deliver(app, smtp_server)
        urls = check_admin_pages(
            findings, editor.new_page(), live_server, app, client, session, smtp_server
        )
        mails = check_mails(findings, reader.new_page(), app, smtp_server, session, kinds)
    finally:
        reader.close()
        editor.close()
    for rule in unvisited(app, findings.visited):
        findings.problems.append(f"the page of {rule} was not checked: add it to the walk")
    problems = findings.problems + findings.html_errors()
    report = [f"checked: {label}" for label in findings.checked] + problems
    (artifacts / "accessibility-and-html.txt").write_text("\n".join(report) + "\n")

    assert len(urls) >= 15, urls  # the url_map was read, not an empty list
    assert len(mails) >= 6, mails
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems)
