"""The reader's preference centre: every newsletter of one address, behind its own link.

A link opens it for the address that owns its token: an unsubscribe link (permanent, in every
mail and export), a preference link mailed on request ("send me my link", ``links``), or a
confirmation link still valid (the confirmation mail's own second link). Whoever holds one
holds the inbox, so joining from here is a confirmed subscription. GET shows; POST acts: save
the ticks, leave everything, mail a link to the data download, or erase the address.

The use cases sit below the views as functions that flush and never commit, like the services.
"""

import json

import sqlalchemy as sa
from flask import Blueprint, Response, current_app, jsonify, render_template, request
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import ngettext
from sqlalchemy.orm import Session
from werkzeug.exceptions import BadRequest

from .. import db, erasure, headers, i18n, ledger, limits, tokens, wakeup
from ..db import insert_ignoring, utcnow
from ..ledger import Action, Evidence
from ..models import (
    ConsentEvent,
    Newsletter,
    OutboxKind,
    Status,
    Subscriber,
    Subscription,
    Token,
    TokenPurpose,
)
from ..negotiation import wants_json
from . import links, services
from .entry import client_ip, client_user_agent
from .forms import ticked_newsletters

bp = Blueprint("preferences", __name__)

SOURCE = "preferences"
# The tokens whose links open the preference centre.
OPENS = (TokenPurpose.UNSUBSCRIBE, TokenPurpose.PREFERENCES, TokenPurpose.CONFIRM)
# What the pages say, in the request's language (lazy: made into text where they are used).
INVALID = _l("This link is not valid. Check that it was copied whole, or ask for a new one.")
EXPIRED = _l("This link has expired. Ask for a new one: we mail it to the address.")
DATA_INVALID = _l("This download link is not valid. Check that it was copied whole.")
DATA_EXPIRED = _l("This download link has expired. Ask for a new one from your preference page.")
TOO_MANY_MAILS = _l(
    "We have sent this address as many mails as we may today. Ask for your data again tomorrow."
)
ERASE_UNCONFIRMED = _l(
    "Tick the box to confirm that you want your data erased. Nothing was erased."
)
# Records, kept in English whatever the page's language: the ledger's detail of an erasure,
ERASE_DETAIL = "erased at the person's request, from the preference centre"
# and what it keeps as the text a reader agreed to when joining here (no address in it: the
# texts outlive every erasure).
JOIN_TEXT = "{name}: ticked on the preference page and saved"
ACTIONS = ("save", "leave_all", "send_data", "send_link", "erase")
# The links under which the page may erase: mailed lately, so they prove the inbox now. An
# unsubscribe link travels further (in every export, in forwarded mails): under it the page
# mails a fresh link first.
ERASES = (TokenPurpose.PREFERENCES, TokenPurpose.CONFIRM)
ERASE_NEEDS_MAILED_LINK = _l(
    "To erase your data, open the link we mail you: press “Mail me a link” on this page. "
    "Nothing was erased."
)


@bp.get("/preferences")
def ask():
    """Show the "send me my link" form."""
    return _ask_page()


@bp.post("/preferences")
@limits.signup
def send_link():
    """Accept a "send me my link": the same answer, in the same time, whatever the address."""
    emails = request.form.getlist("email")
    if len(emails) > 1:
        raise BadRequest(_("The field 'email' was sent more than once; send it once."))
    try:
        address = services.normalise_address(emails[0] if emails else "")
    except services.InvalidSignup as exc:
        return _ask_page(email=emails[0] if emails else "", error=exc.message, status=400)
    links.request_link(db.session(), address, client_ip())
    db.session().commit()
    wakeup.notify()
    sent = ngettext(
        "If this address is on any of our lists, we've sent it a link. It works for %(num)d hour.",
        "If this address is on any of our lists, we've sent it a link. It works for %(num)d hours.",
        current_app.config["CONFIRM_TTL_HOURS"],
    )
    return render_template("subscriptions/preferences_ask.html", sent=sent, email="", error=None)


@bp.get("/preferences/<token>")
@headers.secret_link
def page(token):
    """Show every newsletter of the address that owns this link; change nothing."""
    opened = preference_token(db.session(), token)
    i18n.speak_to(opened.subscriber.subscriptions)
    return _page(opened, token)


