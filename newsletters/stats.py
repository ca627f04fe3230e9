"""A newsletter's numbers for the dashboard: counts, confirmation rate, signups per day.

Everything is counted in SQL; days are UTC days, the same as the stored timestamps.
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


def period(days: int = DAYS, today: date | None = None) -> list[date]:
    """Return the last ``days`` UTC days, oldest first, ending with ``today``."""
    today = today or utcnow().date()
    return [today - timedelta(days=n) for n in range(days - 1, -1, -1)]


def confirmation_rate(
    session: Session, newsletter: Newsletter, days: list[date]
) -> ConfirmationRate:
    """Return how many of the opt-ins made during ``days`` were confirmed.

    A signup whose address confirmed and later unsubscribed still counts as confirmed: the
    rate measures the double opt-in, not who stayed. Imported rows without an opt-in time
    are not signups and do not count.
    """
    start, end = _bounds(days)
    signups, confirmed = session.execute(
        sa.select(sa.func.count(), sa.func.count(Subscription.confirmed_at)).where(
            Subscription.newsletter_id == newsletter.id,
            Subscription.optin_at >= start,
            Subscription.optin_at < end,
        )
    ).one()
    return ConfirmationRate(signups=signups, confirmed=confirmed)


def daily(session: Session, newsletter: Newsletter, days: list[date]) -> list[Day]:
    """Return signups, confirmations and unsubscribes of each of ``days``, zero where none."""
    start, end = _bounds(days)
    found: dict[date, dict[str, int]] = {day: {} for day in days}
    for key, column, _label in SERIES:
        day = _day_of(session, column)
        rows = session.execute(
            sa.select(day, sa.func.count())
            .where(
                Subscription.newsletter_id == newsletter.id,
                column >= start,
                column < end,
            )
            .group_by(day)
        )
        for value, n in rows:
            found[value][key] = n
    return [Day(day, **found[day]) for day in days]


def _bounds(days: list[date]) -> tuple[datetime, datetime]:
    """Return the first instant of the first day and the first instant after the last one."""
    start = datetime.combine(days[0], time(), UTC)
    return start, datetime.combine(days[-1] + timedelta(days=1), time(), UTC)


def _day_of(session: Session, column) -> sa.ColumnElement:
    # Timestamps are stored as naive UTC: SQLite keeps them as text, whose date() is the UTC
    # day; PostgreSQL keeps a timestamp without time zone, whose cast to date is too.
    if session.get_bind().dialect.name == "sqlite":
        return sa.func.date(column, type_=sa.Date)
    return sa.cast(column, sa.Date)


@dataclass(frozen=True)
class Line:
    key: str
    label: str
    colour: str
    dash: str
    points: str


@dataclass(frozen=True)
class Tick:
    label: str
    at: float


@dataclass(frozen=True)
class Chart:
    """The geometry of the dashboard's line chart; the template draws it as SVG."""

    width: int
    height: int
    left: int
    top: int
    right: int
    bottom: int
    lines: list[Line]
    x_ticks: list[Tick]
    y_ticks: list[Tick]


# Colour and dash pattern both tell the series apart, for readers who cannot see colour.
STYLES = {
    "signups": ("#0b57d0", ""),
    "confirmations": ("#146c2e", "6 3"),
    "unsubscribes": ("#b3261e", "2 3"),
}


def chart(days: list[Day], width: int = 720, height: int = 280) -> Chart:
    """Lay out ``days`` as three lines over a shared day axis and a count axis from zero.

    Its labels are in the current language ("Mar 31", "31 бер."; "1,000", "1 000").
    """
    language = current_language()
    # Room on the right for half of the last day's label, centred under its point.
    left, right, top, bottom = 48, width - 28, 40, height - 48
    highest = max((getattr(d, key) for d in days for key, _column, _label in SERIES), default=0)
    step, ceiling = _scale(highest)

    def x(i: int) -> float:
        return left + (right - left) * i / max(len(days) - 1, 1)

    def y(value: int) -> float:
        return bottom - (bottom - top) * value / ceiling

    lines = [
        Line(
            key,
            str(label),
            *STYLES[key],
            " ".join(f"{x(i):.1f},{y(getattr(d, key)):.1f}" for i, d in enumerate(days)),
        )
        for key, _column, label in SERIES
    ]
    # About one label a fortnight, and always the last day, so "today" is readable.
    every = max(len(days) // 6, 1)
    x_ticks = [
        Tick(format_skeleton("MMMd", d.day, locale=language), x(i))
        for i, d in enumerate(days)
        if i % every == 0 and len(days) - 1 - i >= every // 2 or i == len(days) - 1
    ]
    y_ticks = [Tick(format_decimal(v, locale=language), y(v)) for v in range(0, ceiling + 1, step)]
    return Chart(width, height, left, top, right, bottom, lines, x_ticks, y_ticks)


def _scale(highest: int) -> tuple[int, int]:
    """Return a round step (1, 2, 5 × 10ⁿ) and the top of the axis: at most five steps."""
    magnitude = 1
    while True:
        for factor in (1, 2, 5):
            step = factor * magnitude
            if step * 5 >= highest:
                return step, step * max(1, -(-highest // step))
        magnitude *= 10
