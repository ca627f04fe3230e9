"""The bot defence in a real Chromium: readers' forms solve their challenge while they type.

A reader here is what the server should take for a person: a desktop Chrome's user agent,
and at least FORM_MIN_FILL_SECONDS between the form showing and the press on Subscribe.
"""

import base64
import hashlib
import json
import time

import pytest
import sqlalchemy as sa

from newsletters import db
from newsletters.embed.snippets import snippets
from newsletters.models import DailyCount, Newsletter, Subscriber, Subscription

from .conftest import READER_USER_AGENT

SLUG, NAME = "morning", "Morning Letter"
MIN_FILL_SECONDS = 2.0

pytestmark = [
    pytest.mark.browser,
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
    pytest.mark.settings(FORM_MIN_FILL_SECONDS=MIN_FILL_SECONDS),
]

# A publisher's article, with both snippets as the editors' page hands them out.
ARTICLE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Publisher: an article</title></head>
<body style="font-family: Georgia, serif; max-width: 44rem; margin: 2rem auto;">
  <h1>An article</h1>
  <p>Some reporting.</p>
  <section id="widget">{widget}</section>
  <section id="framed">{iframe}</section>
</body>
</html>
"""
ARTICLE_PATH = "/politics/2026/12/an-article.html"
CAMPAIGN = "?utm_source=x&utm_campaign=y&id=7"


@pytest.fixture
def newsletter(app, session, live_server, smtp_server):
    """Add the newsletter; the app's links point at the live server, its mail at SMTP."""
    app.config["BASE_URL"] = live_server
    app.config["MAIL_URL"] = smtp_server.url
    session.add(Newsletter(slug=SLUG, name=NAME))
    session.commit()
    return SLUG


@pytest.fixture
def article(app, newsletter, publisher_site):
    """Serve the article with the widget and the iframe on another origin; return its URL."""
    root, site = publisher_site
    with app.app_context():
        pasted = snippets(db.session().scalar(sa.select(Newsletter)))
    (root / ARTICLE_PATH.lstrip("/")).parent.mkdir(parents=True)
    (root / ARTICLE_PATH.lstrip("/")).write_text(ARTICLE.format(**pasted))
    return f"{site}{ARTICLE_PATH}{CAMPAIGN}"


@pytest.fixture
def open_page(browser):
    """Return a function opening a page in a fresh context: a reader's Chrome, no cookies."""
    contexts = []

    def open_in(**options):
        context = browser.new_context(
            user_agent=READER_USER_AGENT, viewport={"width": 1000, "height": 900}, **options
        )
        contexts.append(context)
        return context.new_page()

    yield open_in
    for context in contexts:
        context.close()


def stored(session) -> dict[str, dict]:
    """Return each subscribed address with where its subscription came from and its proof."""
    rows = session.execute(
        sa.select(
            Subscriber.email,
            Subscription.source,
            Subscription.page,
            Subscription.utm_source,
            Subscription.utm_medium,
            Subscription.utm_campaign,
            Subscription.verification,
        ).join(Subscription.subscriber)
    )
    return {row.email: row._asdict() for row in rows}


def wait_for_solution(scope, form_selector: str) -> str:
    """Wait until the form's `altcha` field holds a solution; return it."""
    field = scope.locator(f"{form_selector} input[name=altcha]".strip())
    deadline = time.monotonic() + 15
    while not (value := field.input_value()):
        assert time.monotonic() < deadline, "the challenge was not solved within 15 s"
        time.sleep(0.05)
    return value


def assert_solves_its_challenge(solution: str):
    """Check the solution as the server does, by hand: SHA-256(salt + number) is the challenge."""
    found = json.loads(base64.b64decode(solution))
    assert set(found) == {"algorithm", "challenge", "number", "salt", "signature"}
    assert found["algorithm"] == "SHA-256"
    digest = hashlib.sha256(f"{found['salt']}{found['number']}".encode()).hexdigest()
    assert digest == found["challenge"]


def like_a_person(shown_at: float):
    """Let a person's time to fill the form in pass since ``shown_at`` (time.monotonic())."""
    time.sleep(max(0.0, shown_at + MIN_FILL_SECONDS + 0.3 - time.monotonic()))


