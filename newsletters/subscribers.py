"""Named queries of a newsletter's subscriptions: the subscriber list, its pages and search.

The one home of the list's query, for the editors' area and the API alike (listmonk keeps its
queries apart from its handlers the same way).
"""

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session, contains_eager, joinedload
from sqlalchemy.sql.expression import UnaryExpression
from sqlalchemy.sql.operators import custom_op

from .models import Newsletter, Status, Subscriber, Subscription

PAGE_SIZE = 50
# As many addresses matching a search as make the newest-first walk find a page of them soon.
DENSE = 10_000
STATUSES = tuple(status.value for status in Status)


@dataclass(frozen=True)
class Page:
    """One page of the list, newest first."""

    subscriptions: list[Subscription]
    # The ``after`` of the next page; None on the last page.
    next_after: int | None


def list_page(
    session: Session,
    newsletter: Newsletter,
    *,
    status: str | None = None,
    prefix: str | None = None,
    after: int | None = None,
    size: int = PAGE_SIZE,
) -> Page:
    """Return the ``size`` newest subscriptions below id ``after``: keyset pagination.

    Newest first by id, so each page is one index range however deep it lies, where an
    OFFSET would walk every row before it.
    """
    matching = _starts_with(session, Subscriber.email, prefix) if prefix else []
    # SQLite plans without statistics: given a prefix, it walks the list newest first and
    # tests each address, which takes a whole scan of a big list when few addresses match.
    # Then a unary + on the list's own columns (SQLite's documented way to keep a term from
    # an index) makes it start from the matching addresses instead. PostgreSQL has
    # statistics and picks either way well by itself.
    address_first = (
        bool(prefix)
        and session.get_bind().dialect.name == "sqlite"
        and _few_match(session, matching)
    )
    own = _not_indexed if address_first else _as_is
    query = (
        sa.select(Subscription)
        .join(Subscription.subscriber)
        .options(contains_eager(Subscription.subscriber))
        .where(own(Subscription.newsletter_id) == newsletter.id)
        .order_by(Subscription.id.desc())
        .limit(size + 1)
    )
    if status:
        query = query.where(own(Subscription.status) == Status(status))
    if after is not None:
        query = query.where(own(Subscription.id) < after)
    if prefix:
        query = query.where(*matching)
    rows = session.scalars(query).all()
    return Page(list(rows[:size]), rows[size - 1].id if len(rows) > size else None)


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


def _few_match(session: Session, matching: list[sa.ColumnElement]) -> bool:
    """Tell whether fewer than ``DENSE`` addresses match: a look at the index, no more."""
    probe = sa.select(Subscriber.id).where(*matching).limit(DENSE).subquery()
    return session.scalar(sa.select(sa.func.count()).select_from(probe)) < DENSE


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