@bp.post("/preferences/<token>")
@headers.secret_link
def act(token):
    """Do what the pressed button says (``action``): save, leave all, send data, erase."""
    session = db.session()
    opened = preference_token(session, token)
    subscriber = opened.subscriber
    i18n.speak_to(subscriber.subscriptions)
    action = request.form.get("action")
    if action not in ACTIONS:
        raise BadRequest(_("Press one of the page's buttons: the form did not say what to do."))
    evidence = Evidence(ip=client_ip(), user_agent=client_user_agent(), source=SOURCE)
    if action == "erase":
        if opened.purpose not in ERASES:
            return _page(opened, token, error=ERASE_NEEDS_MAILED_LINK, status=403)
        if request.form.get("confirm_erase") != "yes":
            return _page(opened, token, error=ERASE_UNCONFIRMED, status=400)
        email = subscriber.email
        erasure.erase(session, email, evidence, ERASE_DETAIL)
        session.commit()
        return render_template("subscriptions/preferences_erased.html", email=email)
    if action == "save":
        changed = save_choices(session, subscriber, ticked_newsletters(), evidence)
        notice = (
            _("Saved.") if changed else _("Nothing to change: your choices were saved already.")
        )
    elif action == "leave_all":
        left = leave_all(session, subscriber, evidence)
        notice = (
            _("You are unsubscribed from every newsletter.")
            if left
            else _("You were not on any newsletter; nothing changed.")
        )
    elif action == "send_link" and send_preferences_link(session, subscriber):
        notice = ngettext(
            "We've sent a link to %(email)s: open it to erase your data. "
            "It works for %(num)d hour.",
            "We've sent a link to %(email)s: open it to erase your data. "
            "It works for %(num)d hours.",
            current_app.config["CONFIRM_TTL_HOURS"],
            email=subscriber.email,
        )
    elif action == "send_data" and send_data_link(session, subscriber):
        notice = ngettext(
            "We've sent a link to download your data to %(email)s. It works for %(num)d hour.",
            "We've sent a link to download your data to %(email)s. It works for %(num)d hours.",
            current_app.config["CONFIRM_TTL_HOURS"],
            email=subscriber.email,
        )
    elif action in ("send_data", "send_link"):
        session.rollback()
        return _page(opened, token, error=TOO_MANY_MAILS, status=429)
    session.commit()
    if action in ("send_data", "send_link"):
        wakeup.notify()
    session.expire_all()
    return _page(opened, token, notice=notice)


@bp.get("/preferences/data/<token>")
@headers.secret_link
def data(token):
    """Download everything kept about the address as JSON; change nothing."""
    session = db.session()
    subscriber = data_owner(session, token)
    body = json.dumps(data_of(session, subscriber), ensure_ascii=False, indent=2)
    return Response(
        body,
        mimetype="application/json",
        headers={"Content-Disposition": 'attachment; filename="newsletters-my-data.json"'},
    )


@bp.errorhandler(services.LinkError)
def link_error(exc: services.LinkError):
    """Say why a preference or download link cannot be used, and offer a new one."""
    if wants_json():
        return jsonify(error="link", message=exc.message), exc.status
    page = render_template("subscriptions/preferences_link_error.html", message=exc.message)
    return page, exc.status


def _ask_page(email: str = "", error: str | None = None, status: int = 200):
    page = render_template(
        "subscriptions/preferences_ask.html", sent=None, email=email, error=error
    )
    return page, status


def _page(opened: Token, secret: str, notice=None, error=None, status: int = 200):
    # As text: a lazy one would pass as markup (it has __html__), unescaped.
    notice, error = (str(text) if text else None for text in (notice, error))
    subscriber = opened.subscriber
    subscriptions, others = choices(db.session(), subscriber)
    page = render_template(
        "subscriptions/preferences.html",
        subscriber=subscriber,
        subscriptions=subscriptions,
        others=others,
        secret=secret,
        notice=notice,
        error=error,
        unsubscribed=Status.UNSUBSCRIBED,
        pending=Status.PENDING,
        may_erase=opened.purpose in ERASES,
    )
    return page, status


