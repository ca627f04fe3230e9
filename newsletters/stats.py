"""A newsletter's numbers for the dashboard: counts, confirmation rate, signups over time.

Everything is counted in SQL; days are UTC days, the same as the stored timestamps. A period
(30, 90 or 365 days) starts no earlier than the newsletter's first event, and a span longer
than WEEKLY_AFTER days is drawn a point per seven days, counted back from today.
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import sqlalchemy as sa
from babel.dates import format_skeleton
from babel.numbers import format_decimal
from flask_babel import lazy_gettext as _l
from sqlalchemy.orm import Session

from . import catalogue
from .db import utcnow
from .i18n import current_language
from .mail import outbox
from .models import Newsletter, Status, Subscription

DAYS = 90
PERIODS = (30, 90, 365)
# Up to a quarter, a point per day; longer, a point per week: 365 daily points are noise at
# the width of a phone, and 53 weeks still show a season.
WEEKLY_AFTER = 92
# The three series of the chart: the column each counts, and its legend label.
SERIES = (
    ("signups", Subscription.optin_at, _l("Signups")),
    ("confirmations", Subscription.confirmed_at, _l("Confirmations")),
    ("unsubscribes", Subscription.unsubscribed_at, _l("Unsubscribes")),
)


@dataclass(frozen=True)
class Day:
    day: date
    signups: int = 0
    confirmations: int = 0
    unsubscribes: int = 0


@dataclass(frozen=True)
class Point:
    """The counts of one day or one week, and the UTC days of the span it covers."""

    first: date
    last: date
    signups: int = 0
    confirmations: int = 0
    unsubscribes: int = 0

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1


@dataclass(frozen=True)
class Series:
    """The points of a period: per day or per week, from where the data starts to today."""

    period: int
    step: str  # "day" or "week"
    points: list[Point]

    @property
    def first(self) -> date | None:
        return self.points[0].first if self.points else None

    @property
    def last(self) -> date | None:
        return self.points[-1].last if self.points else None

    @property
    def days(self) -> int:
        return sum(p.days for p in self.points)

    def total(self, key: str) -> int:
        return sum(getattr(p, key) for p in self.points)


@dataclass(frozen=True)
class ConfirmationRate:
    """Of the signups (opt-ins) of a period, how many were confirmed, even if left since."""

    signups: int
    confirmed: int

    @property
    def percent(self) -> float | None:
        return 100 * self.confirmed / self.signups if self.signups else None


def counts(session: Session, newsletter: Newsletter) -> dict[Status, int]:
    """Return how many subscriptions of ``newsletter`` have each status, zeros included."""
    return catalogue.counts(session, [newsletter.id])[newsletter.id]


def unbuilt_mails(session: Session, newsletter: Newsletter) -> list[outbox.Unbuilt]:
    """Return the confirmation mails of ``newsletter`` that could not be built, by reason."""
    return outbox.unbuilt(session, newsletter)


def period_of(raw: str | None) -> int:
    """Return the days ``?days=`` asks for (DAYS without it); ValueError if not one of PERIODS."""
    if raw is None:
        return DAYS
    if raw.isascii() and raw.isdigit() and int(raw) in PERIODS:
        return int(raw)
    raise ValueError(raw)


def period(days: int = DAYS, today: date | None = None) -> list[date]:
    """Return the last ``days`` UTC days, oldest first, ending with ``today``."""
    today = today or utcnow().date()
    return [today - timedelta(days=n) for n in range(days - 1, -1, -1)]


def first_day(session: Session, newsletter: Newsletter) -> date | None:
    """Return the UTC day of the newsletter's first signup, confirmation or unsubscribe."""
    found = session.execute(
        sa.select(*(sa.func.min(column) for _key, column, _label in SERIES)).where(
            Subscription.newsletter_id == newsletter.id
        )
    ).one()
    moments = [moment for moment in found if moment is not None]
    return min(moments).date() if moments else None


