"""The mails after a signup: the welcome after a confirmation, the one reminder before it.

Both are off unless a newsletter's editors turn them on (``Newsletter.welcome_enabled``,
``Newsletter.reminder_hours``), and both carry only the newsletter's texts and what the
product itself knows (times, the form's version, the source): nothing the signer typed.

``queue_welcome`` runs in the confirmation's own transaction. ``queue_reminders`` is
set-based and runs from the worker (``Reminders``, about once a minute): it finds the signups
whose confirmation mail went out ``reminder_hours`` ago and whose link still works, and
queues one reminder per link, counted against the address's daily mail budget.

Each mail carries its reader's language (``Subscription.language``) in its payload: the worker
writes it in that language.
"""

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import Session

from . import db, i18n
from .db import utcnow
from .models import (
    Newsletter,
    OutboxKind,
    OutboxMessage,
    Status,
    Subscriber,
    Subscription,
    Suppression,
    Token,
    TokenPurpose,
    token_subscription,
)
from .subscriptions import processing

log = logging.getLogger(__name__)

OUTBOX = OutboxMessage.__table__
SUBSCRIPTIONS = Subscription.__table__
SUBSCRIBERS = Subscriber.__table__
TOKENS = Token.__table__
# Addresses one reminder batch handles at most: a transaction of bounded size.
REMINDER_BATCH = 500
# A running worker looks for due reminders this often: they are due by the hour, not second.
REMINDER_INTERVAL_SECONDS = 60.0
# How many characters of the form text's digest the receipt shows: enough to tell versions.
RECEIPT_DIGEST_LENGTH = 12


def _(text: str) -> str:
    """Mark ``text`` for the catalogue; the welcome mail's template translates it."""
    return text


def queue_welcome(session: Session, subscriptions: Iterable[Subscription], now: datetime) -> int:
    """Queue the welcome mail of each just-confirmed subscription whose newsletter sends one.

    One mail per newsletter, to the subscriber's address, with the consent receipt and a link
    to the preference centre (the subscription's unsubscribe token). It does not count against
    the address's daily budget of confirmation mails: the reader asked for it by confirming,
    so it cannot be used to flood an inbox. Returns the mails queued; flushes, never commits.
    """
    due = [
        s
        for s in subscriptions
        if s.status == Status.CONFIRMED
        and s.newsletter.welcome_enabled
        and s.unsubscribe_token_id is not None
    ]
    if not due:
        return 0
    suppressed = set(
        session.execute(
            sa.select(Suppression.email, Suppression.newsletter_id).where(
                Suppression.email.in_({s.subscriber.email for s in due}),
                Suppression.newsletter_id.in_({s.newsletter_id for s in due}),
            )
        ).all()
    )
    rows = [
        processing.outbox_row(
            OutboxKind.WELCOME,
            s.subscriber.email,
            _payload(
                token_id=s.unsubscribe_token_id,
                newsletter_ids=[s.newsletter_id],
                receipt=receipt(s, now),
                language=s.language,
            ),
            now,
        )
        for s in due
        if (s.subscriber.email, s.newsletter_id) not in suppressed
    ]
    if rows:
        session.execute(sa.insert(OUTBOX), rows)
    return len(rows)


def receipt(subscription: Subscription, confirmed_at: datetime) -> dict[str, str]:
    """Return the consent receipt of ``subscription``: label → value, nothing the signer typed.

    The labels are stored in English, as queued mails already hold them, and translated by
    the mail's template. The values are the record's own: times in ISO 8601, in UTC.
    """
    return receipt_of(
        subscription.newsletter.name,
        subscription.optin_at,
        confirmed_at,
        subscription.text_digest,
        str(subscription.source),
    )


def receipt_of(
    newsletter: str,
    signed_up_at: datetime | None,
    confirmed_at: datetime,
    digest: str | None,
    source: str,
) -> dict[str, str]:
    """Return a consent receipt of these facts (``receipt``; an editor's test mail shows one)."""
    return {
        _("Newsletter"): newsletter,
        _("Signed up"): _iso(signed_up_at) or "—",
        _("Confirmed"): _iso(confirmed_at),
        _("Form text version"): digest[:RECEIPT_DIGEST_LENGTH] if digest else "—",
        _("Source"): source,
    }


