"""A newsletter's dashboard, its subscriber list, one subscriber's evidence, and erasure."""

import unicodedata
from dataclasses import dataclass

import sqlalchemy as sa
from flask import abort, render_template, request
from flask_login import current_user
from sqlalchemy.orm import Session, contains_eager, joinedload, selectinload
from sqlalchemy.sql.expression import UnaryExpression
from sqlalchemy.sql.operators import custom_op
from werkzeug.exceptions import BadRequest

from .. import db, exports, stats
from ..models import Newsletter, Status, Subscriber, Subscription
from ..subscriptions import services
from ..subscriptions.entry import client_ip, client_user_agent
from . import bp, done, editable_newsletter

PAGE_SIZE = 50
# As many addresses matching a search as make the newest-first walk find a page of them soon.
DENSE = 10_000
STATUSES = tuple(status.value for status in Status)


@dataclass(frozen=True)
class Page:
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


@bp.get("/n/<slug>/")
def dashboard(slug):
    """Show a newsletter's counts, confirmation rate, signups over time and export links."""
    newsletter = editable_newsletter(slug)
    session = db.session()
    days = stats.period()
    series = stats.daily(session, newsletter, days)
    return render_template(
        "admin/dashboard.html",
        newsletter=newsletter,
        counts=stats.counts(session, newsletter),
        unbuilt=stats.unbuilt_mails(session, newsletter),
        rate=stats.confirmation_rate(session, newsletter, days),
        series=series,
        chart=stats.chart(series),
        export_statuses=exports.STATUSES,
        export_formats=sorted(exports.WRITERS),
    )


@bp.get("/n/<slug>/subscribers")
def subscribers(slug):
    """List a newsletter's subscriptions, newest first, by status and address prefix."""
    newsletter = editable_newsletter(slug)
    status = request.args.get("status", "")
    if status and status not in STATUSES:
        raise BadRequest(
            f"There is no status {status[:40]!r}: use one of {', '.join(STATUSES)}, "
            "or leave it out to list every subscription."
        )
    query = unicodedata.normalize("NFC", request.args.get("q", "").strip()).lower()
    if len(query) > 320:
        raise BadRequest("The search is longer than any email address; shorten it.")
    if any(unicodedata.category(ch) == "Cc" for ch in query):
        raise BadRequest("The search may not contain control characters; no address does.")
    after = request.args.get("after", "")
    if after and not (after.isascii() and after.isdigit() and len(after) <= 18):
        raise BadRequest("The page asked for does not exist; start again from the first page.")
    page = list_page(
        db.session(),
        newsletter,
        status=status or None,
        prefix=query or None,
        after=int(after) if after else None,
    )
    return render_template(
        "admin/subscribers.html",
        newsletter=newsletter,
        page=page,
        status=status,
        query=query,
        after=after,
        statuses=STATUSES,
        page_size=PAGE_SIZE,
    )


@bp.get("/n/<slug>/subscribers/<int:subscription_id>")
def subscriber(slug, subscription_id):
    """Show one subscription: the address, its consent evidence and its history."""
    newsletter = editable_newsletter(slug)
    subscription = _subscription_of(newsletter, subscription_id)
    return render_template(
        "admin/subscriber.html", newsletter=newsletter, subscription=subscription
    )


@bp.post("/n/<slug>/subscribers/<int:subscription_id>/unsubscribe")
def subscriber_unsubscribe(slug, subscription_id):
    """Unsubscribe one subscriber by hand, on the record as this editor's doing."""
    newsletter = editable_newsletter(slug)
    subscription = _subscription_of(newsletter, subscription_id)
    changed = services.unsubscribe_by_editor(
        db.session(),
        subscription,
        current_user._get_current_object(),
        ip=client_ip(),
        user_agent=client_user_agent(),
    )
    db.session().commit()
    address = subscription.subscriber.email
    message = f"Unsubscribed {address}." if changed else f"{address} was already unsubscribed."
    return done(message, ".subscriber", slug=slug, subscription_id=subscription_id)


@bp.post("/n/<slug>/subscribers/<int:subscription_id>/delete")
def subscriber_delete(slug, subscription_id):
    """Delete one subscription and its history; erase the address if it has no other."""
    newsletter = editable_newsletter(slug)
    subscription = _subscription_of(newsletter, subscription_id)
    address = subscription.subscriber.email
    erased = services.erase(db.session(), subscription)
    db.session().commit()
    message = (
        f"Deleted {address} and erased the address: it had no other subscription."
        if erased
        else f"Deleted {address} from {newsletter.name}; its other subscriptions remain."
    )
    return done(message, ".subscribers", slug=slug)


def _subscription_of(newsletter: Newsletter, subscription_id: int) -> Subscription:
    """Return the subscription ``subscription_id`` if it belongs to ``newsletter``, else 404."""
    subscription = db.session().scalar(
        sa.select(Subscription)
        .options(joinedload(Subscription.subscriber), selectinload(Subscription.events))
        .where(Subscription.id == subscription_id, Subscription.newsletter_id == newsletter.id)
    )
    if subscription is None:
        abort(404, description="This newsletter has no such subscriber.")
    return subscription
