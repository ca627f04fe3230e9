"""Where signups come from: each entry point's form, the page and campaign, views counted.

The browser's side (a widget and an iframe on another site's article) is in
tests/browser/test_bot_defence_in_a_browser.py.
"""

import csv
import io

import pytest
import sqlalchemy as sa

from newsletters import apikeys, db, editors, ledger
from newsletters.attribution import campaign, clean_page
from newsletters.mail import worker
from newsletters.models import ConsentEvent, DailyCount, Newsletter, Subscription

ARTICLE = "https://news.example.org/2026/12/05/story?id=7&utm_source=site&utm_campaign=winter#c"
KEPT = "https://news.example.org/2026/12/05/story?utm_source=site&utm_campaign=winter"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0"


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        (ARTICLE, KEPT),
        (
            "https://user:secret@News.Example.org:8443/a?session=x",
            "https://news.example.org:8443/a",
        ),
        ("http://example.com", "http://example.com/"),
        ("http://[2001:db8::1]:8080/a?x=1", "http://[2001:db8::1]:8080/a"),
        ("https://example.com/p?UTM_Medium=mail&utm_content=top", None),
        ("javascript:alert(1)", None),
        ("ftp://example.com/file", None),
        ("not a url", None),
        ("https://example.com/\nline", None),
        ("", None),
    ],
)
def test_a_page_is_kept_without_what_could_identify_the_reader(given, kept):
    if given.startswith("https://example.com/p?"):
        kept = "https://example.com/p?UTM_Medium=mail&utm_content=top"
    assert clean_page(given) == kept


def test_a_very_long_page_keeps_its_site_and_campaign():
    page = clean_page("https://example.com/" + "a" * 3000 + "?utm_campaign=spring")
    assert page == "https://example.com/?utm_campaign=spring"


def test_the_campaign_is_read_from_the_kept_page():
    assert campaign(KEPT).source == "site"
    assert campaign(KEPT).campaign == "winter"
    assert campaign(KEPT).medium is None
    assert campaign(None).campaign is None


def post(client, path, ip="203.0.113.7", **kwargs):
    headers = {"User-Agent": BROWSER} | kwargs.pop("headers", {})
    response = client.post(path, headers=headers, environ_base={"REMOTE_ADDR": ip}, **kwargs)
    assert response.status_code in (200, 202, 303), response.get_data(as_text=True)
    return response


def by_email(session) -> dict[str, Subscription]:
    session.expire_all()
    rows = session.scalars(sa.select(Subscription)).all()
    return {(s.subscriber.email, s.newsletter.slug): s for s in rows}


@pytest.mark.settings(FORM_MIN_FILL_SECONDS=0)
def test_each_entry_point_records_its_form_page_and_campaign(app, client, newsletter, session):
    with app.app_context():
        db.session().add(Newsletter(slug="sport", name="Sport"))
        editor = editors.create(db.session(), "ed@example.org", "a long password", is_admin=True)
        _, key = apikeys.create(db.session(), editor, "cms")
        db.session().commit()
    # The hosted page's form names itself and its page (its own URL, campaign and all).
    post(
        client,
        "/n/briefing/subscribe",
        data={
            "email": "hosted@example.com",
            "form": "hosted",
            "page": "https://news.example.org/n/briefing?utm_source=x&ref=y",
        },
    )
    # SPEC's plain snippet carries neither: its page is the Referer, as far as it goes.
    post(
        client,
        "/n/briefing/subscribe",
        data={"email": "plain@example.com"},
        headers={"Referer": ARTICLE},
    )
    post(client, "/n/briefing/embed", data={"email": "iframe@example.com", "page": ARTICLE})
    post(
        client,
        "/n/briefing/subscribe",
        json={"email": "widget@example.com", "form": "widget", "page": ARTICLE},
    )
    post(
        client,
        "/subscribe",
        data={"email": "several@example.com", "newsletter": ["briefing", "sport"], "page": ARTICLE},
    )
    post(
        client,
        "/api/v1/newsletters/briefing/subscriptions",
        json={"email": "api@example.com", "consent": {"page": ARTICLE}},
        headers={"Authorization": f"Bearer {key}"},
    )
    # A post may not claim to be the iframe, nor anything unknown.
    post(client, "/n/briefing/subscribe", data={"email": "liar@example.com", "form": "iframe"})

    rows = by_email(session)
    assert {email: s.source for (email, slug), s in rows.items() if slug == "briefing"} == {
        "hosted@example.com": "hosted",
        "plain@example.com": "plain",
        "iframe@example.com": "iframe",
        "widget@example.com": "widget",
        "several@example.com": "several",
        "api@example.com": "api",
        "liar@example.com": "plain",
    }
    assert (
        rows["hosted@example.com", "briefing"].page
        == "https://news.example.org/n/briefing?utm_source=x"
    )
    assert rows["hosted@example.com", "briefing"].utm_source == "x"
    for email in ("plain", "iframe", "widget", "several", "api"):
        subscription = rows[f"{email}@example.com", "briefing"]
        assert subscription.page == KEPT, email
        assert (subscription.utm_source, subscription.utm_medium, subscription.utm_campaign) == (
            "site",
            None,
            "winter",
        )
    assert rows["several@example.com", "sport"].page == KEPT
    assert rows["liar@example.com", "briefing"].page is None
    assert rows["plain@example.com", "briefing"].verification == "unverified"
    assert rows["api@example.com", "briefing"].verification is None