def _payload(language: str | None, **payload) -> dict:
    """Return a mail's payload: ``payload``, and the reader's language when it is known."""
    language = i18n.supported(language)
    return (payload | {"language": language}) if language else payload


@dataclass(frozen=True)
class Reminded:
    """What one call of ``queue_reminders`` did: addresses looked at, reminders queued."""

    addresses: int = 0
    queued: int = 0


def queue_reminders(session: Session, now: datetime, limit: int = REMINDER_BATCH) -> Reminded:
    """Queue the due reminders of up to ``limit`` addresses; say how many it looked at and queued.

    A reminder is due for a pending subscription of a newsletter with ``reminder_hours``,
    whose confirmation mail went out at least that long ago, that was never reminded, and
    whose latest confirmation link is unused and unexpired: so none goes out after a
    confirmation, an unsubscription or the link's expiry. One mail per link (a signup to
    several newsletters is one link), counted against the address's daily mail budget.
    ``reminded_at`` is set on every subscription considered, also when the budget refused
    the mail: at most one reminder is ever attempted. On PostgreSQL the addresses and
    subscriptions are locked with SKIP LOCKED, so two workers cannot both queue one.
    Flushes, never commits; the caller commits once per call.
    """
    cutoffs = _reminder_cutoffs(session, now)
    if not cutoffs:
        return Reminded()
    postgresql = session.get_bind().dialect.name == "postgresql"
    due = _due(cutoffs, now)
    subscriber_ids = session.scalars(
        sa.select(SUBSCRIPTIONS.c.subscriber_id)
        .where(due)
        .group_by(SUBSCRIPTIONS.c.subscriber_id)
        .order_by(SUBSCRIPTIONS.c.subscriber_id)
        .limit(limit)
    ).all()
    if not subscriber_ids:
        return Reminded()
    # Addresses first, then their subscriptions, as signup processing locks them: no
    # deadlock with it. SKIP LOCKED: an address another worker holds waits for next round.
    addresses = (
        sa.select(
            SUBSCRIBERS.c.id,
            SUBSCRIBERS.c.email,
            SUBSCRIBERS.c.mail_window_start,
            SUBSCRIBERS.c.mails_in_window,
        )
        .where(SUBSCRIBERS.c.id.in_(subscriber_ids))
        .order_by(SUBSCRIBERS.c.email)
    )
    if postgresql:
        addresses = addresses.with_for_update(skip_locked=True)
    subscribers = {row.id: dict(row._mapping) for row in session.execute(addresses)}
    if not subscribers:
        return Reminded()
    # Read again under the locks: a reminder another worker queued and committed meanwhile
    # set reminded_at, and a confirmation committed meanwhile changed the status.
    query = (
        sa.select(
            SUBSCRIPTIONS.c.id,
            SUBSCRIPTIONS.c.subscriber_id,
            SUBSCRIPTIONS.c.newsletter_id,
            SUBSCRIPTIONS.c.language,
            _latest_confirm_token().label("token_id"),
        )
        .where(due, SUBSCRIPTIONS.c.subscriber_id.in_(list(subscribers)))
        .order_by(SUBSCRIPTIONS.c.id)
    )
    if postgresql:
        query = query.with_for_update(of=SUBSCRIPTIONS, skip_locked=True)
    found = session.execute(query).all()
    if not found:
        # Every one of them is another transaction's now: the next round looks again.
        return Reminded()
    by_token: dict[int, list] = {}
    for row in found:
        by_token.setdefault(row.token_id, []).append(row)
    suppressed = set(
        session.execute(
            sa.select(Suppression.email, Suppression.newsletter_id).where(
                Suppression.email.in_([s["email"] for s in subscribers.values()])
            )
        ).all()
    )
    mails_per_day = current_app.config["CONFIRM_MAILS_PER_DAY"]
    touched: dict[int, dict] = {}
    mails = []
    for token_id, rows in by_token.items():
        subscriber = subscribers[rows[0].subscriber_id]
        newsletter_ids = [
            r.newsletter_id
            for r in rows
            if (subscriber["email"], r.newsletter_id) not in suppressed
        ]
        if not newsletter_ids or not processing.claim_daily_mail(subscriber, now, mails_per_day):
            continue
        touched[subscriber["id"]] = subscriber
        mails.append(
            processing.outbox_row(
                OutboxKind.REMINDER,
                subscriber["email"],
                _payload(
                    # A link's signups share their reader: the first language known.
                    next((r.language for r in rows if r.language), None),
                    token_id=token_id,
                    newsletter_ids=newsletter_ids,
                ),
                now,
            )
        )
    session.execute(
        sa.update(SUBSCRIPTIONS)
        .where(SUBSCRIPTIONS.c.id.in_([row.id for row in found]))
        .values(reminded_at=now)
    )
    processing.save_budgets(session, touched.values())
    if mails:
        session.execute(sa.insert(OUTBOX), mails)
    session.flush()
    return Reminded(addresses=len(subscriber_ids), queued=len(mails))


