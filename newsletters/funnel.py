"""A newsletter's signup funnel over a period: views → signups → mail accepted → confirmed.

The funnel follows the signups of the period (``optin_at`` within its UTC days, as the
dashboard's confirmation rate does): of those, how many had their confirmation mail accepted
by the mail server, and how many were confirmed, whenever that happened. Views are the form
views counters.py wrote on the same days. Nothing ties a view to a signup (nothing about a
visitor is kept), so the rate of signups per view is of two counts of the same days.

Every number is counted in SQL, one statement per table, on SQLite and PostgreSQL alike:
the views (``daily_count``) and the steps (``subscription``) of each group meet in a UNION
ALL under one GROUP BY, joined to the group's median time to confirm. The median is one
portable way too: the confirmed signups of each group numbered by how long they took
(window functions), and the middle one or two averaged, so the database sends one number per
group and never the durations themselves. Top pages and campaigns take two statements: one
ranks the groups (LIMIT TOP), the next folds all others into one row.

What a page costs (200,000 signups in a year from 3,000 pages, 219,000 rows of views): the
last 30 days in 0.3 s on PostgreSQL and 0.6 s on SQLite, the whole year in 2.5 s and 7 s.
Each statement walks the period's signups by ``ix_subscription_optins`` and reads their rows.

A view keeps no campaign, only its page with the page's utm_* parameters: the views of a
campaign are read from the period's tagged pages, one row per page (not per view), by the
rule that gave the signups theirs (``attribution.campaign``).
"""

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from . import attribution, counters
from .exports import neutralise
from .models import DailyCount, Newsletter, Source, Subscription
from .proof import Defence
from .stats import period

PERIODS = (7, 30, 90, 365)
DEFAULT_PERIOD = 30
# Pages and campaigns named on the page; the rest are folded into one row (the CSV has all).
TOP = 10
DIMENSIONS = ("form", "page", "campaign")
# The forms, in the order the page lists them: those that count views first.
FORMS = (
    Source.HOSTED,
    Source.IFRAME,
    Source.WIDGET,
    Source.PLAIN,
    Source.SEVERAL,
    Source.API,
    Source.IMPORT,
    Source.FORM,
)
DEFENCES = (
    Defence.HONEYPOT,
    Defence.AUTOMATION,
    Defence.TOO_FAST,
    Defence.FORGED,
    Defence.PROOF,
    Defence.REPLAY,
)
# What a row of a table stands for: one form, page or campaign; the folded rest; or the
# signups and views that have none (no page known, no campaign).
NAMED, OTHER, NONE = 0, 1, 2
STEPS = ("views", "signups", "accepted", "confirmed")


@dataclass(frozen=True)
class Row:
    """The funnel of one form, page or campaign (``key``), or of the folded rest."""

    key: tuple[str, ...] = ()
    kind: int = NAMED
    views: int = 0
    signups: int = 0
    accepted: int = 0
    confirmed: int = 0
    median_seconds: float | None = None

    @property
    def signup_rate(self) -> float | None:
        """Return signups per view, None without views (the API, imports, the plain form)."""
        return self.signups / self.views if self.views else None

    @property
    def confirm_rate(self) -> float | None:
        return self.confirmed / self.signups if self.signups else None

    @property
    def median(self) -> timedelta | None:
        """Return the median time from signup to confirmation, to the second."""
        if self.median_seconds is None:
            return None
        return timedelta(seconds=round(self.median_seconds))


@dataclass(frozen=True)
class StoppedDay:
    day: date
    by_defence: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.by_defence.values())


@dataclass(frozen=True)
class Funnel:
    days: list[date]
    total: Row
    forms: list[Row]
    pages: list[Row]
    campaigns: list[Row]
    stopped: list[StoppedDay]
    defences: list[str] = field(default_factory=list)


def measure(session: Session, newsletter: Newsletter, days: int = DEFAULT_PERIOD) -> Funnel:
    """Return the funnel of ``newsletter`` over the last ``days`` UTC days (one of PERIODS)."""
    span = period(days)
    stopped, defences = stopped_per_day(session, newsletter, span)
    forms = by_form(session, newsletter, span)
    # Every signup and view has a form: the total is their sum, but for its own median.
    total = Row(
        **{step: sum(getattr(row, step) for row in forms) for step in STEPS},
        median_seconds=_median_of_all(session, newsletter, span),
    )
    return Funnel(
        days=span,
        total=total,
        forms=forms,
        pages=top_pages(session, newsletter, span),
        campaigns=top_campaigns(session, newsletter, span, total.views),
        stopped=stopped,
        defences=defences,
    )


