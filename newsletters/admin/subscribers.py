"""A newsletter's dashboard, its subscriber list, one subscriber's evidence, and erasure."""

import json
import unicodedata
from datetime import UTC, datetime

import sqlalchemy as sa
from flask import (
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import format_number, format_timedelta, ngettext
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
from . import admin_required, bp, done, editable_newsletter, local_path

# What can be done to the subscriptions ticked in the list, and to how many at once.
SELECTION_ACTIONS = ("unsubscribe", "delete", "export")
SELECTION_MAX = 500
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
    """List a newsletter's subscriptions, newest first, by status, address flag and search."""
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
    try:
        position = listing.Position.parse(after) if after else None
    except ValueError:
        raise BadRequest(
            _("The page asked for does not exist; start again from the first page.")
        ) from None
    session = db.session()
    # One search for the page and its count: its index is asked once.
    search = listing.Search(query) if query else None
    filters = {"status": status or None, "search": search, "flag": flag or None}
    page = listing.list_page(session, newsletter, after=position, **filters)
    total = listing.total(
        session,
        newsletter,
        kept=current_app.extensions.setdefault("subscriber_counts", {}),
        keep_seconds=listing.COUNT_KEEP_SECONDS,
        **filters,
    )
    return render_template(
        "admin/subscribers.html",
        newsletter=newsletter,
        page=page,
        total=total,
        total_text=_total_text(total, bool(query or status or flag)),
        status=status,
        flag=flag,
        query=query,
        short_query=bool(query) and len(query) < listing.SEARCH_MIN,
        after=after,
        statuses=listing.STATUSES,
        status_labels=listing.STATUS_LABELS,
        flags=listing.ADDRESS_FLAGS,
        page_size=listing.PAGE_SIZE,
        search_min=listing.SEARCH_MIN,
    )


@bp.post("/n/<slug>/subscribers/selection")
def subscribers_selection(slug):
    """Act on the subscriptions ticked in the list: export them, or ask before changing them.

    The export is a download at once (it changes nothing); unsubscribing and deleting cannot
    be undone by an editor, so they are named on a page of their own first, and done only
    by that page's button (``subscribers_selection_apply``).
    """
    newsletter = editable_newsletter(slug)
    action = request.form.get("action", "")
    if action not in SELECTION_ACTIONS:
        raise BadRequest(
            _(
                "There is no action %(action)s for a selection: use one of %(choices)s.",
                action=repr(action[:40]),
                choices=", ".join(SELECTION_ACTIONS),
            )
        )
    chosen = _selection(newsletter)
    if action == "export":
        return _export_selection(newsletter, chosen)
    return render_template(
        "admin/subscribers_confirm.html",
        newsletter=newsletter,
        action=action,
        chosen=chosen,
        status_labels=listing.STATUS_LABELS,
        back=_back(),
    )


@bp.post("/n/<slug>/subscribers/selection/<any(unsubscribe, delete):action>")
def subscribers_selection_apply(slug, action):
    """Unsubscribe or delete the confirmed selection, each through the one-subscriber service.

    The same service as the subscriber's own page, per subscription, so the consent ledger
    names this editor for each, the change feed and webhooks hear of each, and a delete keeps
    the ledger and the address (an erasure stays a person's request, one at a time).
    """
    newsletter = editable_newsletter(slug)
    chosen = _selection(newsletter)
    session = db.session()
    editor = current_user._get_current_object()
    evidence = _evidence()
    if action == "unsubscribe":
        changed = sum(services.unsubscribe_by_editor(session, s, editor, evidence) for s in chosen)
        session.commit()
        message = ngettext(
            "Unsubscribed %(num)d subscriber.",
            "Unsubscribed %(num)d subscribers.",
            changed,
        )
        if changed < len(chosen):
            message += " " + ngettext(
                "%(num)d was already unsubscribed.",
                "%(num)d were already unsubscribed.",
                len(chosen) - changed,
            )
    else:
        for subscription in chosen:
            services.delete(session, subscription, editor, evidence)
        session.commit()
        message = ngettext(
            "Deleted %(num)d subscriber from %(newsletter)s. Its consent history is kept.",
            "Deleted %(num)d subscribers from %(newsletter)s. Their consent history is kept.",
            len(chosen),
            newsletter=newsletter.name,
        )
    target = _back()
    flash(message)
    return redirect(target, 303)


def _total_text(total: listing.Total, filtered: bool) -> str:
    """Return the list's count in words, saying how sure it is: exact, counted when, or about."""
    num = format_number(total.value)
    if total.how == "exact":
        if filtered:
            return ngettext(
                "%(count)s subscription matches.",
                "%(count)s subscriptions match.",
                total.value,
                count=num,
            )
        return ngettext(
            "%(count)s subscription.", "%(count)s subscriptions.", total.value, count=num
        )
    if total.how == "estimate":
        # Two significant digits: the statistics are no surer than that.
        about = format_number(round(total.value, 1 - len(str(total.value))))
        if filtered:
            return _("About %(count)s subscriptions match (estimated).", count=about)
        return _("About %(count)s subscriptions (estimated).", count=about)
    if total.how == "more_than":
        return _("More than %(count)s subscriptions match.", count=num)
    age = total.counted_at - datetime.now(UTC)  # negative: in the past
    recent = age.total_seconds() > -60
    ago = _("just now") if recent else format_timedelta(age, add_direction=True)
    if filtered:
        return ngettext(
            "%(count)s subscription matches, counted %(ago)s.",
            "%(count)s subscriptions match, counted %(ago)s.",
            total.value,
            count=num,
            ago=ago,
        )
    return ngettext(
        "%(count)s subscription, counted %(ago)s.",
        "%(count)s subscriptions, counted %(ago)s.",
        total.value,
        count=num,
        ago=ago,
    )


def _selection(newsletter: Newsletter) -> list[Subscription]:
    """Return the ticked subscriptions (form fields ``id``), newest first; else a clear 400.

    Every id must be one of this newsletter's subscriptions: one that is not (another
    newsletter's, or one deleted meanwhile) refuses the whole selection, so nothing is done
    to a list other than the one the editor looked at.
    """
    given = request.form.getlist("id")
    if not given:
        raise BadRequest(
            _("No subscriber was selected: tick the box of each one to act on, then try again.")
        )
    if len(given) > SELECTION_MAX:
        raise BadRequest(
            _(
                "At most %(max)d subscribers can be acted on at once; select fewer.",
                max=SELECTION_MAX,
            )
        )
    if not all(value.isascii() and value.isdigit() and len(value) <= 18 for value in given):
        raise BadRequest(
            _("A selected subscriber is not known by that number; reload the list and try again.")
        )
    ids = {int(value) for value in given}
    chosen = list(
        db.session().scalars(
            sa.select(Subscription)
            .options(joinedload(Subscription.subscriber))
            .where(Subscription.newsletter_id == newsletter.id, Subscription.id.in_(ids))
            .order_by(Subscription.id.desc())
        )
    )
    if len(chosen) != len(ids):
        raise BadRequest(
            ngettext(
                "%(num)d of the selected subscribers is not on %(newsletter)s (it may have been "
                "deleted meanwhile); nothing was done. Reload the list and select again.",
                "%(num)d of the selected subscribers are not on %(newsletter)s (they may have "
                "been deleted meanwhile); nothing was done. Reload the list and select again.",
                len(ids) - len(chosen),
                newsletter=newsletter.name,
            )
        )
    return chosen


def _export_selection(newsletter: Newsletter, chosen: list[Subscription]) -> Response:
    """Return the selected subscriptions as the export's CSV, recorded in the export log."""
    session = db.session()
    entry = exports.record(
        session, newsletter, current_user._get_current_object(), "admin", "selection", "csv"
    )
    entry.rows = len(chosen)
    session.commit()
    rows = exports.records(session, newsletter, "all", ids=[s.id for s in chosen])
    # A page's worth of rows at most: written whole, inside the request (the links need it).
    return Response(
        "".join(exports.csv_chunks(rows)),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{newsletter.slug}-selection.csv"'},
    )


def _back() -> str:
    """Return the list page the selection was made on (form field ``back``), else the list."""
    return local_path(request.form.get("back")) or url_for(
        ".subscribers", slug=request.view_args["slug"]
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
