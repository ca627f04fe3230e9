"""A newsletter's dashboard, its subscriber list, one subscriber's evidence, and erasure."""

import json
import unicodedata
from datetime import UTC, datetime

import sqlalchemy as sa
from flask import Response, abort, render_template, request
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy.orm import joinedload
from werkzeug.exceptions import BadRequest

from .. import db, erasure, export_presets, exports, ledger, stats
from .. import subscribers as listing
from ..ledger import Evidence
from ..models import Newsletter, Subscription
from ..subscriptions import services
from ..subscriptions.entry import client_ip, client_user_agent
from . import admin_required, bp, done, editable_newsletter

# The ticked box of the erase form: an erasure cannot be undone, so it is never one click.
ERASE_CONFIRMATION = "erase"
# The events that begin a consent: the receipt's "signed up" is the latest of them.
SIGNUPS = {
    ledger.Action.SIGNED_UP,
    ledger.Action.RESUBSCRIBED,
    ledger.Action.IMPORTED,
    ledger.Action.JOINED,
}


@bp.get("/n/<slug>/")
def dashboard(slug):
    """Show a newsletter's counts, confirmation rate, signups over ``?days=`` and exports."""
    newsletter = editable_newsletter(slug)
    asked = request.args.get("days")
    try:
        period = stats.period_of(asked)
    except ValueError:
        raise BadRequest(
            _(
                "There is no period of %(days)s days here: days must be one of %(choices)s.",
                days=repr((asked or "")[:20]),
                choices=", ".join(map(str, stats.PERIODS)),
            )
        ) from None
    session = db.session()
    days = stats.shown_days(session, newsletter, period)
    series = stats.series(session, newsletter, days, period)
    return render_template(
        "admin/dashboard.html",
        newsletter=newsletter,
        counts=stats.counts(session, newsletter),
        unbuilt=stats.unbuilt_mails(session, newsletter),
        rate=stats.confirmation_rate(session, newsletter, days),
        series=series,
        chart=stats.chart(series.points),
        periods=stats.PERIODS,
        export_statuses=exports.STATUSES,
        export_formats=sorted(exports.WRITERS),
        presets=[p for p in export_presets.PRESETS.values() if p.name != export_presets.DEFAULT],
    )


@bp.get("/n/<slug>/subscribers")
def subscribers(slug):
    """List a newsletter's subscriptions, newest first, by status, address flag and prefix."""
    newsletter = editable_newsletter(slug)
    status = request.args.get("status", "")
    if status and status not in listing.STATUSES:
        raise BadRequest(
            _(
                "There is no status %(status)s: use one of %(choices)s, "
                "or leave it out to list every subscription.",
                status=repr(status[:40]),
                choices=", ".join(listing.STATUSES),
            )
        )
    flag = request.args.get("flag", "")
    if flag and flag not in listing.ADDRESS_FLAGS:
        raise BadRequest(
            _(
                "There is no address flag %(flag)s: use one of %(choices)s, "
                "or leave it out to list every address.",
                flag=repr(flag[:40]),
                choices=", ".join(listing.ADDRESS_FLAGS),
            )
        )
    query = unicodedata.normalize("NFC", request.args.get("q", "").strip()).lower()
    if len(query) > 320:
        raise BadRequest(_("The search is longer than any email address; shorten it."))
    if any(unicodedata.category(ch) == "Cc" for ch in query):
        raise BadRequest(_("The search may not contain control characters; no address does."))
    after = request.args.get("after", "")
    if after and not (after.isascii() and after.isdigit() and len(after) <= 18):
        raise BadRequest(_("The page asked for does not exist; start again from the first page."))
    page = listing.list_page(
        db.session(),
        newsletter,
        status=status or None,
        prefix=query or None,
        flag=flag or None,
        after=int(after) if after else None,
    )
    return render_template(
        "admin/subscribers.html",
        newsletter=newsletter,
        page=page,
        status=status,
        flag=flag,
        query=query,
        after=after,
        statuses=listing.STATUSES,
        status_labels=listing.STATUS_LABELS,
        flags=listing.ADDRESS_FLAGS,
        page_size=listing.PAGE_SIZE,
    )


@bp.get("/n/<slug>/subscribers/<int:subscription_id>")
def subscriber(slug, subscription_id):
    """Show one subscription: the address, its consent evidence and its ledger."""
    newsletter, subscription, events = _with_ledger(slug, subscription_id)
    return render_template(
        "admin/subscriber.html",
        newsletter=newsletter,
        subscription=subscription,
        status_labels=listing.STATUS_LABELS,
        flags=listing.ADDRESS_FLAGS,
        events=events,
        breaks=ledger.check_chain(events),
    )