# The use cases: flush, never commit.


def preference_token(session: Session, secret: str) -> Token:
    """Return the token whose link ``secret`` opens the preference centre; else ``LinkError``.

    Unsubscribe links never expire; preference and confirmation links (used or not) open it
    until they expire. The token's ``subscriber`` is the address the page is about.
    """
    token = _token(session, secret, OPENS)
    if token is None:
        raise services.LinkError(str(INVALID), 404)
    if token.purpose != TokenPurpose.UNSUBSCRIBE and _expired(token):
        raise services.LinkError(str(EXPIRED), 410)
    return token


def data_owner(session: Session, secret: str) -> Subscriber:
    """Return the address whose data link ``secret`` is, while it is valid; else ``LinkError``."""
    token = _token(session, secret, (TokenPurpose.DATA,))
    if token is None:
        raise services.LinkError(str(DATA_INVALID), 404)
    if _expired(token):
        raise services.LinkError(str(DATA_EXPIRED), 410)
    return token.subscriber


def _token(session: Session, secret: str, purposes: tuple) -> Token | None:
    # One lookup for every purpose that may open the page (tokens.find checks one).
    if not secret or len(secret) > tokens.MAX_TOKEN_LENGTH:
        return None
    return session.scalar(
        sa.select(Token).where(
            Token.digest == tokens.digest_of(secret), Token.purpose.in_(purposes)
        )
    )


def _expired(token: Token) -> bool:
    return token.expires_at is not None and token.expires_at <= utcnow()


def choices(session: Session, subscriber: Subscriber) -> tuple[list, list[Newsletter]]:
    """Return the address's subscriptions by name, and the public newsletters it is not on."""
    subscriptions = sorted(subscriber.subscriptions, key=lambda s: (s.newsletter.name, s.id))
    on = {s.newsletter_id for s in subscriptions}
    others = [n for n in _public(session) if n.id not in on]
    return subscriptions, others


def _public(session: Session) -> list[Newsletter]:
    # From the session, not catalogue.published(): its connection of its own would wait for
    # the write lock this session holds on SQLite.
    return list(
        session.scalars(
            sa.select(Newsletter)
            .where(Newsletter.is_public)
            .order_by(Newsletter.name, Newsletter.id)
        )
    )


def save_choices(
    session: Session, subscriber: Subscriber, chosen: set[int], evidence: Evidence
) -> int:
    """Join the ticked newsletters and leave the unticked ones; return how many changed.

    Ticked may be any newsletter the address is on, or any public one. Anything else is
    refused (``BadRequest``) before a change is made.
    """
    mine = {s.newsletter_id: s for s in subscriber.subscriptions}
    public = {n.id for n in _public(session)}
    unknown = chosen - set(mine) - public
    if unknown:
        raise BadRequest(_("A ticked newsletter cannot be joined from here. Reload the page."))
    changed = 0
    for newsletter_id, subscription in mine.items():
        if newsletter_id not in chosen:
            changed += services.leave(session, subscription, evidence)
    for newsletter_id in sorted(chosen):
        changed += join(session, subscriber, newsletter_id, evidence)
    return changed


