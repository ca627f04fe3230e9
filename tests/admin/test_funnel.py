"""The signup funnel: views, signups, accepted mails and confirmations per form, page, campaign.

The scenario goes through the real routes: views counted by GETs of the hosted page, the
iframe and the widget's challenge; signups posted to the hosted, iframe, widget and plain
forms and the API; mails sent by the worker (file transport); confirmations through the
confirmation link. Only the confirmation times are set by hand afterwards, so that the
medians are exact numbers, and a few counts of other days are inserted directly.
"""

import csv
import io
import re
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from newsletters import apikeys, db, funnel, tokens
from newsletters.models import (
    DailyCount,
    Editor,
    Newsletter,
    Subscriber,
    Subscription,
    Token,
    TokenPurpose,
)

from .conftest import login

FUNNEL = "/admin/n/briefing/funnel"
# The hosted page as it names itself: at BASE_URL.
HOSTED = "https://news.example.org/n/briefing"
ARTICLE = "https://news.example.org/a/1?utm_campaign=spring&utm_source=mail"
BLOG = "https://blog.example.com/b"
AUTUMN = "https://blog.example.com/c?utm_campaign=autumn"
SHOP = "https://shop.example.net/x?utm_campaign=%3DSUM%281%29"
# How long each confirmed signup took to confirm, in seconds (set after the real confirm).
TOOK = {"a@example.com": 60, "c@example.com": 120, "d@example.com": 600, "e@example.com": 3660}


def post(client, path, headers=None, **fields):
    response = client.post(path, data=fields, headers=headers or {})
    assert response.status_code in (200, 303), response.get_data(as_text=True)


def confirm(app, client, session, email):
    """Confirm ``email``'s signup through its link, as the reader of its mail would."""
    token = session.scalar(
        sa.select(Token)
        .join(Subscriber)
        .where(Subscriber.email == email, Token.purpose == TokenPurpose.CONFIRM)
    )
    with app.app_context():
        secret = tokens.secret_for(token)
    assert client.post(f"/confirm/{secret}").status_code == 200


def api_key(app) -> str:
    with app.app_context():
        session = db.session()
        editor = session.scalar(sa.select(Editor).where(Editor.email == "editor@example.org"))
        _, key = apikeys.create(session, editor, "tests")
        session.commit()
    return key


@pytest.fixture
def editor(make_editor, client, newsletter, other_newsletter):
    make_editor("editor@example.org", "briefing")
    login(client, "editor@example.org")


