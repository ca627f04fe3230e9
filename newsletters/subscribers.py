"""Named queries of a newsletter's subscriptions: the subscriber list, its pages and search.

The one home of the list's query, for the editors' area and the API alike (listmonk keeps its
queries apart from its handlers the same way); and what the address checks' flags are called.
"""

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from flask_babel import lazy_gettext as _l
from flask_babel.speaklater import LazyString
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session, contains_eager, joinedload
from sqlalchemy.sql.expression import UnaryExpression
from sqlalchemy.sql.operators import custom_op

from .db import utcnow
from .models import Newsletter, Status, Subscriber, Subscription

PAGE_SIZE = 50
# As many matches of a search as make the newest-first walk find a page of them soon; and the
# most that are counted exactly (``count``).
DENSE = 10_000
# How long SQLite's exact count of a long list is kept before it is counted again.
COUNT_KEEP_SECONDS = 300
# The newest rows tried first for a search, before asking its index how many match.
WINDOW = 5_000
# The shortest search that finds any part of an address or a name: a trigram.
SEARCH_MIN = 3
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_POSITION = re.compile(r"(\d{1,18}|n)_(\d{1,18})")
# How a query takes the list's own columns: as they are, or kept from SQLite's indexes.
Own = Callable[[sa.ColumnElement], sa.ColumnElement]
STATUSES = tuple(status.value for status in Status)
# Each status as editors read it.
STATUS_LABELS = {
    Status.PENDING.value: _l("Pending"),
    Status.CONFIRMED.value: _l("Confirmed"),
    Status.UNSUBSCRIBED.value: _l("Unsubscribed"),
}


@dataclass(frozen=True)
class FlagText:
    """What editors read of an address check's flag: a short label and a line on its meaning."""

    label: LazyString
    explanation: LazyString


# The flags of ``address_checks.FLAGS`` (``Subscription.address_flags``), in that order, as
# the list's filter, its badges and the subscriber page name and explain them.
ADDRESS_FLAGS = {
    "typo": FlagText(
        _l("Typo kept as typed"),
        _l(
            "At signup a likely typo in the address was pointed out, and the reader kept the "
            "address as typed."
        ),
    ),
    "disposable": FlagText(
        _l("Disposable"),
        _l("The domain hands out disposable addresses, which often stop working in days."),
    ),
    "role": FlagText(
        _l("Role address"),
        _l(
            "The address names a role (such as info@ or admin@), not a person: several people "
            "may read it, or none."
        ),
    ),
    "no_mx": FlagText(
        _l("No MX record"),
        _l(
            "The domain has no MX record, only an address (A or AAAA) record: mail to it may "
            "not arrive."
        ),
    ),
    "unchecked": FlagText(
        _l("DNS unchecked"),
        _l("The domain's DNS lookup failed or timed out at signup, so it was never checked."),
    ),
}


@dataclass(frozen=True)
class Position:
    """A place in the list: just after the row signed up at ``optin_at`` with id ``id``.

    Its text is the ``after`` of a page's link: the signup time in microseconds since the
    epoch (UTC), or ``n`` for a row whose signup time is unknown, then ``_`` and the id.
    """

    optin_at: datetime | None
    id: int

    @classmethod
    def parse(cls, text: str) -> "Position":
        """Return the position ``text`` names; raise ValueError for one never handed out."""
        match = _POSITION.fullmatch(text)
        if match is None:
            raise ValueError(f"not a position in the list: {text[:40]!r}")
        micros = match[1]
        when = None if micros == "n" else EPOCH + timedelta(microseconds=int(micros))
        return cls(when, int(match[2]))

    @classmethod
    def of(cls, subscription: Subscription) -> "Position":
        return cls(subscription.optin_at, subscription.id)

    def __str__(self) -> str:
        if self.optin_at is None:
            return f"n_{self.id}"
        return f"{(self.optin_at - EPOCH) // timedelta(microseconds=1)}_{self.id}"


@dataclass(frozen=True)
class Page:
    """One page of the list, newest first."""

    subscriptions: list[Subscription]
    # The ``after`` of the next page; None on the last page.
    next_after: Position | None


