"""A newsletter's dashboard, its subscriber list, one subscriber's evidence, and erasure."""

import unicodedata

import sqlalchemy as sa
from flask import abort, render_template, request
from flask_login import current_user
from sqlalchemy.orm import joinedload, selectinload
from werkzeug.exceptions import BadRequest

from .. import db, exports, stats
from .. import subscribers as listing
from ..models import Newsletter, Subscription
from ..subscriptions import services
from ..subscriptions.entry import client_ip, client_user_agent
from . import bp, done, editable_newsletter


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
    if status and status not in listing.STATUSES:
        raise BadRequest(
            f"There is no status {status[:40]!r}: use one of {', '.join(listing.STATUSES)}, "
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
    page = listing.list_page(
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
        statuses=listing.STATUSES,
        page_size=listing.PAGE_SIZE,
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