@pytest.fixture
def scenario(app, client, runner, session, editor):
    """Views, signups, stops, mails and confirmations of 'briefing' today (see the docstring)."""
    # Views: 3 of the hosted page, 5 of the iframe, 8 of the widget (1 on a page unknown).
    for _ in range(3):
        assert client.get("/n/briefing").status_code == 200
    for _ in range(4):
        referer = ARTICLE + "&fbclid=someone"
        assert client.get("/n/briefing/embed", headers={"Referer": referer}).status_code == 200
    assert client.get(f"/n/briefing/embed?page={BLOG}").status_code == 200
    for page in [BLOG] * 5 + [AUTUMN] * 2 + [""]:
        assert client.get(f"/n/briefing/challenge?form=widget&page={page}").status_code == 200
    # Another newsletter's view counts for it alone.
    assert client.get("/n/other").status_code == 200

    # Signups: 2 hosted, 2 iframe, 1 widget, then mails go out; then 1 plain and 1 API.
    post(client, "/n/briefing/subscribe", email="a@example.com", form="hosted", page=HOSTED)
    post(client, "/n/briefing/subscribe", email="b@example.com", form="hosted", page=HOSTED)
    post(client, "/n/briefing/embed", email="c@example.com", page=ARTICLE)
    post(client, "/n/briefing/embed", email="d@example.com", page=ARTICLE)
    post(client, "/n/briefing/subscribe", email="e@example.com", form="widget", page=BLOG)
    sent = runner.invoke(args=["worker", "--once"])
    assert sent.exit_code == 0, sent.output
    post(client, "/n/briefing/subscribe", email="f@example.com", headers={"Referer": SHOP})
    response = client.post(
        "/api/v1/newsletters/briefing/subscriptions",
        headers={"Authorization": f"Bearer {api_key(app)}"},
        json={"email": "g@example.com"},
    )
    assert response.status_code == 202, response.get_data(as_text=True)

    # Stopped: 2 by the honeypot, 1 by an automation user agent; none of them stored.
    for address in ("bot1@example.com", "bot2@example.com"):
        post(client, "/n/briefing/subscribe", email=address, website="x", form="widget", page=BLOG)
    post(
        client, "/n/briefing/subscribe", email="bot3@example.com", headers={"User-Agent": "curl/8"}
    )

    for email in TOOK:
        confirm(app, client, session, email)
    session.expire_all()
    for subscription in session.scalars(sa.select(Subscription).join(Subscriber)):
        took = TOOK.get(subscription.subscriber.email)
        if took is not None:
            subscription.confirmed_at = subscription.optin_at + timedelta(seconds=took)
    # Counts of other days, as counters.py writes them.
    today = datetime.now(UTC).date()
    briefing = session.scalar(sa.select(Newsletter.id).where(Newsletter.slug == "briefing"))
    session.add_all(
        [
            DailyCount(
                day=today - timedelta(days=10),
                newsletter_id=briefing,
                metric="view",
                form="hosted",
                page=HOSTED,
                count=100,
            ),
            DailyCount(
                day=today - timedelta(days=400),
                newsletter_id=briefing,
                metric="view",
                form="hosted",
                page=HOSTED,
                count=1000,
            ),
            DailyCount(
                day=today - timedelta(days=3),
                newsletter_id=briefing,
                metric="stopped:replay",
                form="iframe",
                page="",
                count=5,
            ),
        ]
    )
    session.commit()
    return today


def measured(app, days=7):
    with app.app_context():
        session = db.session()
        newsletter = session.scalar(sa.select(Newsletter).where(Newsletter.slug == "briefing"))
        return funnel.measure(session, newsletter, days)


def numbers(row) -> tuple:
    return row.views, row.signups, row.accepted, row.confirmed, row.median_seconds


def test_the_funnel_counts_each_step_per_form_with_rates_and_median(app, session, scenario):
    result = measured(app)

    # Views of the three forms that show one; signups of every form; of the signups, the mails
    # the worker handed over (not f's and g's, made after it ran) and the confirmations.
    assert {row.key[0]: numbers(row) for row in result.forms} == {
        "hosted": (3, 2, 2, 1, 60),
        "iframe": (5, 2, 2, 2, 360),
        "widget": (8, 1, 1, 1, 3660),
        "plain": (0, 1, 0, 0, None),
        "api": (0, 1, 0, 0, None),
    }
    assert [row.key[0] for row in result.forms] == ["hosted", "iframe", "widget", "plain", "api"]
    # 4 confirmed of 7: 60, 120, 600 and 3660 seconds, so the median is between 120 and 600.
    assert numbers(result.total) == (16, 7, 5, 4, 360)
    assert result.total.median == timedelta(minutes=6)
    hosted, iframe, *_, plain, api = result.forms
    assert hosted.signup_rate == pytest.approx(2 / 3)
    assert hosted.confirm_rate == 0.5
    assert iframe.confirm_rate == 1
    assert plain.signup_rate is None and api.signup_rate is None
    assert plain.confirm_rate == 0

    # 30 days take in the hosted page's views of ten days ago; 365 days not those of 400.
    assert measured(app, 30).total.views == 116
    assert measured(app, 365).total.views == 116