@dataclass
class Search:
    """What an editor searched for, and the subscriptions its index finds, once looked up.

    Three characters or more: any part of the address or of the name (trigrams: SQLite's
    FTS5 table, PostgreSQL's pg_trgm indexes); fewer: addresses that start with it, which the
    address's own index finds (a trigram index has nothing to look up for them). One request
    asks the index once (``found``), however many queries its page and count take.
    """

    text: str
    _found: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def anywhere(self) -> bool:
        return len(self.text) >= SEARCH_MIN

    def known(self, newsletter: Newsletter) -> bool:
        """Tell whether the index was asked already (``found``) for ``newsletter``."""
        return newsletter.id in self._found

    def found(self, session: Session, newsletter: Newsletter) -> list[int] | None:
        """Return the ids of ``newsletter``'s subscriptions that match, or None for ``DENSE``+.

        A look at the search's index that stops at ``DENSE``: SQLite's FTS5 hands its
        matches over one by one, so a common word costs no more than a rare one.
        """
        if newsletter.id not in self._found:
            ids = list(session.scalars(_indexed(session, newsletter, self).limit(DENSE)))
            unique = list(dict.fromkeys(ids))
            self._found[newsletter.id] = unique if len(ids) < DENSE else None
        return self._found[newsletter.id]


def list_page(
    session: Session,
    newsletter: Newsletter,
    *,
    status: str | None = None,
    search: Search | str | None = None,
    flag: str | None = None,
    after: Position | None = None,
    size: int = PAGE_SIZE,
) -> Page:
    """Return the ``size`` subscriptions after ``after``, newest first by signup time.

    In order of ``optin_at``, then id, both descending, with the rows whose signup time is
    unknown (an import that gave none) last: the oldest, as far as anyone can tell. Keyset
    pagination, so each page is one index range however deep it lies, where an OFFSET would
    walk every row before it. ``search`` finds addresses and names (see ``Search``); ``flag``
    keeps those whose address check found it (one of ``ADDRESS_FLAGS``).
    """
    found = Search(search) if isinstance(search, str) and search else search or None
    rows: list[Subscription] = []
    if after is None or after.optin_at is not None:
        dated = _listed(newsletter, status, after, dated=True)
        rows = _matching(session, newsletter, dated, found, flag, size + 1)
    if len(rows) <= size:
        undated = _listed(newsletter, status, after, dated=False)
        # The dated rows ran out before a page: their newest did not fill it, or there were
        # too few of them; either way the rest is found without a window.
        rest = size + 1 - len(rows)
        rows += _matching(session, newsletter, undated, found, flag, rest, window=False)
    following = Position.of(rows[size - 1]) if len(rows) > size else None
    return Page(rows[:size], following)


def _listed(
    newsletter: Newsletter, status: str | None, after, *, dated: bool
) -> Callable[[Own], sa.Select]:
    """Return a maker of one part of the list's query (the dated rows, or the others).

    The maker takes ``own``, applied to the list's own columns: as they are, or kept from
    SQLite's indexes when the search's index should lead (see ``_matching``).
    """

    def query(own: Own) -> sa.Select:
        signed_up = own(Subscription.optin_at)
        statement = (
            sa.select(Subscription)
            .join(Subscription.subscriber)
            .options(contains_eager(Subscription.subscriber))
            .where(own(Subscription.newsletter_id) == newsletter.id)
        )
        if dated:
            statement = statement.where(signed_up.is_not(None)).order_by(
                Subscription.optin_at.desc(), Subscription.id.desc()
            )
            if after is not None:
                statement = statement.where(
                    sa.tuple_(signed_up, own(Subscription.id)) < (after.optin_at, after.id)
                )
        else:
            # Ordered as the dated part (all NULL, so by id): PostgreSQL then reads the same
            # index backwards rather than sorting.
            statement = statement.where(signed_up.is_(None)).order_by(
                Subscription.optin_at.desc(), Subscription.id.desc()
            )
            if after is not None and after.optin_at is None:
                statement = statement.where(own(Subscription.id) < after.id)
        if status:
            statement = statement.where(own(Subscription.status) == Status(status))
        return statement

    return query


