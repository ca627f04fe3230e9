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


def numbers(app, slug, today, period=90):
    """Return the series and the confirmation rate of ``slug``'s ``period`` up to ``today``."""
    with app.app_context():
        session = db.session()
        newsletter = session.scalar(sa.select(Newsletter).where(Newsletter.slug == slug))
        days = stats.shown_days(session, newsletter, period, today=today)
        return stats.series(session, newsletter, days, period), stats.confirmation_rate(
            session, newsletter, days
        )


def nonzero(series) -> dict:
    """Return the (first, last) days of each point that counts something, with its counts."""
    return {
        (p.first, p.last): (p.signups, p.confirmations, p.unsubscribes)
        for p in series.points
        if p.signups or p.confirmations or p.unsubscribes
    }


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

    assert (series.step, len(series.points), series.days) == ("day", 90, 90)
    assert (series.first, series.last) == (jan1, today)
    jan2 = date(2025, 1, 2)
    assert nonzero(series) == {
        (jan1, jan1): (1, 0, 0),
        (jan2, jan2): (0, 1, 0),
        (mar30, mar30): (3, 1, 0),
        (today, today): (0, 1, 1),
    }
    # a, b, c and first-day signed up in the period; a and b confirmed (b has left since).
    assert (rate.signups, rate.confirmed) == (4, 2)
    assert rate.percent == 50


def test_counts_and_rate_of_a_newsletter_without_subscribers_are_zero(app, newsletter):
    series, rate = numbers(app, "briefing", date(2025, 3, 31))

    assert series.points == [] and series.first is None
    assert rate.percent is None


def test_a_period_starts_on_the_first_signup_when_the_newsletter_is_younger(
    app, session, newsletter
):
    today = date(2025, 3, 31)
    twelve_days_ago = today - timedelta(days=11)
    add(session, "briefing", "first@x.org", Status.PENDING, optin_at=at(twelve_days_ago, 0, 0, 1))
    add(
        session,
        "briefing",
        "second@x.org",
        Status.CONFIRMED,
        optin_at=at(today - timedelta(days=3)),
        confirmed_at=at(today),
    )

    for period in (30, 90, 365):
        series, rate = numbers(app, "briefing", today, period)

        assert (series.period, series.step) == (period, "day")
        assert (len(series.points), series.first, series.last) == (12, twelve_days_ago, today)
        assert [p.first for p in series.points] == [
            twelve_days_ago + timedelta(days=n) for n in range(12)
        ]
        assert nonzero(series) == {
            (twelve_days_ago, twelve_days_ago): (1, 0, 0),
            (date(2025, 3, 28), date(2025, 3, 28)): (1, 0, 0),
            (today, today): (0, 1, 0),
        }
        assert (rate.signups, rate.confirmed) == (2, 1)


def test_a_period_after_quiet_months_shows_all_its_days(app, session, newsletter):
    """Data before the period: the period is shown whole, even where it is all zeros."""
    today = date(2025, 3, 31)
    add(session, "briefing", "old@x.org", Status.PENDING, optin_at=at(date(2024, 9, 1)))
    # An event of another kind can be the first: an unsubscribe imported from long ago.
    add(
        session, "briefing", "left@x.org", Status.UNSUBSCRIBED, unsubscribed_at=at(date(2020, 1, 1))
    )

    series, rate = numbers(app, "briefing", today, 30)

    assert (len(series.points), series.first, series.last) == (30, date(2025, 3, 2), today)
    assert nonzero(series) == {}
    assert (rate.signups, rate.percent) == (0, None)