def test_top_pages_fold_the_rest_and_keep_the_unknown_page_apart(app, scenario):
    with app.app_context():
        session = db.session()
        briefing = session.scalar(sa.select(Newsletter).where(Newsletter.slug == "briefing"))
        days = funnel.period(7)
        every = funnel.top_pages(session, briefing, days)
        top_two = funnel.top_pages(session, briefing, days, top=2)

    assert [(row.kind, row.key, numbers(row)) for row in every] == [
        (funnel.NAMED, (ARTICLE,), (4, 2, 2, 2, 360)),
        (funnel.NAMED, (HOSTED,), (3, 2, 2, 1, 60)),
        (funnel.NAMED, (BLOG,), (6, 1, 1, 1, 3660)),
        (
            funnel.NAMED,
            ("https://shop.example.net/x?utm_campaign=%3DSUM%281%29",),
            (0, 1, 0, 0, None),
        ),
        (funnel.NAMED, (AUTUMN,), (2, 0, 0, 0, None)),
        # The widget shown on a page that said nothing, and the API's signup.
        (funnel.NONE, ("",), (1, 1, 0, 0, None)),
    ]
    assert [(row.kind, row.key, numbers(row)) for row in top_two] == [
        (funnel.NAMED, (ARTICLE,), (4, 2, 2, 2, 360)),
        (funnel.NAMED, (HOSTED,), (3, 2, 2, 1, 60)),
        (funnel.OTHER, ("",), (8, 2, 1, 1, 3660)),
        (funnel.NONE, ("",), (1, 1, 0, 0, None)),
    ]


def test_campaigns_count_the_views_of_their_tagged_pages(app, scenario):
    result = measured(app)

    assert [(row.kind, row.key, numbers(row)) for row in result.campaigns] == [
        (funnel.NAMED, ("spring", "mail", ""), (4, 2, 2, 2, 360)),
        (funnel.NAMED, ("=SUM(1)", "", ""), (0, 1, 0, 0, None)),
        # Seen, never signed up from: named all the same while there is room.
        (funnel.NAMED, ("autumn", "", ""), (2, 0, 0, 0, None)),
        (funnel.NONE, ("", "", ""), (10, 4, 3, 2, 1860)),
    ]


def test_stopped_signups_are_counted_per_day_and_defence(app, scenario):
    result = measured(app)

    today, three_days_ago = scenario, scenario - timedelta(days=3)
    assert [(d.day, d.by_defence) for d in result.stopped] == [
        (today, dict.fromkeys(result.defences, 0) | {"honeypot": 2, "automation": 1}),
        (three_days_ago, dict.fromkeys(result.defences, 0) | {"replay": 5}),
    ]
    assert result.defences[:6] == [
        "honeypot",
        "automation",
        "too_fast",
        "forged",
        "proof",
        "replay",
    ]
    assert [d.total for d in result.stopped] == [3, 5]


def cells(page: str, heading: str) -> str:
    """Return the table of the section ``heading`` on ``page``, tags out, one row a line."""
    section = page[page.index(f">{heading}</h3>") :]
    table = section[: section.index("</table>")]
    rows = re.findall(r"<tr>(.*?)</tr>", table, re.S)
    return "\n".join(
        " | ".join(
            re.sub(r"<[^>]+>", "", c).strip()
            for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)
        )
        for row in rows
    )