def _matching(
    session: Session,
    newsletter: Newsletter,
    query: Callable[[Own], sa.Select],
    search: Search | None,
    flag: str | None,
    limit: int,
    window: bool = True,
) -> list[Subscription]:
    """Return the first ``limit`` rows of ``query`` that match ``search`` and ``flag``.

    Which end to start from depends on how many rows match. Many: walk the list in its order
    and test each row, which finds a page within a few hundred rows. Few: look them up in an
    index (the search's, or the flagged rows'), then sort them. The newest ``WINDOW`` rows
    are tried first (cheap either way); only when they hold no full page does a bounded look
    at the search's index (``DENSE`` matches at most, ``Search.found``) tell which end wins.
    PostgreSQL plans each query from its statistics; SQLite has none, so the list's own
    columns are kept from its indexes (a unary +) when another index must lead.
    """
    if search is None and flag is None:
        return list(session.scalars(query(_as_is).limit(limit)))
    flags = [flagged(flag)] if flag else []
    tests = [_row_test(session, search), *flags] if search is not None else flags
    own = _not_indexed if session.get_bind().dialect.name == "sqlite" else _as_is
    # Once the search's index was asked (a page's first part), its answer decides at once.
    known = search is not None and search.known(newsletter)
    if window and not known:
        newest = query(_as_is).with_only_columns(Subscription.id).limit(WINDOW)
        tried = query(own).where(_in(session, newest), *tests)
        rows = list(session.scalars(tried.limit(limit)))
        if len(rows) == limit:
            return rows
    ids = search.found(session, newsletter) if search is not None else None
    if ids is not None:
        # The index's answer is the search's: no row test (SQLite's LIKE folds ASCII only).
        indexed = query(own).where(_among(session, ids), *flags)
        return list(session.scalars(indexed.limit(limit)))
    if flag:
        # The flagged rows' partial index holds the flags: it alone finds a rare one.
        flagged_ids = sa.select(Subscription.id).where(
            Subscription.newsletter_id == newsletter.id, flagged(flag)
        )
        indexed = query(own).where(_in(session, flagged_ids), *tests)
        return list(session.scalars(indexed.limit(limit)))
    return list(session.scalars(query(_as_is).where(*tests).limit(limit)))


def _in(session: Session, ids: sa.Select) -> sa.ColumnElement:
    """Return the condition that a subscription's id is one of those ``ids`` selects.

    On PostgreSQL as ``= ANY(ARRAY(…))``: the ids are read first, then each row is looked up
    by its key; an IN may be planned as a hash join over the whole list.
    """
    if session.get_bind().dialect.name == "sqlite":
        return Subscription.id.in_(ids.scalar_subquery())
    return Subscription.id == sa.any_(sa.func.array(ids.scalar_subquery()))


def _among(session: Session, ids: list[int]) -> sa.ColumnElement:
    """Return the condition that a subscription is one of ``ids``, as one parameter."""
    if session.get_bind().dialect.name == "sqlite":
        listed = sa.func.json_each(sa.literal(json.dumps(ids))).table_valued("value")
        return Subscription.id.in_(sa.select(listed.c.value))
    return Subscription.id == sa.any_(sa.bindparam("ids", ids, type_=ARRAY(sa.Integer)))


def _indexed(session: Session, newsletter: Newsletter, search: Search) -> sa.Select:
    """Return the ids of ``newsletter``'s subscriptions that the search's index finds."""
    sqlite = session.get_bind().dialect.name == "sqlite"
    # SQLite must start from the index of addresses, not walk the list (see _matching).
    mine = (_not_indexed if sqlite else _as_is)(Subscription.newsletter_id) == newsletter.id
    if not search.anywhere:
        return (
            sa.select(Subscription.id)
            .join(Subscription.subscriber)
            .where(mine, *_starts_with(session, Subscriber.email, search.text))
        )
    if sqlite:
        # FTS5 leads: it hands its matches over one at a time, so a LIMIT stops it early.
        found = _fts(search)
        return sa.select(Subscription.id).join(found, found.c.rowid == Subscription.id).where(mine)
    pattern = _contains(search.text)
    by_address = (
        sa.select(Subscription.id)
        .join(Subscription.subscriber)
        .where(mine, Subscriber.email.like(pattern, escape="\\"))
    )
    by_name = sa.select(Subscription.id).where(mine, Subscription.name.ilike(pattern, escape="\\"))
    # UNION ALL, not UNION: a LIMIT then stops it early (found() drops the repeats).
    return sa.union_all(by_address, by_name)


def _row_test(session: Session, search: Search) -> sa.ColumnElement:
    """Return the test of one row against ``search``, for a walk of the list in its order.

    The same rows as the index finds: the address is lower-case already, and the search too;
    a name matches whatever its case (SQLite's LIKE folds ASCII letters only).
    """
    if not search.anywhere:
        return sa.and_(*_starts_with(session, Subscriber.email, search.text))
    pattern = _contains(search.text)
    return sa.or_(
        Subscriber.email.like(pattern, escape="\\"),
        Subscription.name.ilike(pattern, escape="\\"),
    )