def test_the_hosted_page_solves_its_challenge_while_the_reader_types(
    open_page, newsletter, live_server, session
):
    page = open_page()
    hosted = f"{live_server}/n/{SLUG}"
    page.goto(hosted)
    shown_at = time.monotonic()
    solution = wait_for_solution(page, "form.signup-form")
    assert_solves_its_challenge(solution)
    page.get_by_placeholder("Enter your email to subscribe").press_sequentially(
        "person@example.com", delay=20
    )
    like_a_person(shown_at)
    page.get_by_role("button", name="Subscribe", exact=True).click()
    page.wait_for_url(f"{hosted}/thanks")

    row = stored(session)["person@example.com"]
    assert (row["source"], row["verification"]) == ("hosted", "proof")
    assert row["page"] == hosted


def test_the_index_form_solves_one_challenge_for_every_newsletter_it_offers(
    open_page, newsletter, live_server, session
):
    session.add(Newsletter(slug="evening", name="Evening Letter"))
    session.commit()
    page = open_page()
    page.goto(f"{live_server}/")
    shown_at = time.monotonic()
    forms = page.locator("form.signup-form")
    assert forms.count() == 1  # one form, a box to tick per newsletter
    assert_solves_its_challenge(wait_for_solution(forms.first, ""))

    several = forms.first
    for box in several.get_by_role("checkbox").all():
        box.check()
    several.get_by_placeholder("Enter your email to subscribe").fill("both@example.com")
    like_a_person(shown_at)
    several.get_by_role("button", name="Subscribe", exact=True).click()
    page.wait_for_url("**/thanks?*")
    rows = session.execute(
        sa.select(Newsletter.slug, Subscription.source, Subscription.verification)
        .join(Subscription.newsletter)
        .order_by(Newsletter.slug)
    ).all()
    assert [tuple(row) for row in rows] == [
        ("evening", "several", "proof"),
        ("morning", "several", "proof"),
    ]


def test_a_press_before_the_solution_is_ready_waits_for_it(
    open_page, newsletter, live_server, session
):
    page = open_page()
    held = []
    # The challenge's answer is held back until the reader has pressed Subscribe.
    page.route("**/challenge?*", lambda route: held.append(route))
    hosted = f"{live_server}/n/{SLUG}"
    page.goto(hosted)
    shown_at = time.monotonic()
    page.get_by_placeholder("Enter your email to subscribe").fill("early@example.com")
    like_a_person(shown_at)
    page.get_by_role("button", name="Subscribe", exact=True).click()
    page.wait_for_timeout(500)
    assert page.url == hosted  # held: not sent without its solution
    assert stored(session) == {}

    [route] = held
    route.continue_()
    page.wait_for_url(f"{hosted}/thanks")
    assert stored(session)["early@example.com"]["verification"] == "proof"


def test_the_widget_and_the_iframe_on_an_article_keep_its_page_and_campaign(
    open_page, article, session
):
    page = open_page()
    page.goto(article)
    shown_at = time.monotonic()
    widget = page.locator("#widget .nl-widget")
    frame = page.frame_locator("#framed iframe")
    assert_solves_its_challenge(wait_for_solution(widget, "form"))
    assert_solves_its_challenge(wait_for_solution(frame, "form.signup-form"))
    # Solved in a worker: the page's own thread never loaded the solver.
    assert page.evaluate("typeof NewslettersProof") == "undefined"

    widget.locator("input[type=email]").press_sequentially("widget.reader@example.com", delay=20)
    frame.get_by_placeholder("Enter your email to subscribe").press_sequentially(
        "frame.reader@example.com", delay=20
    )
    like_a_person(shown_at)
    widget.get_by_role("button", name="Subscribe", exact=True).click()
    widget.locator(".nl-widget__message--success").wait_for()
    frame.get_by_role("button", name="Subscribe", exact=True).click()
    frame.get_by_text("Successfully subscribed").wait_for()

    kept_page = article.split("?")[0] + "?utm_source=x&utm_campaign=y"
    found = stored(session)
    for address, source in (
        ("widget.reader@example.com", "widget"),
        ("frame.reader@example.com", "iframe"),
    ):
        assert found[address] == {
            "email": address,
            "source": source,
            "page": kept_page,
            "utm_source": "x",
            "utm_medium": None,
            "utm_campaign": "y",
            "verification": "proof",
        }, source
    # The widget's challenge counted its view, on that page.
    views = session.execute(
        sa.select(DailyCount.form, DailyCount.page, DailyCount.count).where(
            DailyCount.metric == "view"
        )
    ).all()
    assert ("widget", kept_page, 1) in views


# A host whose policy lets this product's scripts in, but no blob: worker.
STRICT_ARTICLE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Publisher: a strict article</title>
<meta http-equiv="Content-Security-Policy" content="default-src 'self'; script-src 'self' {app};
  connect-src {app}; style-src 'self' {app}">