def test_the_page_shows_the_funnel_chart_tables_and_downloads(client, scenario):
    response = client.get(f"{FUNNEL}?days=7")

    assert response.status_code == 200
    page = response.get_data(as_text=True)
    forms = cells(page, "By form")
    assert "hosted page | 3 | 2 | 2 | 1 | 66.7% | 50% | 1 minute" in forms
    assert "iframe | 5 | 2 | 2 | 2 | 40% | 100% | 6 minutes" in forms
    assert "plain HTML form | 0 | 1 | 0 | 0 | — | 0% | —" in forms
    assert "All forms | 16 | 7 | 5 | 4 | 43.8% | 57.1% | 6 minutes" in forms
    shown = ARTICLE.removeprefix("https://").replace("&", "&amp;")
    assert f"{shown} | 4 | 2 | 2 | 2 | 50% | 100% | 6 minutes" in cells(page, "Top pages")
    assert "Page not known | 1 | 1 | 0 | 0 | 100% | 0% | —" in cells(page, "Top pages")
    assert "spring | mail | — | 4 | 2" in cells(page, "Top campaigns")
    assert "No campaign | 10 | 4 | 3 | 2 | 40% | 50% | 31 minutes" in cells(page, "Top campaigns")
    stopped = cells(page, "Signups stopped by the bot defences")
    assert f"{scenario.isoformat()} | 3 | 2 | 1 | 0 | 0 | 0 | 0" in stopped
    assert "Total | 8 | 2 | 1 | 0 | 0 | 0 | 5" in stopped
    svg = page[page.index("<svg") : page.index("</svg>")]
    assert 'viewBox="0 0 400 ' in svg and 'role="img"' in svg
    assert svg.count("<rect") == 5 * 4
    assert 'aria-current="page">7 days</a>' in page
    for by in ("form", "page", "campaign"):
        assert f'href="/admin/n/briefing/funnel.csv?days=7&amp;by={by}"' in page
    assert "<script" not in page


@pytest.mark.parametrize("days", [None, 7, 30, 90, 365])
def test_the_page_renders_at_every_period(client, scenario, days):
    query = f"?days={days}" if days else ""
    response = client.get(FUNNEL + query)

    assert response.status_code == 200
    assert f'aria-current="page">{days or 30} days</a>' in response.get_data(as_text=True)


def test_an_empty_funnel_says_so_with_dashes(client, editor):
    page = client.get(FUNNEL).get_data(as_text=True)

    assert "No form was viewed and nobody signed up in this period." in page
    assert "No signup was stopped in this period." in page
    assert "<b>—</b> Median time to confirm" in page
    assert "<svg" not in page


def read_csv(client, by, days=7):
    # Closed as a server closes it: the stream's request (and its transaction) ends there.
    with client.get(f"{FUNNEL}.csv?days={days}&by={by}") as response:
        assert response.status_code == 200
        assert response.mimetype == "text/csv"
        return response, list(csv.reader(io.StringIO(response.get_data(as_text=True))))


def test_the_csv_has_every_group_formula_safe(client, scenario):
    response, rows = read_csv(client, "form")
    assert re.fullmatch(
        r'attachment; filename="briefing-funnel-by-form-\d{4}-\d\d-\d\d-to-\d{4}-\d\d-\d\d\.csv"',
        response.headers["Content-Disposition"],
    )
    steps = funnel.CSV_COLUMNS
    assert rows[0] == ["form", *steps]
    assert rows[1] == ["hosted", "3", "2", "2", "1", "0.6667", "0.5000", "60"]
    assert rows[4] == ["plain", "0", "1", "0", "0", "", "0.0000", ""]

    _, rows = read_csv(client, "page")
    assert rows[0] == ["page", *steps]
    # Most signups first, then most views: the page unknown among them, as an empty cell.
    assert [row[0] for row in rows[1:]] == [ARTICLE, HOSTED, BLOG, "", SHOP, AUTUMN]
    assert rows[4] == ["", "1", "1", "0", "0", "1.0000", "0.0000", ""]

    _, rows = read_csv(client, "campaign")
    assert rows[0] == ["utm_campaign", "utm_source", "utm_medium", *steps]
    assert rows[1:] == [
        ["", "", "", "10", "4", "3", "2", "0.4000", "0.5000", "1860"],
        ["spring", "mail", "", "4", "2", "2", "2", "0.5000", "1.0000", "360"],
        # A campaign a spreadsheet would run as a formula: defused.
        ["'=SUM(1)", "", "", "0", "1", "0", "0", "", "0.0000", ""],
        ["autumn", "", "", "2", "0", "0", "0", "0.0000", "", ""],
    ]


