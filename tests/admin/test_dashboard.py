"""The dashboard: counts per status, the confirmation rate and the per-day chart."""

import re
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from newsletters import db, stats
from newsletters.models import Newsletter, Status, Subscriber, Subscription

from .conftest import login

DASHBOARD = "/admin/n/briefing/"


def at(day: date, hour=12, minute=0, second=0, tz=UTC) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=tz)


def add(session, slug, email, status, **dates) -> None:
    """Add a subscription of ``email`` to ``slug`` with the given timestamps."""
    newsletter = session.scalar(sa.select(Newsletter).where(Newsletter.slug == slug))
    session.add(
        Subscription(
            newsletter=newsletter, subscriber=Subscriber(email=email), status=status, **dates
        )
    )
    session.commit()


def numbers(app, slug, today):
    """Return the per-day series and the confirmation rate of ``slug`` up to ``today``."""
    with app.app_context():
        session = db.session()
        newsletter = session.scalar(sa.select(Newsletter).where(Newsletter.slug == slug))
        days = stats.period(today=today)
        return stats.daily(session, newsletter, days), stats.confirmation_rate(
            session, newsletter, days
        )


@pytest.fixture
def editor(make_editor, client, newsletter):
    make_editor("editor@example.org", "briefing")
    login(client, "editor@example.org")


def test_daily_series_count_each_event_on_its_utc_day_and_fill_other_days_with_zero(
    app, session, newsletter, other_newsletter
):
    today = date(2025, 3, 31)
    mar30, jan1 = date(2025, 3, 30), date(2025, 1, 1)
    # Either side of midnight: the signup on the 30th, its confirmation on the 31st.
    add(
        session,
        "briefing",
        "a@x.org",
        Status.CONFIRMED,
        optin_at=at(mar30, 23, 59, 59),
        confirmed_at=at(today, 0, 0, 0),
    )
    add(
        session,
        "briefing",
        "b@x.org",
        Status.UNSUBSCRIBED,
        optin_at=at(mar30, 8),
        confirmed_at=at(mar30, 9),
        unsubscribed_at=at(today, 10),
    )
    # 01:30 in UTC+2 is 23:30 UTC the day before.
    add(
        session,
        "briefing",
        "c@x.org",
        Status.PENDING,
        optin_at=at(today, 1, 30, tz=timezone(timedelta(hours=2))),
    )
    add(session, "briefing", "first-day@x.org", Status.PENDING, optin_at=at(jan1, 0, 0, 0))
    # Signed up the second before the period, confirmed within it.
    add(
        session,
        "briefing",
        "before@x.org",
        Status.CONFIRMED,
        optin_at=at(date(2024, 12, 31), 23, 59, 59),
        confirmed_at=at(date(2025, 1, 2)),
    )
    add(session, "briefing", "after@x.org", Status.PENDING, optin_at=at(date(2025, 4, 1), 0))
    add(session, "briefing", "imported@x.org", Status.CONFIRMED)
    add(
        session,
        "other",
        "elsewhere@x.org",
        Status.CONFIRMED,
        optin_at=at(mar30),
        confirmed_at=at(mar30),
    )

    series, rate = numbers(app, "briefing", today)

    assert len(series) == 90
    assert (series[0].day, series[-1].day) == (jan1, today)
    nonzero = {
        d.day: (d.signups, d.confirmations, d.unsubscribes)
        for d in series
        if d.signups or d.confirmations or d.unsubscribes
    }
    assert nonzero == {
        jan1: (1, 0, 0),
        date(2025, 1, 2): (0, 1, 0),
        mar30: (3, 1, 0),
        today: (0, 1, 1),
    }
    # a, b, c and first-day signed up in the period; a and b confirmed (b has left since).
    assert (rate.signups, rate.confirmed) == (4, 2)
    assert rate.percent == 50