def by_form(session: Session, newsletter: Newsletter, days: list[date]) -> list[Row]:
    """Return the funnel of each form that saw a view or a signup, in the order of FORMS."""
    found = _rows(
        session, _Query(newsletter, days, [_form(Subscription.source)], [DailyCount.form])
    )
    order = {str(form): n for n, form in enumerate(FORMS)}
    return sorted(found, key=lambda row: (order.get(row.key[0], len(order)), row.key))


def top_pages(
    session: Session, newsletter: Newsletter, days: list[date], top: int = TOP
) -> list[Row]:
    """Return the ``top`` pages by signups (then views), the rest folded, then unknown pages."""
    page, viewed = sa.func.coalesce(Subscription.page, ""), DailyCount.page
    ranked = _rows(session, _Query(newsletter, days, [page], [viewed], ranking=True), limit=top)
    named = [row.key[0] for row in ranked]
    return _rows(session, _Query(newsletter, days, [page], [viewed], named=named))


def top_campaigns(
    session: Session, newsletter: Newsletter, days: list[date], views: int, top: int = TOP
) -> list[Row]:
    """Return the ``top`` campaigns by signups (then views), the rest folded, then none.

    ``views`` is the period's total: the views of no campaign are what the tagged pages leave.
    """
    keys = _campaign_keys()
    viewed = campaign_views(session, newsletter, days)
    ranked = _rows(session, _Query(newsletter, days, keys, None, ranking=True), limit=top)
    named = [row.key for row in ranked]
    # With room left, every campaign with a signup is named: fill it with those only viewed.
    for key, _n in sorted(viewed.items(), key=lambda item: (-item[1], item[0])):
        if len(named) >= top:
            break
        if key not in named:
            named.append(key)
    query = _Query(newsletter, days, keys, None, named=named)
    found = {(row.kind, row.key): row for row in _rows(session, query)}
    blank = ("",) * len(keys)
    wanted = [(NAMED, key, viewed.get(key, 0)) for key in named]
    wanted += [
        (OTHER, blank, sum(n for key, n in viewed.items() if key not in named)),
        (NONE, blank, views - sum(viewed.values())),
    ]
    rows = []
    for kind, key, n in wanted:
        row = found.get((kind, key), Row(key, kind))
        if n or row.signups:
            rows.append(replace(row, views=n))
    # Named ones as the database ranked them, with those only viewed after them.
    return sorted(rows, key=lambda r: (r.kind, -r.signups, -r.views))


def campaign_views(
    session: Session, newsletter: Newsletter, days: list[date]
) -> dict[tuple[str, str, str], int]:
    """Return the views of each campaign (utm_campaign, utm_source, utm_medium) of ``days``.

    One row per tagged page of the period comes from the database; the page's campaign is
    read as a signup's is (``attribution.campaign``).
    """
    rows = session.execute(
        sa.select(DailyCount.page, sa.func.sum(DailyCount.count))
        .where(*_viewed(newsletter, days), DailyCount.page.like("%utm%"))
        .group_by(DailyCount.page)
    )
    views: dict[tuple[str, str, str], int] = {}
    for page, n in rows:
        found = attribution.campaign(page)
        key = (found.campaign or "", found.source or "", found.medium or "")
        if any(key):
            views[key] = views.get(key, 0) + int(n)
    return views


def total_views(session: Session, newsletter: Newsletter, days: list[date]) -> int:
    """Return how often the forms of ``newsletter`` were shown during ``days``."""
    total = session.scalar(
        sa.select(sa.func.sum(DailyCount.count)).where(*_viewed(newsletter, days))
    )
    return int(total or 0)


def stopped_per_day(
    session: Session, newsletter: Newsletter, days: list[date]
) -> tuple[list[StoppedDay], list[str]]:
    """Return the days of ``days`` with stopped signups, newest first, and the defences seen.

    The defences are DEFENCES, then any other the counts name (a defence added later).
    """
    rows = session.execute(
        sa.select(DailyCount.day, DailyCount.metric, sa.func.sum(DailyCount.count))
        .where(
            DailyCount.newsletter_id == newsletter.id,
            DailyCount.metric.startswith(counters.STOPPED, autoescape=True),
            DailyCount.day >= days[0],
            DailyCount.day <= days[-1],
        )
        .group_by(DailyCount.day, DailyCount.metric)
    )
    found: dict[date, dict[str, int]] = {}
    for day, metric, n in rows:
        defence = metric.removeprefix(counters.STOPPED)
        found.setdefault(day, {})[defence] = int(n)
    seen = {defence for counts in found.values() for defence in counts}
    defences = [str(d) for d in DEFENCES] + sorted(seen - {str(d) for d in DEFENCES})
    stopped = [
        StoppedDay(day, {d: found[day].get(d, 0) for d in defences})
        for day in sorted(found, reverse=True)
    ]
    return stopped, defences