</head>
<body>
  <h1>An article</h1>
  <section id="first">{widget}</section>
  <section id="second">{widget}</section>
</body>
</html>
"""
RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__violations.push(e.violatedDirective + " " + (e.blockedURI || "inline"));
});
"""


def test_a_host_policy_without_blob_workers_gets_the_solution_from_the_pages_thread(
    app, open_page, newsletter, live_server, publisher_site, session
):
    root, site = publisher_site
    with app.app_context():
        pasted = snippets(db.session().scalar(sa.select(Newsletter)))
    (root / "strict.html").write_text(STRICT_ARTICLE.format(app=live_server, **pasted))
    page = open_page()
    page.add_init_script(RECORD_VIOLATIONS)
    page.goto(f"{site}/strict.html")
    shown_at = time.monotonic()
    first, second = page.locator("#first .nl-widget"), page.locator("#second .nl-widget")
    assert_solves_its_challenge(wait_for_solution(first, "form"))
    assert_solves_its_challenge(wait_for_solution(second, "form"))
    # The refused worker is reported once for the page, not once per widget.
    assert page.evaluate("window.__violations") == ["worker-src blob"]
    assert page.evaluate("typeof NewslettersProof") == "object"  # the page's thread solved it

    first.locator("input[type=email]").fill("strict.reader@example.com")
    like_a_person(shown_at)
    first.get_by_role("button", name="Subscribe", exact=True).click()
    first.locator(".nl-widget__message--success").wait_for()
    assert stored(session)["strict.reader@example.com"]["verification"] == "proof"


def test_the_hosted_page_without_javascript_still_subscribes_unverified(
    open_page, newsletter, live_server, session
):
    page = open_page(java_script_enabled=False)
    hosted = f"{live_server}/n/{SLUG}"
    page.goto(hosted)
    shown_at = time.monotonic()
    assert page.locator("form.signup-form input[name=altcha]").input_value() == ""
    page.get_by_placeholder("Enter your email to subscribe").fill("noscript@example.com")
    like_a_person(shown_at)
    page.get_by_role("button", name="Subscribe", exact=True).click()
    page.wait_for_url(f"{hosted}/thanks")

    row = stored(session)["noscript@example.com"]
    assert (row["source"], row["verification"]) == ("hosted", "unverified")


def test_no_page_sets_a_cookie(open_page, article, live_server, session):
    page = open_page()
    answers = []
    page.on("response", lambda answer: answers.append(answer))

    hosted = f"{live_server}/n/{SLUG}"
    page.goto(hosted)
    shown_at = time.monotonic()
    wait_for_solution(page, "form.signup-form")
    page.get_by_placeholder("Enter your email to subscribe").fill("cookie.hosted@example.com")
    like_a_person(shown_at)
    page.get_by_role("button", name="Subscribe", exact=True).click()
    page.wait_for_url(f"{hosted}/thanks")
    assert page.evaluate("document.cookie") == ""

    page.goto(article)
    shown_at = time.monotonic()
    widget = page.locator("#widget .nl-widget")
    frame = page.frame_locator("#framed iframe")
    wait_for_solution(widget, "form")
    wait_for_solution(frame, "form.signup-form")
    widget.locator("input[type=email]").fill("cookie.widget@example.com")
    frame.get_by_placeholder("Enter your email to subscribe").fill("cookie.frame@example.com")
    like_a_person(shown_at)
    widget.get_by_role("button", name="Subscribe", exact=True).click()
    widget.locator(".nl-widget__message--success").wait_for()
    frame.get_by_role("button", name="Subscribe", exact=True).click()
    frame.get_by_text("Successfully subscribed").wait_for()
    for each in page.frames:
        assert each.evaluate("document.cookie") == "", each.url

    ours = [a for a in answers if a.url.startswith(live_server)]
    asked = {a.url.split("?")[0].removeprefix(live_server) for a in ours}
    # What was looked at: the hosted page, the iframe, the widget, their challenges, signups.
    assert {
        f"/n/{SLUG}",
        f"/n/{SLUG}/embed",
        f"/n/{SLUG}/embed.js",
        f"/n/{SLUG}/challenge",
        f"/n/{SLUG}/subscribe",
        "/static/proof.js",
        "/static/proof-worker.js",
    } <= asked
    setting = [a.url for a in ours if "set-cookie" in a.all_headers()]
    assert setting == []
    assert page.context.cookies() == []
    assert len(stored(session)) == 3