def shown_days(
    session: Session, newsletter: Newsletter, days: int = DAYS, today: date | None = None
) -> list[date]:
    """Return the days of the period that the dashboard shows: from where the data starts.

    A newsletter whose first signup was 12 days ago shows 12 days of a 90-day period, not 78
    empty ones before them; one without any event shows none. A span counted per week is
    whole weeks back from today (365 days: 53 weeks, 371 days), so that no week is cut short.
    """
    asked = period(days, today)
    start = first_day(session, newsletter)
    if start is None or start > asked[-1]:
        return []
    if (asked[-1] - max(start, asked[0])).days + 1 > WEEKLY_AFTER:
        asked = period(7 * -(-days // 7), today)
    return [day for day in asked if day >= start]


def confirmation_rate(
    session: Session, newsletter: Newsletter, days: list[date]
) -> ConfirmationRate:
    """Return how many of the opt-ins made during ``days`` were confirmed.

    A signup whose address confirmed and later unsubscribed still counts as confirmed: the
    rate measures the double opt-in, not who stayed. Imported rows without an opt-in time
    are not signups and do not count.
    """
    if not days:
        return ConfirmationRate(signups=0, confirmed=0)
    start, end = _bounds(days)
    signups, confirmed = session.execute(
        sa.select(sa.func.count(), sa.func.count(Subscription.confirmed_at)).where(
            Subscription.newsletter_id == newsletter.id,
            Subscription.optin_at >= start,
            Subscription.optin_at < end,
        )
    ).one()
    return ConfirmationRate(signups=signups, confirmed=confirmed)


def series(session: Session, newsletter: Newsletter, days: list[date], period: int) -> Series:
    """Return the signups, confirmations and unsubscribes of ``days``, per day or per week.

    One statement counts all three, grouped by UTC day, or, when the span is longer than
    WEEKLY_AFTER days, by seven days back from the last day: the last point is the last seven
    days, never a week just begun. Every day or week of the span has a point, zeros included;
    only the first week can be shorter, where the data starts.
    """
    step = "week" if len(days) > WEEKLY_AFTER else "day"
    if not days:
        return Series(period, step, [])
    start, end = _bounds(days)
    size = 7 if step == "week" else 1
    last_day = days[-1]
    events = sa.union_all(
        *(
            sa.select(
                (_days_before(session, last_day, column) // size).label("back"),
                sa.literal_column(str(kind)).label("kind"),
            ).where(Subscription.newsletter_id == newsletter.id, column >= start, column < end)
            for kind, (_key, column, _label) in enumerate(SERIES)
        )
    ).subquery()
    counted = sa.select(
        events.c.back,
        *(
            sa.func.count(sa.case((events.c.kind == kind, 1))).label(key)
            for kind, (key, _column, _label) in enumerate(SERIES)
        ),
    ).group_by(events.c.back)
    found = {int(row.back): row for row in session.execute(counted)}
    points = []
    for back in range(((last_day - days[0]).days) // size, -1, -1):
        row = found.get(back)
        points.append(
            Point(
                max(last_day - timedelta(days=back * size + size - 1), days[0]),
                last_day - timedelta(days=back * size),
                **({key: getattr(row, key) for key, _c, _l in SERIES} if row else {}),
            )
        )
    return Series(period, step, points)


def daily(session: Session, newsletter: Newsletter, days: list[date]) -> list[Day]:
    """Return signups, confirmations and unsubscribes of each of ``days``, zero where none."""
    if len(days) > WEEKLY_AFTER:
        raise ValueError(f"{len(days)} days are counted per week: use series()")
    return [
        Day(p.first, p.signups, p.confirmations, p.unsubscribes)
        for p in series(session, newsletter, days, len(days)).points
    ]


def _bounds(days: list[date]) -> tuple[datetime, datetime]:
    """Return the first instant of the first day and the first instant after the last one."""
    start = datetime.combine(days[0], time(), UTC)
    return start, datetime.combine(days[-1] + timedelta(days=1), time(), UTC)


def _days_before(session: Session, last_day: date, column) -> sa.ColumnElement:
    """Return how many UTC days ``column``'s day is before ``last_day`` (0 on that day)."""
    # Timestamps are stored as naive UTC: SQLite keeps them as text, whose date() is the UTC
    # day; PostgreSQL keeps a timestamp without time zone, whose cast to date is too.
    if session.get_bind().dialect.name == "sqlite":
        return sa.cast(
            sa.func.julianday(last_day.isoformat()) - sa.func.julianday(sa.func.date(column)),
            sa.Integer,
        )
    return sa.literal(last_day, sa.Date) - sa.cast(column, sa.Date)


@dataclass(frozen=True)
class Line:
    key: str
    label: str
    points: str
    # Each point drawn as a dot too, where there are few enough to tell apart.
    dots: list[tuple[float, float]]


@dataclass(frozen=True)
class Tick:
    label: str
    # Where it stands, in per cent of the chart's width (x) or height (y).
    at: float
    anchor: str = "middle"


@dataclass(frozen=True)
class Chart:
    """The dashboard's line chart, laid out for an SVG of any width.

    The lines are drawn in a nested SVG whose viewBox (0 0 1000 1000) stretches to the plot
    area, so they fill a phone's width as well as a desktop's; the labels stand outside it, at
    per cent positions, so that their text keeps its size (CSS) however wide the chart is.
    """

    lines: list[Line]
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    # The plot area, in per cent of the chart's height: room above for the top label, and
    # below for the day labels.
    top: float = 9.0
    height: float = 79.0

    @property
    def bottom(self) -> float:
        return self.top + self.height


# At most this many labels under the chart: they fit a phone's width in any language.
X_LABELS = 4
DOTS_UP_TO = 16


def chart(points: list[Point]) -> Chart:
    """Lay out ``points`` as three lines over a shared time axis and a count axis from zero.

    Its labels are in the current language ("Mar 31", "31 бер."; "1,000", "1 000"); a week
    is labelled with its last day, so the last label is today.
    """
    if not points:
        return Chart([], [], [])
    language = current_language()
    keys = [(key, label) for key, _column, label in SERIES]
    highest = max((getattr(p, key) for p in points for key, _label in keys), default=0)
    step, ceiling = _scale(highest)

    def x(i: int) -> float:
        return 500.0 if len(points) == 1 else 1000 * i / (len(points) - 1)

    def y(value: int) -> float:
        return 1000 - 1000 * value / ceiling

    lines = []
    for key, label in keys:
        xy = [(x(i), y(getattr(p, key))) for i, p in enumerate(points)]
        lines.append(
            Line(
                key,
                str(label),
                " ".join(f"{a:.1f},{b:.1f}" for a, b in xy),
                xy if len(points) <= DOTS_UP_TO else [],
            )
        )
    shown = sorted({round(n * (len(points) - 1) / (X_LABELS - 1)) for n in range(X_LABELS)})
    x_ticks = [
        Tick(_day_label(points[i].last, language), x(i) / 10, _anchor(i, points)) for i in shown
    ]
    y_ticks = [
        Tick(format_decimal(v, locale=language), Chart.top + Chart.height * y(v) / 1000)
        for v in range(0, ceiling + 1, step)
    ]
    return Chart(lines, x_ticks, y_ticks)


def _day_label(day: date, language: str) -> str:
    return format_skeleton("MMMd", day, locale=language)


def _anchor(i: int, points: list) -> str:
    """Return how the label of point ``i`` aligns: the first and the last stay inside."""
    if len(points) == 1:
        return "middle"
    return "start" if i == 0 else "end" if i == len(points) - 1 else "middle"


def _scale(highest: int) -> tuple[int, int]:
    """Return a round step (1, 2, 5 × 10ⁿ) and the top of the axis: at most four steps."""
    magnitude = 1
    while True:
        for factor in (1, 2, 5):
            step = factor * magnitude
            if step * 4 >= highest:
                return step, step * max(1, -(-highest // step))
        magnitude *= 10