def period_of(raw: str | None) -> int:
    """Return the period ``?days=`` asks for (DEFAULT_PERIOD if none); ValueError if not ours."""
    if raw is None:
        return DEFAULT_PERIOD
    if raw.isascii() and raw.isdigit() and int(raw) in PERIODS:
        return int(raw)
    raise ValueError(raw)


# The CSV's columns after the group's own: machine-readable, in English as SPEC's export.
CSV_COLUMNS = (
    "views",
    "signups",
    "mail_accepted",
    "confirmed",
    "signups_per_view",
    "confirmed_per_signup",
    "median_seconds_to_confirm",
)
CSV_KEYS = {
    "form": ("form",),
    "page": ("page",),
    "campaign": ("utm_campaign", "utm_source", "utm_medium"),
}
CSV_BATCH = 1_000


def csv_rows(session: Session, newsletter: Newsletter, days: int, by: str) -> Iterator[list[str]]:
    """Yield the CSV of the funnel by ``by`` (DIMENSIONS): a header, then every group.

    Every page and campaign, none folded, read in batches; a page unknown, or no campaign, is
    an empty cell. Text cells are formula-safe (``exports.neutralise``).
    """
    span = period(days)
    yield [*CSV_KEYS[by], *CSV_COLUMNS]
    if by == "form":
        rows: Iterator[Row] = iter(by_form(session, newsletter, span))
    elif by == "page":
        page = sa.func.coalesce(Subscription.page, "")
        query = _Query(newsletter, span, [page], [DailyCount.page])
        rows = _rows_streamed(session, query)
    else:
        rows = _campaigns_streamed(
            session, newsletter, span, total_views(session, newsletter, span)
        )
    for row in rows:
        yield [
            *(neutralise(k) for k in row.key),
            str(row.views),
            str(row.signups),
            str(row.accepted),
            str(row.confirmed),
            _fraction(row.signup_rate),
            _fraction(row.confirm_rate),
            "" if row.median_seconds is None else str(round(row.median_seconds)),
        ]