def join(session: Session, subscriber: Subscriber, newsletter_id: int, evidence: Evidence) -> bool:
    """Make the address's subscription to ``newsletter_id`` confirmed; False if it was already.

    The link proves the inbox, so no confirmation mail is needed. The row is locked first:
    of two saves racing, one changes it and records the event; the other finds it confirmed.
    """
    now = utcnow()
    name = session.scalar(sa.select(Newsletter.name).where(Newsletter.id == newsletter_id))
    shown = JOIN_TEXT.format(name=name)
    evidence = Evidence(
        ip=evidence.ip, user_agent=evidence.user_agent, source=evidence.source, form_text=shown
    )
    session.execute(
        insert_ignoring(session, Subscription.__table__, ["newsletter_id", "subscriber_id"]),
        [
            {
                "newsletter_id": newsletter_id,
                "subscriber_id": subscriber.id,
                # Made unsubscribed, and joined just below: a new opt-in, with this evidence.
                "status": Status.UNSUBSCRIBED,
                "source": SOURCE,
                "created_at": now,
            }
        ],
    )
    # Locked (SQLite's writers take turns anyway): what is decided below stays true.
    subscription = session.scalar(
        sa.select(Subscription)
        .where(
            Subscription.newsletter_id == newsletter_id,
            Subscription.subscriber_id == subscriber.id,
        )
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if subscription.status == Status.CONFIRMED:
        return False
    values = {
        "status": Status.CONFIRMED,
        "confirmed_at": now,
        "confirm_ip": evidence.ip,
        "unsubscribed_at": None,
    }
    if subscription.status == Status.UNSUBSCRIBED:
        # A new opt-in, given here. A pending signup keeps its own: this is its confirmation.
        values |= {
            "optin_at": now,
            "optin_ip": evidence.ip,
            "optin_user_agent": evidence.user_agent,
            "form_text": shown,
            "text_digest": ledger.text_digest(shown),
            "origin": None,
        }
    session.execute(
        sa.update(Subscription)
        .where(Subscription.id == subscription.id, Subscription.status != Status.CONFIRMED)
        .values(values)
        .execution_options(synchronize_session=False)
    )
    session.expire(subscription)
    if subscription.unsubscribe_token_id is None:
        # Every mail of a newsletter carries its subscription's unsubscribe link.
        subscription.unsubscribe_token = tokens.issue(session, TokenPurpose.UNSUBSCRIBE, subscriber)
        session.flush()
    services.record(session, subscription, Action.JOINED, evidence)
    # The person's own choice, like a confirmed signup: an earlier erasure no longer holds.
    erasure.forget(session, subscriber.email)
    session.expire(subscriber, ["subscriptions"])
    session.flush()
    return True


def leave_all(session: Session, subscriber: Subscriber, evidence: Evidence) -> int:
    """Unsubscribe the address from every newsletter; return how many it left."""
    return sum(services.leave(session, s, evidence) for s in list(subscriber.subscriptions))


def send_preferences_link(session: Session, subscriber: Subscriber) -> bool:
    """Queue a mail to the address with a fresh preference link; False if over budget.

    The mail is in the language of the page it was asked from.
    """
    mailed = links.queue(
        session,
        [subscriber.email],
        TokenPurpose.PREFERENCES,
        OutboxKind.PREFERENCES_LINK,
        on_a_list=False,
        languages={subscriber.email: i18n.current_language()},
    )
    return bool(mailed)


def send_data_link(session: Session, subscriber: Subscriber) -> bool:
    """Queue a mail to the address with a link to download its data; False if over budget.

    The link works for CONFIRM_TTL_HOURS; the mail counts against the address's daily budget
    (CONFIRM_MAILS_PER_DAY), so a link held by someone else cannot flood the inbox. The mail
    is in the language of the page it was asked from.
    """
    mailed = links.queue(
        session,
        [subscriber.email],
        TokenPurpose.DATA,
        OutboxKind.DATA_LINK,
        on_a_list=False,
        languages={subscriber.email: i18n.current_language()},
    )
    return bool(mailed)


def data_of(session: Session, subscriber: Subscriber) -> dict:
    """Return everything kept about the address: its subscriptions and its consent ledger.

    The ledger's rows include those of subscriptions an editor has since deleted.
    """
    subscriptions = sorted(subscriber.subscriptions, key=lambda s: s.id)
    ids = {s.id for s in subscriptions} | set(
        session.scalars(
            sa.select(ConsentEvent.subscription_id)
            .where(ConsentEvent.subscriber_id == subscriber.id)
            .distinct()
        )
    )
    history = ledger.history(session, sorted(ids))
    slugs = dict(
        session.execute(
            sa.select(Newsletter.id, Newsletter.slug).where(
                Newsletter.id.in_({row.newsletter_id for row in history})
            )
        ).all()
    )
    return {
        "email": subscriber.email,
        "known_since": ledger.instant(subscriber.created_at),
        "exported_at": ledger.instant(utcnow()),
        "subscriptions": [ledger.subscription_dict(s) for s in subscriptions],
        "consent_history": [
            ledger.as_dict(row) | {"newsletter": slugs.get(row.newsletter_id)} for row in history
        ],
    }