def test_a_long_span_is_counted_per_seven_days_back_from_today(app, session, newsletter):
    today = date(2025, 3, 31)
    first = date(2024, 6, 5)  # 299 days before today: its week is cut to 5 to 10 June
    events = [
        ("first@x.org", at(first, 0, 0, 0)),
        ("week-end@x.org", at(date(2024, 6, 10), 23, 59, 59)),
        ("next-week@x.org", at(date(2024, 6, 11), 0, 0, 0)),
        # Across the new year: 31 December to 6 January is one week.
        ("new-year-eve@x.org", at(date(2024, 12, 31), 0, 0, 0)),
        ("new-year@x.org", at(date(2025, 1, 6), 23)),
        ("day-before-the-last-week@x.org", at(date(2025, 3, 24), 23, 59, 59)),
        ("last-week@x.org", at(date(2025, 3, 25), 0, 0, 0)),
        ("today@x.org", at(today, 8)),
    ]
    for email, moment in events:
        add(session, "briefing", email, Status.PENDING, optin_at=moment)
    add(
        session,
        "briefing",
        "confirmed@x.org",
        Status.CONFIRMED,
        optin_at=at(date(2025, 1, 1)),
        confirmed_at=at(date(2025, 1, 7)),
    )

    series, rate = numbers(app, "briefing", today, 365)

    assert series.step == "week"
    # 300 days: a first week of six days, then 42 of seven, the last ending today.
    assert (len(series.points), series.first, series.last, series.days) == (43, first, today, 300)
    assert [p.days for p in series.points] == [6] + [7] * 42
    assert nonzero(series) == {
        (first, date(2024, 6, 10)): (2, 0, 0),
        (date(2024, 6, 11), date(2024, 6, 17)): (1, 0, 0),
        (date(2024, 12, 31), date(2025, 1, 6)): (3, 0, 0),
        (date(2025, 1, 7), date(2025, 1, 13)): (0, 1, 0),
        (date(2025, 3, 18), date(2025, 3, 24)): (1, 0, 0),
        (date(2025, 3, 25), today): (2, 0, 0),
    }
    assert series.total("signups") == 9
    assert (rate.signups, rate.confirmed) == (9, 1)
    # A week is labelled with its last day: the chart ends on today.
    with app.test_request_context():
        labels = [t.label for t in stats.chart(series.points).x_ticks]
    assert (labels[0], labels[-1]) == ("Jun 10", "Mar 31")


def test_a_year_of_data_fills_53_weeks_and_a_quarter_stays_per_day(app, session, newsletter):
    today = date(2025, 3, 31)
    add(session, "briefing", "veteran@x.org", Status.PENDING, optin_at=at(date(2023, 5, 1)))
    # The first day of the 53 weeks (371 days), and the day before it, left out.
    add(session, "briefing", "in@x.org", Status.PENDING, optin_at=at(date(2024, 3, 26), 0))
    add(session, "briefing", "out@x.org", Status.PENDING, optin_at=at(date(2024, 3, 25), 23))

    year, year_rate = numbers(app, "briefing", today, 365)
    quarter, _rate = numbers(app, "briefing", today, 90)

    assert (year.step, len(year.points), year.first, year.days) == (
        "week",
        53,
        date(2024, 3, 26),
        371,
    )
    assert nonzero(year) == {(date(2024, 3, 26), date(2024, 4, 1)): (1, 0, 0)}
    assert year_rate.signups == 1
    assert (quarter.step, len(quarter.points), quarter.first) == ("day", 90, date(2025, 1, 1))


def test_chart_scales_to_a_round_top_with_a_few_labels_that_stay_inside():
    points = [
        stats.Point(date(2025, 1, 1) + timedelta(days=n), date(2025, 1, 1) + timedelta(days=n))
        for n in range(90)
    ]
    points[10] = stats.Point(points[10].first, points[10].last, signups=7, confirmations=3)

    chart = stats.chart(points)

    assert [t.label for t in chart.y_ticks] == ["0", "2", "4", "6", "8"]
    # The labels of the count axis stand in the plot area, "0" on its bottom line.
    assert chart.y_ticks[0].at == pytest.approx(chart.bottom)
    assert chart.y_ticks[-1].at == pytest.approx(chart.top)
    signups = [tuple(map(float, p.split(","))) for p in chart.lines[0].points.split()]
    assert len(signups) == 90
    assert (signups[0][0], signups[-1][0]) == (0, 1000)
    assert signups[10][1] == pytest.approx(1000 - 1000 * 7 / 8)
    assert chart.lines[0].dots == []
    assert [(t.label, t.at, t.anchor) for t in chart.x_ticks] == [
        ("Jan 1", 0, "start"),
        ("Jan 31", pytest.approx(100 * 30 / 89), "middle"),
        ("Mar 1", pytest.approx(100 * 59 / 89), "middle"),
        ("Mar 31", 100, "end"),
    ]