def test_counts_and_rate_of_a_newsletter_without_subscribers_are_zero(app, newsletter):
    series, rate = numbers(app, "briefing", date(2025, 3, 31))

    assert all(d.signups == d.confirmations == d.unsubscribes == 0 for d in series)
    assert rate.percent is None


def test_chart_scales_to_a_round_top_and_draws_a_point_per_day():
    days = [stats.Day(date(2025, 1, 1) + timedelta(days=n)) for n in range(90)]
    days[10] = stats.Day(days[10].day, signups=7, confirmations=3)

    chart = stats.chart(days)

    assert [t.label for t in chart.y_ticks] == ["0", "2", "4", "6", "8"]
    signups = [tuple(map(float, p.split(","))) for p in chart.lines[0].points.split()]
    assert len(signups) == 90
    assert signups[0][0] == chart.left and signups[-1][0] == chart.right
    top_of_axis = chart.y_ticks[-1].at
    assert signups[10][1] == pytest.approx(chart.bottom - (chart.bottom - top_of_axis) * 7 / 8)
    assert chart.x_ticks[-1].label == "Mar 31"


def test_dashboard_shows_counts_rate_chart_and_export_links(client, session, editor):
    today = datetime.now(UTC).date()
    yesterday = today - timedelta(days=1)
    add(
        session,
        "briefing",
        "a@x.org",
        Status.CONFIRMED,
        optin_at=at(yesterday),
        confirmed_at=at(today, 0),
    )
    add(session, "briefing", "b@x.org", Status.PENDING, optin_at=at(yesterday))
    add(session, "briefing", "c@x.org", Status.PENDING, optin_at=at(yesterday))
    add(
        session,
        "briefing",
        "d@x.org",
        Status.UNSUBSCRIBED,
        optin_at=at(today - timedelta(days=200)),
        unsubscribed_at=at(today, 0),
    )

    response = client.get(DASHBOARD)

    assert response.status_code == 200
    page = response.get_data(as_text=True)
    counts = dict(
        (status, int(n))
        for n, status in re.findall(r"<b>(\d+)</b> (pending|confirmed|unsubscribed)</a>", page)
    )
    assert counts == {"pending": 2, "confirmed": 1, "unsubscribed": 1}
    assert "<b>33 %</b> confirmation rate" in page
    svg = page[page.index("<svg") : page.index("</svg>")]
    assert 'role="img"' in svg
    assert re.search(r"<title id=\"chart-title\">Signups, confirmations and unsubscribes", svg)
    assert svg.count("<polyline") == 3
    for label in ("Signups", "Confirmations", "Unsubscribes", "Day (UTC)"):
        assert f">{label}</text>" in svg
    assert "3 signups, 1 confirmations, 1 unsubscribes" in svg
    assert f'<th scope="row">{yesterday.isoformat()}</th><td>3</td><td>0</td><td>0</td>' in page
    assert f'<th scope="row">{today.isoformat()}</th><td>0</td><td>1</td><td>1</td>' in page
    for status in ("confirmed", "pending", "unsubscribed", "all"):
        for fmt in ("csv", "jsonl"):
            assert f'href="/admin/n/briefing/export?status={status}&amp;format={fmt}"' in page
    assert "cdn" not in page.lower() and "<script" not in page


def test_dashboard_of_an_empty_newsletter_shows_zeros_and_no_rate(client, editor):
    page = client.get(DASHBOARD).get_data(as_text=True)

    assert "<b>—</b> confirmation rate" in page
    assert "<b>0</b> confirmed</a>" in page
    assert "<svg" in page


def test_dashboard_is_only_for_editors_of_the_newsletter(
    client, make_editor, newsletter, other_newsletter
):
    assert client.get(DASHBOARD).headers["Location"].startswith("/admin/login")
    make_editor("outsider@example.org", "other")
    login(client, "outsider@example.org")

    assert client.get(DASHBOARD).status_code == 403
    assert client.get("/admin/n/other/").status_code == 200