def _fraction(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def _campaigns_streamed(
    session: Session, newsletter: Newsletter, days: list[date], views: int
) -> Iterator[Row]:
    viewed = campaign_views(session, newsletter, days)
    untagged = views - sum(viewed.values())
    for row in _rows_streamed(session, _Query(newsletter, days, _campaign_keys(), None)):
        if any(row.key):
            n = viewed.pop(row.key, 0)
        else:
            n, untagged = untagged, 0
        yield replace(row, views=n)
    for key, n in sorted(viewed.items()):
        yield Row(key, views=n)
    if untagged:
        yield Row(("", "", ""), views=untagged)


def csv_chunks(rows: Iterator[list[str]]) -> Iterator[str]:
    """Yield ``rows`` as CSV text (RFC 4180 line ends), a few hundred rows at a time."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    for n, row in enumerate(rows, 1):
        writer.writerow(row)
        if n % 500 == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


# -- the chart -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    step: str
    value: int
    y: float
    width: float


@dataclass(frozen=True)
class Group:
    row: Row
    y: float
    bars: list[Bar]


@dataclass(frozen=True)
class Chart:
    """The geometry of the funnel's bar chart, a group of four bars per form; SVG units.

    Narrow on purpose (``width``): the SVG scales to its column, and its text stays readable
    on a phone, where the column is about as wide as the drawing.
    """

    width: int
    height: int
    left: int
    bar_height: int
    groups: list[Group]


def chart(rows: list[Row], width: int = 400) -> Chart:
    """Lay out ``rows`` (by form) as bars of views, signups, accepted and confirmed.

    One scale for every bar, from zero: a step's bar is as long as its share of the
    largest count, and its number stands at its end.
    """
    left, room_for_number, bar, gap, heading = 112, 64, 14, 4, 22
    longest = max((getattr(r, step) for r in rows for step in STEPS), default=0) or 1
    scale = (width - left - room_for_number) / longest
    groups, y = [], 4
    for row in rows:
        bars = [
            Bar(step, getattr(row, step), y + heading + i * (bar + gap), getattr(row, step) * scale)
            for i, step in enumerate(STEPS)
        ]
        groups.append(Group(row, y, bars))
        y += heading + len(STEPS) * (bar + gap) + 12
    return Chart(width, y - 8, left, bar, groups)


# -- the statements ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Query:
    """What one table counts: its groups, as columns of ``subscription`` and of ``daily_count``.

    ``view_keys`` None: the group has no views in SQL (campaigns). ``named``: fold every group
    but these (``_fold``). ``ranking``: leave out the group of empty keys (no page known) and
    the median, to choose the top groups.
    """

    newsletter: Newsletter
    days: list[date]
    keys: list[sa.ColumnElement]
    view_keys: list[sa.ColumnElement] | None
    named: list | None = None
    ranking: bool = False

    def grouped(self, keys: list[sa.ColumnElement]) -> list[sa.ColumnElement]:
        """Return the groups of a row of ``keys``: themselves, or folded (a kind first)."""
        return keys if self.named is None else _fold(keys, self.named)


def _cohort(newsletter: Newsletter, days: list[date]) -> tuple:
    start = datetime.combine(days[0], time(), UTC)
    end = datetime.combine(days[-1] + timedelta(days=1), time(), UTC)
    return (
        Subscription.newsletter_id == newsletter.id,
        Subscription.optin_at >= start,
        Subscription.optin_at < end,
    )


def _viewed(newsletter: Newsletter, days: list[date]) -> tuple:
    return (
        DailyCount.newsletter_id == newsletter.id,
        DailyCount.metric == counters.VIEW,
        DailyCount.day >= days[0],
        DailyCount.day <= days[-1],
    )


def _form(source: sa.ColumnElement) -> sa.ColumnElement:
    """Return a signup's form: its source; "embed" as what it was (the iframe); an imported
    file's own label as "import"."""
    own = [str(s) for s in Source]
    return sa.case(
        (source == Source.EMBED, str(Source.IFRAME)),
        (source.in_(own), source),
        else_=str(Source.IMPORT),
    )


def _fold(keys: list[sa.ColumnElement], named: list) -> list[sa.ColumnElement]:
    """Return a row's kind, then ``keys`` themselves where they are one of ``named``.

    NAMED for those, NONE where every key is empty (no page known, no campaign), and OTHER
    for the rest, whose keys read empty: they fold into one row.
    """
    if not named:
        chosen = sa.false()
    elif len(keys) == 1:
        chosen = keys[0].in_(named)
    else:
        # A row value IN a list (on SQLite, IN (VALUES …)): one test, not one per name.
        chosen = sa.tuple_(*keys).in_(named)
    kind = sa.case((chosen, NAMED), (sa.and_(*(k == "" for k in keys)), NONE), else_=OTHER)
    return [kind, *(sa.case((chosen, k), else_="") for k in keys)]


def _campaign_keys() -> list[sa.ColumnElement]:
    return [
        sa.func.coalesce(Subscription.utm_campaign, ""),
        sa.func.coalesce(Subscription.utm_source, ""),
        sa.func.coalesce(Subscription.utm_medium, ""),
    ]


def _seconds(session: Session) -> sa.ColumnElement:
    """Return the seconds from a signup to its confirmation, in this database's words."""
    start, end = Subscription.optin_at, Subscription.confirmed_at
    if session.get_bind().dialect.name == "sqlite":
        # Stored as ISO text in UTC, which julianday() reads (to the millisecond).
        return (sa.func.julianday(end) - sa.func.julianday(start)) * 86400.0
    return sa.extract("epoch", end - start)


def _labelled(keys: list[sa.ColumnElement]) -> list[sa.ColumnElement]:
    return [k.label(f"k{i}") for i, k in enumerate(keys)]


def _statement(session: Session, query: _Query) -> sa.Select:
    """Return the statement of one table: a row per group, most signups (then views) first.

    Its counts are grouped by the raw keys first, and only those groups folded: a fold's
    CASE runs once per page or campaign, not once per signup. The median, which cannot be
    folded from parts, is grouped by the folded keys from the start (``_medians``).
    """
    counts = _counts(query)
    n = len(counts.c) - 4
    keys = [counts.c[f"k{i}"] for i in range(n)]
    steps = [counts.c.views, counts.c.signups, counts.c.accepted, counts.c.confirmed]
    order = [counts.c.signups.desc(), counts.c.views.desc(), *keys]
    if query.ranking:
        return sa.select(*keys, *steps, _NO_MEDIAN).order_by(*order)
    medians = _medians(session, query)
    joined = counts.outerjoin(
        medians, sa.and_(sa.true(), *(k == medians.c[f"k{i}"] for i, k in enumerate(keys)))
    )
    return sa.select(*keys, *steps, medians.c.median).select_from(joined).order_by(*order)


# A count a part of the union does not count, and no median.
_ZERO, _NO_MEDIAN = sa.literal_column("0"), sa.cast(sa.null(), sa.Float)


def _counts(query: _Query) -> sa.Subquery:
    """Return the views and steps of each group: the views' rows and the signups' in a UNION
    ALL, summed by group."""
    cohort = _cohort(query.newsletter, query.days)
    if query.ranking and query.keys:
        cohort = (*cohort, sa.or_(*(k != "" for k in query.keys)))
    parts = [
        sa.select(
            *_labelled(query.keys),
            _ZERO.label("views"),
            sa.func.count().label("signups"),
            sa.func.count(Subscription.mail_accepted_at).label("accepted"),
            sa.func.count(Subscription.confirmed_at).label("confirmed"),
        )
        .where(*cohort)
        .group_by(*query.keys)
    ]
    if query.view_keys is not None:
        viewed = _viewed(query.newsletter, query.days)
        if query.ranking and query.view_keys:
            viewed = (*viewed, sa.or_(*(k != "" for k in query.view_keys)))
        parts.append(
            sa.select(
                *_labelled(query.view_keys),
                sa.func.sum(DailyCount.count).label("views"),
                _ZERO.label("signups"),
                _ZERO.label("accepted"),
                _ZERO.label("confirmed"),
            )
            .where(*viewed)
            .group_by(*query.view_keys)
        )
    union = sa.union_all(*parts).subquery()
    keys = query.grouped([union.c[f"k{i}"] for i in range(len(query.keys))])
    return (
        sa.select(
            *_labelled(keys),
            *(sa.func.sum(union.c[step]).label(step) for step in STEPS),
        )
        .group_by(*keys)
        .subquery()
    )


def _medians(session: Session, query: _Query) -> sa.Subquery:
    """Return each group's median seconds to confirm: the middle one or two, averaged."""
    seconds = _seconds(session)
    keys = query.grouped(query.keys)
    groups = keys or None
    numbered = (
        sa.select(
            *_labelled(keys),
            seconds.label("seconds"),
            sa.func.row_number().over(partition_by=groups, order_by=seconds).label("n"),
            sa.func.count().over(partition_by=groups).label("of"),
        )
        .where(
            *_cohort(query.newsletter, query.days),
            Subscription.confirmed_at.is_not(None),
            # An imported row may say it was confirmed before its opt-in: no duration.
            Subscription.confirmed_at >= Subscription.optin_at,
        )
        .subquery()
    )
    numbered_keys = [numbered.c[f"k{i}"] for i in range(len(keys))]
    # Integer division: of 4 → the 2nd and 3rd; of 5 → the 3rd twice.
    middle = sa.or_(
        numbered.c.n == (numbered.c.of + 1) // 2, numbered.c.n == (numbered.c.of + 2) // 2
    )
    return (
        sa.select(*_labelled(numbered_keys), sa.func.avg(numbered.c.seconds).label("median"))
        .where(middle)
        .group_by(*numbered_keys)
        .subquery()
    )


def _median_of_all(session: Session, newsletter: Newsletter, days: list[date]) -> float | None:
    medians = _medians(session, _Query(newsletter, days, [], None))
    median = session.scalar(sa.select(medians.c.median))
    return None if median is None else round(float(median), 3)


def _row(values, n: int, folded: bool = False) -> Row:
    key = tuple(values[:n])
    views, signups, accepted, confirmed, median = values[n:]
    kind = NAMED
    if folded:
        kind, key = key[0], key[1:]
    return Row(
        key=tuple(str(k) for k in key),
        kind=int(kind),
        views=int(views or 0),
        signups=int(signups or 0),
        accepted=int(accepted or 0),
        confirmed=int(confirmed or 0),
        # To the millisecond: what julianday() on SQLite is exact to.
        median_seconds=None if median is None else round(float(median), 3),
    )


def _rows(session: Session, query: _Query, limit: int | None = None) -> list[Row]:
    """Return the rows of ``query``; folded, named rows first, then OTHER, then NONE."""
    statement = _statement(session, query)
    if limit is not None:
        statement = statement.limit(limit)
    n = len(query.grouped(query.keys))
    folded = query.named is not None
    rows = [_row(values, n, folded) for values in session.execute(statement)]
    return sorted(rows, key=lambda r: r.kind) if folded else rows


def _rows_streamed(session: Session, query: _Query) -> Iterator[Row]:
    statement = _statement(session, query).execution_options(yield_per=CSV_BATCH)
    n = len(query.keys)
    for values in session.execute(statement):
        yield _row(values, n)