def test_chart_of_one_day_draws_a_dot_in_the_middle():
    chart = stats.chart([stats.Point(date(2025, 3, 31), date(2025, 3, 31), signups=1)])

    assert chart.lines[0].dots == [(500.0, 0.0)]
    assert [(t.label, t.at, t.anchor) for t in chart.x_ticks] == [("Mar 31", 50, "middle")]


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
    assert '<a href="/admin/n/briefing/?days=90" aria-current="page">90 days</a>' in page
    svg = page[page.index("<svg") : page.rindex("</svg>")]
    assert 'role="img"' in svg and 'width="100%"' in svg
    assert 'viewBox="0 0 1000 1000" preserveAspectRatio="none"' in svg
    assert re.search(
        r"<title id=\"chart-title\">Signups, confirmations and unsubscribes per day", svg
    )
    assert svg.count("<polyline") == 3
    assert "Over these 90 days: 3 signups, 1 confirmations, 1 unsubscribes." in svg
    for label in ("Signups", "Confirmations", "Unsubscribes"):
        assert f"</span>{label}</li>" in page
    row = '<th scope="row">{}</th>' + '<td class="num">{}</td>' * 3
    assert row.format(yesterday.isoformat(), 3, 0, 0) in page
    assert row.format(today.isoformat(), 0, 1, 1) in page
    for status in ("confirmed", "pending", "unsubscribed", "all"):
        for fmt in ("csv", "jsonl"):
            assert f'href="/admin/n/briefing/export?status={status}&amp;format={fmt}"' in page
    assert "cdn" not in page.lower() and "<script" not in page


def test_dashboard_of_a_year_shows_weeks_in_its_table(client, session, editor):
    today = datetime.now(UTC).date()
    add(session, "briefing", "a@x.org", Status.PENDING, optin_at=at(today - timedelta(days=400)))
    add(session, "briefing", "b@x.org", Status.PENDING, optin_at=at(today - timedelta(days=6)))

    page = client.get(DASHBOARD + "?days=365").get_data(as_text=True)

    assert '<a href="/admin/n/briefing/?days=365" aria-current="page">365 days</a>' in page
    assert "Signups, confirmations and unsubscribes per week" in page
    assert "The numbers per week" in page
    last_week = f"{(today - timedelta(days=6)).isoformat()} – {today.isoformat()}"
    assert f'<th scope="row">{last_week}</th><td class="num">1</td>' in page


def test_dashboard_of_a_young_newsletter_says_where_its_chart_starts(client, session, editor):
    today = datetime.now(UTC).date()
    add(session, "briefing", "a@x.org", Status.PENDING, optin_at=at(today - timedelta(days=11)))

    page = client.get(DASHBOARD + "?days=30").get_data(as_text=True)

    assert page.count('<th scope="row">') == 12 + len(
        ("confirmed", "pending", "unsubscribed", "all")
    )
    assert "the chart starts there" in page
    assert "Over these 12 days: 1 signups" in page


@pytest.mark.parametrize("days", ["7", "0", "abc", "", "-30", "30.0", "٣٠", "9" * 400])
def test_dashboard_refuses_a_period_it_does_not_offer(client, editor, days):
    response = client.get(DASHBOARD, query_string={"days": days})

    assert response.status_code == 400
    assert "days must be one of 30, 90, 365" in response.get_data(as_text=True)


def test_dashboard_of_an_empty_newsletter_shows_zeros_and_no_rate(client, editor):
    page = client.get(DASHBOARD).get_data(as_text=True)

    assert "<b>—</b> confirmation rate" in page
    assert "<b>0</b> confirmed</a>" in page
    assert "No signups yet: the chart begins with the first." in page
    assert "<svg" not in page


def test_dashboard_is_only_for_editors_of_the_newsletter(
    client, make_editor, newsletter, other_newsletter
):
    assert client.get(DASHBOARD).headers["Location"].startswith("/admin/login")
    make_editor("outsider@example.org", "other")
    login(client, "outsider@example.org")

    assert client.get(DASHBOARD).status_code == 403
    assert client.get("/admin/n/other/").status_code == 200