class Reminders:
    """The worker's reminder part of a round: ``queue_reminders`` at most every ``interval``."""

    def __init__(self, report: Callable[[str], None] = log.info, interval: float | None = None):
        self.report = report
        self.interval = REMINDER_INTERVAL_SECONDS if interval is None else interval
        self.next_at = float("-inf")  # monotonic

    def run_round(self) -> int:
        """Queue the due reminders, a transaction per batch, if the interval has passed.

        Returns the reminder mails queued. A database error is raised after a rollback; the
        next attempt comes after the interval, as after a round that found nothing.
        """
        if time.monotonic() < self.next_at:
            return 0
        self.next_at = time.monotonic() + self.interval
        session = db.session()
        queued = 0
        try:
            while True:
                done = queue_reminders(session, utcnow())
                session.commit()
                queued += done.queued
                if done.addresses < REMINDER_BATCH:
                    break
        except BaseException:
            session.rollback()
            raise
        if queued:
            self.report(f"reminders: {queued} queued")
        return queued


def _reminder_cutoffs(session: Session, now: datetime) -> dict[int, datetime]:
    """Return, per newsletter that sends reminders, the latest mailing time now due one."""
    rows = session.execute(
        sa.select(Newsletter.id, Newsletter.reminder_hours).where(
            Newsletter.reminder_hours.is_not(None), Newsletter.reminder_hours > 0
        )
    )
    return {nid: now - timedelta(hours=hours) for nid, hours in rows}


def _latest_confirm_token() -> sa.ScalarSelect:
    """Return the id of a subscription's newest confirmation token (a correlated subquery)."""
    return (
        sa.select(sa.func.max(TOKENS.c.id))
        .select_from(token_subscription.join(TOKENS, TOKENS.c.id == token_subscription.c.token_id))
        .where(
            token_subscription.c.subscription_id == SUBSCRIPTIONS.c.id,
            TOKENS.c.purpose == TokenPurpose.CONFIRM.value,
        )
        .correlate(SUBSCRIPTIONS)
        .scalar_subquery()
    )


def _due(cutoffs: dict[int, datetime], now: datetime) -> sa.ColumnElement[bool]:
    """Return the condition of a subscription whose reminder is due at ``now``."""
    cutoff = sa.case(
        {
            nid: sa.literal(at, Subscription.confirmation_mailed_at.type)
            for nid, at in cutoffs.items()
        },
        value=SUBSCRIPTIONS.c.newsletter_id,
    )
    link_works = (
        sa.select(TOKENS.c.id)
        .where(
            TOKENS.c.id == _latest_confirm_token(),
            TOKENS.c.used_at.is_(None),
            sa.or_(TOKENS.c.expires_at.is_(None), TOKENS.c.expires_at > now),
        )
        .exists()
    )
    return sa.and_(
        SUBSCRIPTIONS.c.status == Status.PENDING.value,
        SUBSCRIPTIONS.c.reminded_at.is_(None),
        SUBSCRIPTIONS.c.newsletter_id.in_(list(cutoffs)),
        SUBSCRIPTIONS.c.confirmation_mailed_at.is_not(None),
        SUBSCRIPTIONS.c.confirmation_mailed_at <= cutoff,
        link_works,
    )


def _iso(at: datetime | None) -> str | None:
    """Return ``at`` as ISO 8601 in UTC to the second, as the receipt shows times."""
    if at is None:
        return None
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")