def test_the_funnel_is_only_for_editors_of_the_newsletter(
    client, make_editor, newsletter, other_newsletter
):
    assert client.get(FUNNEL).headers["Location"].startswith("/admin/login")
    make_editor("outsider@example.org", "other")
    login(client, "outsider@example.org")

    assert client.get(FUNNEL).status_code == 403
    assert client.get(f"{FUNNEL}.csv?by=page").status_code == 403
    assert client.get("/admin/n/other/funnel").status_code == 200


@pytest.mark.parametrize("days", ["14", "", "seven", "7.0", "%EF%BC%97", "-7", "0"])
def test_a_period_of_its_own_is_refused(client, editor, days):
    for path in (FUNNEL, f"{FUNNEL}.csv"):
        response = client.get(f"{path}?days={days}")
        assert response.status_code == 400, path
        assert "days must be one of: 7, 30, 90, 365." in response.get_data(as_text=True)


def test_a_grouping_of_its_own_is_refused(client, editor):
    response = client.get(f"{FUNNEL}.csv?by=day")

    assert response.status_code == 400
    assert "by must be one of: form, page, campaign." in response.get_data(as_text=True)


def test_the_dashboard_links_to_the_funnel(client, editor):
    page = client.get("/admin/n/briefing/").get_data(as_text=True)

    assert '<a href="/admin/n/briefing/funnel">Signup funnel</a>' in page


def test_older_and_imported_sources_count_under_the_form_they_were(app, session, editor):
    """Before 2026-12 "embed" was the iframe and "form" any other form; an imported file's
    own label is an import. An imported row confirmed before its opt-in has no duration."""
    briefing = session.scalar(sa.select(Newsletter).where(Newsletter.slug == "briefing"))
    now = datetime.now(UTC)
    rows = [
        ("old-frame@example.com", "embed", 30),
        ("old-form@example.com", "form", 90),
        ("listed@example.com", "import:legacy-list", -600),
        ("api@example.com", "api", None),
    ]
    for email, source, took in rows:
        optin = now - timedelta(hours=1)
        session.add(
            Subscription(
                newsletter=briefing,
                subscriber=Subscriber(email=email),
                source=source,
                optin_at=optin,
                confirmed_at=None if took is None else optin + timedelta(seconds=took),
            )
        )
    session.commit()

    result = measured(app)

    assert {row.key[0]: numbers(row) for row in result.forms} == {
        "iframe": (0, 1, 0, 1, 30),
        "api": (0, 1, 0, 0, None),
        "import": (0, 1, 0, 1, None),
        "form": (0, 1, 0, 1, 90),
    }
    assert [row.key[0] for row in result.forms] == ["iframe", "api", "import", "form"]
    assert numbers(result.total) == (0, 4, 0, 3, 60)


def test_the_page_speaks_ukrainian_with_its_numbers(client, scenario):
    menu = client.get(FUNNEL).get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', menu).group(1)
    client.post("/admin/language", data={"language": "uk", "csrf_token": token})
    page = client.get(f"{FUNNEL}?days=7").get_data(as_text=True)

    assert "Воронка підписок" in page
    forms = cells(page, "За формою")
    assert "власна сторінка розсилки | 3 | 2 | 2 | 1 | 66,7% | 50% | 1 хвилина" in forms
    assert 'aria-current="page">7 днів</a>' in page
    assert "Разом | 8 | 2 | 1 | 0 | 0 | 0 | 5" in cells(
        page, "Підписки, зупинені захистом від ботів"
    )


def test_the_subscribers_page_names_the_form_as_the_funnel_does(client, session, editor):
    """One list of the forms' words (admin/_macros.html) for the funnel and each subscriber."""
    client.post(
        "/n/briefing/subscribe",
        data={"email": "plain@example.com"},
        headers={"User-Agent": "Mozilla/5.0 Chrome/131.0"},
    )
    subscription = session.scalar(sa.select(Subscription))
    assert subscription.source == "plain"
    page = client.get(f"/admin/n/briefing/subscribers/{subscription.id}").get_data(as_text=True)
    assert "plain HTML form" in page