def test_the_page_and_verification_are_kept_with_the_consent_evidence(
    app, client, newsletter, session
):
    post(client, "/n/briefing/subscribe", data={"email": "reader@example.com", "page": ARTICLE})
    [event] = session.scalars(sa.select(ConsentEvent)).all()
    assert (event.page, event.verification, event.source) == (KEPT, "unverified", "plain")
    # The page is part of the row's hash: the ledger still verifies, and a change would show.
    with app.app_context():
        checked, breaks = ledger.verify(db.session())
    assert (checked, breaks) == (1, [])
    assert (
        ledger.row_hash(
            {c.name: getattr(event, c.name) for c in ConsentEvent.__table__.columns}
            | {"page": "https://evil.example/"}
        )
        != event.hash
    )


def test_exports_and_the_api_carry_the_page_campaign_and_verification(
    app, client, runner, newsletter, session
):
    post(
        client,
        "/n/briefing/subscribe",
        data={"email": "reader@example.com", "page": "https://x.example/a?utm_campaign=%3D1%2B1"},
    )
    result = runner.invoke(args=["export", "briefing", "--status", "all"])
    [row] = csv.DictReader(io.StringIO(result.output))
    assert row["page"] == "https://x.example/a?utm_campaign=%3D1%2B1"
    # The campaign came from the reader's browser: neutralised against spreadsheet formulas.
    assert row["utm_campaign"] == "'=1+1"
    assert row["verification"] == "unverified"
    assert list(row)[-5:] == ["page", "utm_source", "utm_medium", "utm_campaign", "verification"]
    with app.app_context():
        editor = editors.create(db.session(), "ed@example.org", "a long password", is_admin=True)
        _, key = apikeys.create(db.session(), editor, "crm")
        db.session().commit()
    body = client.get(
        "/api/v1/newsletters/briefing/subscriptions?status=all",
        headers={"Authorization": f"Bearer {key}"},
    ).get_json()
    [subscription] = body["subscriptions"]
    assert subscription["utm_campaign"] == "=1+1"
    assert subscription["verification"] == "unverified"


def views(session) -> dict[tuple[str, str], int]:
    rows = session.execute(
        sa.select(DailyCount.form, DailyCount.page, DailyCount.count).where(
            DailyCount.metric == "view"
        )
    )
    return {(form, page): count for form, page, count in rows}


def test_views_are_counted_per_form_and_page_without_a_cookie(client, newsletter, session):
    answers = [
        client.get("/n/briefing?utm_campaign=winter&fbclid=x"),
        client.get("/n/briefing?utm_campaign=winter"),
        client.get("/n/briefing/embed", headers={"Referer": ARTICLE}),
        client.get(f"/n/briefing/challenge?form=widget&page={ARTICLE.replace('&', '%26')}"),
        # The hosted page's own script asks for a challenge too: not a second view.
        client.get("/n/briefing/challenge?form=hosted"),
        client.get("/"),
    ]
    for answer in answers:
        assert answer.status_code == 200
        assert "Set-Cookie" not in answer.headers
    assert views(session) == {
        ("hosted", "https://news.example.org/n/briefing?utm_campaign=winter"): 2,
        ("iframe", KEPT): 1,
        ("widget", KEPT): 1,
        ("several", "https://news.example.org/"): 1,
    }


def test_a_view_names_no_visitor(client, newsletter, session):
    client.get(
        "/n/briefing",
        environ_base={"REMOTE_ADDR": "203.0.113.9"},
        headers={"User-Agent": "Reader's browser 1.0"},
    )
    columns = {c.name for c in DailyCount.__table__.columns}
    assert columns == {"day", "newsletter_id", "metric", "form", "page", "count"}


def test_the_mail_servers_acceptance_of_the_confirmation_is_recorded(
    app, client, newsletter, session, smtp_server
):
    post(client, "/n/briefing/subscribe", data={"email": "reader@example.com"})
    [subscription] = by_email(session).values()
    assert subscription.mail_accepted_at is None
    app.config["MAIL_URL"] = f"smtp://{smtp_server.host}:{smtp_server.port}"
    with app.app_context():
        worker.run(once=True)
    [subscription] = by_email(session).values()
    assert len(smtp_server.messages) == 1
    assert subscription.mail_accepted_at is not None
    assert subscription.mail_accepted_at >= subscription.optin_at


def test_a_campaign_keeps_printable_text_only():
    assert campaign("https://x.example/?utm_campaign=a%00b%0Ac").campaign == "abc"
    assert campaign("https://x.example/?utm_campaign=%00").campaign is None


def test_a_signup_again_that_mails_nothing_keeps_the_last_mails_acceptance(
    app, client, newsletter, session, smtp_server
):
    post(client, "/n/briefing/subscribe", data={"email": "reader@example.com"})
    app.config["MAIL_URL"] = f"smtp://{smtp_server.host}:{smtp_server.port}"
    with app.app_context():
        worker.run(once=True)
    [accepted] = [s.mail_accepted_at for s in by_email(session).values()]
    # Within CONFIRM_THROTTLE_MINUTES: no second mail, so the first one's acceptance stands.
    post(client, "/n/briefing/subscribe", data={"email": "reader@example.com"})
    [subscription] = by_email(session).values()
    assert len(smtp_server.messages) == 1
    assert subscription.mail_accepted_at == accepted


def test_the_index_counts_a_view_of_its_one_form_for_each_newsletter_it_offers(
    app, client, newsletter, session
):
    with app.app_context():
        db.session().add(Newsletter(slug="sport", name="Sport"))
        db.session().commit()
    client.get("/")
    rows = session.execute(
        sa.select(Newsletter.slug, DailyCount.form, DailyCount.count)
        .join(Newsletter, Newsletter.id == DailyCount.newsletter_id)
        .where(DailyCount.metric == "view")
    ).all()
    assert sorted(rows) == [
        ("briefing", "several", 1),
        ("sport", "several", 1),
    ]
