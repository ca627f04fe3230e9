"""Named queries of a newsletter's subscriptions: the subscriber list, its pages and search.

The one home of the list's query, for the editors' area and the API alike (listmonk keeps its
queries apart from its handlers the same way); and what the address checks' flags are called.
"""

from dataclasses import dataclass

import sqlalchemy as sa
from flask_babel import lazy_gettext as _l
from flask_babel.speaklater import LazyString
from sqlalchemy.orm import Session, contains_eager, joinedload
from sqlalchemy.sql.expression import UnaryExpression
from sqlalchemy.sql.operators import custom_op

from .models import Newsletter, Status, Subscriber, Subscription

PAGE_SIZE = 50
# As many addresses matching a search as make the newest-first walk find a page of them soon.
DENSE = 10_000
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
    flag: str | None = None,
    after: int | None = None,
    size: int = PAGE_SIZE,
) -> Page:
    """Return the ``size`` newest subscriptions below id ``after``: keyset pagination.

    Newest first by id, so each page is one index range however deep it lies, where an
    OFFSET would walk every row before it. ``flag`` keeps those whose address check found
    it (one of ``ADDRESS_FLAGS``).
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
    if flag:
        query = query.where(flagged(flag))
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