def _fts(search: Search):
    """Return the rowids (subscription ids) SQLite's FTS5 table finds for ``search``."""
    phrase = '"' + search.text.replace('"', '""') + '"'
    return (
        sa.text("SELECT rowid FROM subscription_search WHERE subscription_search MATCH :phrase")
        .bindparams(phrase=phrase)
        .columns(rowid=sa.Integer)
        .subquery("found")
    )


def _contains(text: str) -> str:
    """Return the LIKE pattern of ``text`` anywhere, its own wildcards taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


@dataclass(frozen=True)
class Total:
    """How many subscriptions a list holds, and how sure that number is.

    ``how`` is "exact" (counted now), "counted" (exact at ``counted_at``, kept a while),
    "estimate" (PostgreSQL's statistics) or "more_than" (at least ``value`` + 1).
    """

    value: int
    how: str
    counted_at: datetime | None = None


def total(
    session: Session,
    newsletter: Newsletter,
    *,
    status: str | None = None,
    search: Search | str | None = None,
    flag: str | None = None,
    kept: dict | None = None,
    keep_seconds: float = COUNT_KEEP_SECONDS,
) -> Total:
    """Return how many subscriptions the list (so filtered) holds: exact when that is cheap.

    Up to ``DENSE`` rows are counted exactly, through the same indexes as the pages, which
    stops there. Past that, an exact count reads every row: PostgreSQL gives its planner's
    estimate instead (at once, when the estimate is far past ``DENSE``); SQLite, which keeps
    no statistics, counts a whole list once and keeps the count in ``kept`` for
    ``keep_seconds``, and says of a search only that it found more than ``DENSE``.
    """
    found = Search(search) if isinstance(search, str) and search else search or None
    postgresql = session.get_bind().dialect.name == "postgresql"
    if found is not None:
        estimate = None
        if postgresql:
            test = _row_test(session, found)
            estimate = _estimate(session, _counted(newsletter, status, flag, test))
            if estimate > 2 * DENSE and not found.known(newsletter):
                return Total(estimate, "estimate")
        ids = found.found(session, newsletter)
        if ids is not None:
            query = _counted(newsletter, status, flag).where(_among(session, ids))
            return Total(session.scalar(_count(query)), "exact")
        if estimate is not None and estimate > DENSE:
            return Total(estimate, "estimate")
        if not postgresql and (status or flag):
            # Many match the search; how many of them also have this status or flag, the
            # index counts up to DENSE (on PostgreSQL the estimate took the filters in).
            both = _indexed(session, newsletter, found)
            if status:
                both = both.where(_not_indexed(Subscription.status) == Status(status))
            if flag:
                both = both.where(flagged(flag))
            counted = session.scalar(_count(both.limit(DENSE + 1)))
            if counted <= DENSE:
                return Total(counted, "exact")
        return Total(DENSE, "more_than")
    query = _counted(newsletter, status, flag)
    # PostgreSQL's estimate costs a plan, no rows: when it says "many", counting even the
    # first DENSE is not worth it.
    estimate = _estimate(session, query) if postgresql else None
    if estimate is not None and estimate > 2 * DENSE:
        return Total(estimate, "estimate")
    counted = session.scalar(_count(query.limit(DENSE + 1)))
    if counted <= DENSE:
        return Total(counted, "exact")
    if estimate is not None and estimate > DENSE:
        return Total(estimate, "estimate")
    if estimate is not None:
        # Statistics that guess fewer rows than were just counted say nothing more.
        return Total(DENSE, "more_than")
    key = (newsletter.id, status, flag)
    now = utcnow()
    if kept is not None and key in kept:
        value, at = kept[key]
        if (now - at).total_seconds() < keep_seconds:
            return Total(value, "counted", at)
    value = session.scalar(_count(_counted(newsletter, status, flag)))
    if kept is not None:
        kept[key] = (value, now)
    return Total(value, "counted", now)


def _counted(
    newsletter: Newsletter,
    status: str | None,
    flag: str | None,
    test: sa.ColumnElement | None = None,
) -> sa.Select:
    """Return the ids of the list's rows (so filtered), in no order: what a count reads.

    ``test``, a search's test of each row, is only for PostgreSQL's estimate, never run.
    """
    query = sa.select(Subscription.id).where(Subscription.newsletter_id == newsletter.id)
    if status:
        query = query.where(Subscription.status == Status(status))
    if flag:
        query = query.where(flagged(flag))
    if test is not None:
        query = query.join(Subscription.subscriber).where(test)
    return query


def _count(query: sa.Select) -> sa.Select:
    return sa.select(sa.func.count()).select_from(query.subquery())


def _estimate(session: Session, query: sa.Select) -> int:
    """Return PostgreSQL's planner estimate of how many rows ``query`` returns."""
    statement = query.compile(
        dialect=session.get_bind().dialect, compile_kwargs={"literal_binds": True}
    )
    [plan] = session.execute(sa.text(f"EXPLAIN (FORMAT JSON) {statement}")).scalar()
    return round(plan["Plan"]["Plan Rows"])


def oldest_first(
    session: Session, newsletter: Newsletter, status: str, after: int, size: int
) -> Page:
    """Return the ``size`` subscriptions after id ``after``, oldest first (``status`` or "all").

    The API's walk of a whole list: keyset pagination as ``list_page``, in the other
    direction, so a subscription added meanwhile lands on a later page; each with its
    unsubscribe token, for its link.
    """
    query = (
        sa.select(Subscription)
        .join(Subscription.subscriber)
        .options(
            contains_eager(Subscription.subscriber), joinedload(Subscription.unsubscribe_token)
        )
        .where(Subscription.newsletter_id == newsletter.id, Subscription.id > after)
        .order_by(Subscription.id)
        .limit(size + 1)
    )
    if status != "all":
        query = query.where(Subscription.status == Status(status))
    rows = list(session.scalars(query))
    return Page(rows[:size], rows[size - 1].id if len(rows) > size else None)


def flagged(flag: str) -> sa.ColumnElement:
    """Return the condition that a subscription's ``address_flags`` hold the word ``flag``.

    A LIKE on the words padded with spaces, the same on SQLite and PostgreSQL (``_``, as in
    no_mx, escaped: to LIKE it is a wildcard). The IS NOT NULL lets both databases use the
    partial index of the flagged rows (migration 0014), so a rare flag is found among those
    rows, not by reading the whole list: at 1,000,000 rows a first page takes 2 to 144 ms
    (bench/RESULTS.md, "Subscriber list at 1M rows").
    """
    if flag not in ADDRESS_FLAGS:
        raise ValueError(f"unknown address flag {flag!r}")
    pattern = "% " + flag.replace("_", "\\_") + " %"
    words = sa.literal(" ", sa.String).concat(Subscription.address_flags).concat(" ")
    return sa.and_(Subscription.address_flags.is_not(None), words.like(pattern, escape="\\"))


def flags_of(subscription: Subscription) -> list[str]:
    """Return the words of ``subscription.address_flags``, in their order (none: [])."""
    return (subscription.address_flags or "").split()


def _not_indexed(column) -> sa.ColumnElement:
    """Return ``+column``: the same value, which SQLite will not look up in an index."""
    return UnaryExpression(column, operator=custom_op("+"), type_=column.type)


def _as_is(column) -> sa.ColumnElement:
    return column


def _starts_with(session: Session, column, prefix: str) -> list[sa.ColumnElement]:
    """Return a range of code points that holds exactly the values starting with ``prefix``.

    Not LIKE: SQLite's LIKE ignores case, so it cannot use the address's unique (binary)
    index, and PostgreSQL's LIKE uses an index only in the C collation. A range in code-point
    order can: SQLite's binary collation is that order, and on PostgreSQL the range is taken
    in the C collation, which migration 0004 indexes.
    """
    if session.get_bind().dialect.name == "postgresql":
        column = column.collate("C")
    bounds = [column >= prefix]
    upper = _successor(prefix)
    if upper is not None:
        bounds.append(column < upper)
    return bounds


def _successor(prefix: str) -> str | None:
    """Return the first string after every string that starts with ``prefix``, if any."""
    while prefix:
        last = ord(prefix[-1]) + 1
        if 0xD800 <= last <= 0xDFFF:
            last = 0xE000  # surrogates cannot be encoded
        if last <= 0x10FFFF:
            return prefix[:-1] + chr(last)
        prefix = prefix[:-1]
    return None