@bp.get("/n/<slug>/subscribers/<int:subscription_id>/consent.json")
def subscriber_consent(slug, subscription_id):
    """Download one subscription's consent ledger as JSON, with whether its chain holds."""
    newsletter, subscription, events = _with_ledger(slug, subscription_id)
    breaks = ledger.check_chain(events)
    document = {
        "subscription": ledger.subscription_dict(subscription),
        "ledger": [ledger.as_dict(event) for event in events],
        "verified": not breaks,
        "breaks": [str(found) for found in breaks],
        "exported_at": ledger.instant(datetime.now(UTC)),
    }
    filename = f"{newsletter.slug}-subscriber-{subscription.id}-consent.json"
    return Response(
        json.dumps(document, ensure_ascii=False, indent=2) + "\n",
        mimetype="application/json",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@bp.get("/n/<slug>/subscribers/<int:subscription_id>/receipt")
def subscriber_receipt(slug, subscription_id):
    """Show one subscription's consent receipt: a page to print or save as PDF."""
    newsletter, subscription, events = _with_ledger(slug, subscription_id)
    return render_template(
        "admin/consent_receipt.html",
        newsletter=newsletter,
        subscription=subscription,
        events=events,
        breaks=ledger.check_chain(events),
        signed_up=_last(events, SIGNUPS),
        confirmed=_last(events, {ledger.Action.CONFIRMED}),
        issued_at=datetime.now(UTC),
    )


@bp.post("/n/<slug>/subscribers/<int:subscription_id>/unsubscribe")
def subscriber_unsubscribe(slug, subscription_id):
    """Unsubscribe one subscriber by hand, on the record as this editor's doing."""
    newsletter = editable_newsletter(slug)
    subscription = _subscription_of(newsletter, subscription_id)
    changed = services.unsubscribe_by_editor(
        db.session(), subscription, current_user._get_current_object(), _evidence()
    )
    db.session().commit()
    address = subscription.subscriber.email
    message = (
        _("Unsubscribed %(address)s.", address=address)
        if changed
        else _("%(address)s was already unsubscribed.", address=address)
    )
    return done(message, ".subscriber", slug=slug, subscription_id=subscription_id)


@bp.post("/n/<slug>/subscribers/<int:subscription_id>/delete")
def subscriber_delete(slug, subscription_id):
    """Delete one subscription; its consent ledger stays, as evidence."""
    newsletter = editable_newsletter(slug)
    subscription = _subscription_of(newsletter, subscription_id)
    address = subscription.subscriber.email
    services.delete(db.session(), subscription, current_user._get_current_object(), _evidence())
    db.session().commit()
    message = _(
        "Deleted %(address)s from %(newsletter)s. Its consent history is kept; "
        "to remove the person's data everywhere, an admin can erase the address.",
        address=address,
        newsletter=newsletter.name,
    )
    return done(message, ".subscribers", slug=slug)


@bp.post("/n/<slug>/subscribers/<int:subscription_id>/erase")
@admin_required
def subscriber_erase(slug, subscription_id):
    """Erase the person behind a subscription everywhere, at their request (admins only)."""
    newsletter = editable_newsletter(slug)
    subscription = _subscription_of(newsletter, subscription_id)
    if request.form.get("confirm") != ERASE_CONFIRMATION:
        raise BadRequest(
            _(
                "Nothing was erased: tick the box that confirms the person asked for their "
                "data to be erased, then press Erase again."
            )
        )
    erasure.erase(
        db.session(),
        subscription.subscriber.email,
        _evidence(),
        f"erased at the person's request, by admin {current_user.email}",
    )
    db.session().commit()
    # The address stays out of the message: it would sit in the session cookie until shown.
    message = _(
        "Erased subscriber %(id)s everywhere: their address and personal data are "
        "gone from every newsletter, and the address can come back only by its owner's own "
        "confirmed signup. The consent ledger keeps that consent existed and was withdrawn.",
        id=subscription_id,
    )
    return done(message, ".subscribers", slug=slug)


def _evidence() -> Evidence:
    return Evidence(ip=client_ip(), user_agent=client_user_agent(), source="admin")


def _subscription_of(newsletter: Newsletter, subscription_id: int) -> Subscription:
    """Return the subscription ``subscription_id`` if it belongs to ``newsletter``, else 404."""
    subscription = db.session().scalar(
        sa.select(Subscription)
        .options(joinedload(Subscription.subscriber))
        .where(Subscription.id == subscription_id, Subscription.newsletter_id == newsletter.id)
    )
    if subscription is None:
        abort(404, description=_("This newsletter has no such subscriber."))
    return subscription


def _with_ledger(slug: str, subscription_id: int) -> tuple[Newsletter, Subscription, list]:
    """Return the newsletter, the subscription and its ledger rows, for an editor of it."""
    newsletter = editable_newsletter(slug)
    subscription = _subscription_of(newsletter, subscription_id)
    return newsletter, subscription, ledger.history(db.session(), [subscription.id])


def _last(events: list, actions: set[ledger.Action]):
    """Return the latest of ``events`` whose action is one of ``actions``, or None."""
    return next((e for e in reversed(events) if e.action in actions), None)
