"""Signups, accepted then processed: the request stores one row, the worker does the rest.

``accept`` is all a signup's request writes: one INSERT of a ``SignupRequest``, the same
statement whatever the address's state, so the answer takes the same time for everyone and
tells nobody who is subscribed. ``process_due`` takes a batch of requests (``SKIP LOCKED``
on PostgreSQL, so several workers share them) and, in one transaction, does with set-based
statements what a signup means: subscribers and subscriptions by upsert, the throttles and
daily budgets, suppressions, tokens, consent events, and the outbox rows of the mails; then
deletes the requests. A crash before the commit leaves the requests for the next round.
"""

import secrets
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import Session

from .. import attribution, ledger, tokens
from ..db import insert_ignoring, utcnow
from ..ledger import Action, Evidence
from ..models import (
    Newsletter,
    OutboxKind,
    OutboxMessage,
    OutboxState,
    SignupRequest,
    Status,
    Subscriber,
    Subscription,
    Suppression,
    Token,
    TokenPurpose,
    token_subscription,
)

REQUESTS = SignupRequest.__table__
TOKENS = Token.__table__
SUBSCRIBERS = Subscriber.__table__
SUBSCRIPTIONS = Subscription.__table__


@dataclass(frozen=True)
class Request:
    """A validated signup: the address, its newsletters and its evidence, as accepted."""

    email: str
    name: str | None
    newsletter_ids: list[int]
    ip: str | None
    user_agent: str | None
    source: str
    form_text: str | None
    created_at: datetime
    origin: str | None = None
    # The reader's language (i18n) and what the address check found (address_checks.FLAGS).
    language: str | None = None
    address_flags: str | None = None
    # Where it came from (attribution.py) and what it proved (models.Verification).
    page: str | None = None
    utm_source: str | None = None
    utm_medium: str | None = None
    utm_campaign: str | None = None
    verification: str | None = None

    @classmethod
    def of(
        cls,
        newsletter_ids: list[int],
        email: str,
        name: str | None,
        evidence: Evidence,
        language: str | None = None,
        address_flags: str | None = None,
    ) -> "Request":
        """Return the request of a signup accepted now; its campaign is read from its page."""
        campaign = attribution.campaign(evidence.page)
        return cls(
            page=evidence.page,
            utm_source=campaign.source,
            utm_medium=campaign.medium,
            utm_campaign=campaign.campaign,
            verification=evidence.verification,
            language=language,
            address_flags=address_flags,
            email=email,
            name=name,
            newsletter_ids=list(newsletter_ids),
            ip=evidence.ip,
            user_agent=evidence.user_agent,
            source=evidence.source,
            form_text=evidence.form_text,
            created_at=utcnow(),
            origin=evidence.origin,
        )


ACCEPT = sa.insert(REQUESTS)


def accept(session: Session, request: Request) -> None:
    """Store a validated signup for the worker: one INSERT, sent with the caller's commit.

    On the connection, not through the ORM: the one statement of a signup's request should
    cost what an INSERT costs.
    """
    session.connection().execute(
        ACCEPT,
        {
            "email": request.email,
            "name": request.name,
            "newsletter_ids": request.newsletter_ids,
            "ip": request.ip,
            "user_agent": request.user_agent,
            "source": request.source,
            "form_text": request.form_text,
            "origin": request.origin,
            "language": request.language,
            "address_flags": request.address_flags,
            "page": request.page,
            "utm_source": request.utm_source,
            "utm_medium": request.utm_medium,
            "utm_campaign": request.utm_campaign,
            "verification": request.verification,
            "created_at": request.created_at,
        },
    )


def process(session: Session, requests: list) -> int:
    """Do what ``requests`` (``Request``s or stored rows) mean, now; return the mails queued.

    For callers that hold a batch themselves (an import) and for the worker's rounds alike.
    """
    if not requests:
        return 0
    return _Batch(session, utcnow()).process(requests)


def pending(session: Session) -> bool:
    """Tell whether any signup request waits to be processed."""
    return session.scalar(sa.select(REQUESTS.c.id).limit(1)) is not None


def process_due(session: Session, limit: int | None = None) -> int:
    """Process up to ``limit`` waiting signup requests, oldest first; return how many.

    Flushes and never commits: the caller commits once, and the requests are deleted in that
    same transaction, so each is processed exactly once however the worker ends.
    """
    limit = limit or current_app.config["SIGNUP_BATCH"]
    requests = session.execute(
        sa.select(REQUESTS).order_by(REQUESTS.c.id).limit(limit).with_for_update(skip_locked=True)
    ).all()
    if not requests:
        return 0
    process(session, requests)
    session.execute(sa.delete(REQUESTS).where(REQUESTS.c.id.in_([r.id for r in requests])))
    return len(requests)


@dataclass
class _Subscription:
    """A subscription as this batch sees it: read from the database, or about to be added."""

    newsletter_id: int
    subscriber_id: int
    id: int | None = None
    status: Status | None = None
    unsubscribe_token: int | dict | None = None  # an id, or a token this batch adds
    confirmation_mailed_at: datetime | None = None
    changed: dict = field(default_factory=dict)
    # (action, request) of each signup this batch records in the ledger
    events: list[tuple] = field(default_factory=list)


class _Batch:
    """The work of one batch: read everything it touches at once, decide, write at once."""

    def __init__(self, session: Session, now: datetime):
        self.session = session
        self.now = now
        config = current_app.config
        self.throttle_cutoff = now - timedelta(minutes=config["CONFIRM_THROTTLE_MINUTES"])
        self.mails_per_day = config["CONFIRM_MAILS_PER_DAY"]
        self.confirm_expiry = tokens.confirm_expiry()
        self.key_id = tokens.key_id(config["SECRET_KEY"])
        self.key = config["SECRET_KEY"].encode()
        self.new_tokens: list[dict] = []
        # (confirm token, the subscriptions it confirms, the address it goes to)
        self.mails: list[tuple[dict, list[_Subscription], str]] = []

    def process(self, requests) -> int:
        subscribers = self._subscribers(sorted({r.email for r in requests}))
        live = self._live_newsletters({n for r in requests for n in r.newsletter_ids})
        suppressed = self._suppressed(list(subscribers))
        subscriptions = self._subscriptions([s["id"] for s in subscribers.values()], sorted(live))
        for request in requests:
            subscriber = subscribers[request.email]
            due = []
            for newsletter_id in dict.fromkeys(request.newsletter_ids):
                if newsletter_id not in live:
                    continue  # deleted since the signup was accepted
                key = (newsletter_id, subscriber["id"])
                subscription = subscriptions.get(key)
                if subscription is None:
                    subscription = subscriptions[key] = _Subscription(*key)
                if self._sign_up(subscription, subscriber, request) and (
                    (request.email, newsletter_id) not in suppressed
                ):
                    due.append(subscription)
            if due and self._claim_daily_mail(subscriber):
                self._queue_mail(subscriber, due)
        self.write(subscribers, list(subscriptions.values()))
        return len(self.mails)

    def _subscribers(self, emails: list[str]) -> dict[str, dict]:
        """Add the addresses not known yet, then lock and read every one of them."""
        self.session.execute(
            insert_ignoring(self.session, SUBSCRIBERS, ["email"]),
            [{"email": e, "created_at": self.now, "mails_in_window": 0} for e in emails],
        )
        rows = self.session.execute(
            sa.select(
                SUBSCRIBERS.c.id,
                SUBSCRIBERS.c.email,
                SUBSCRIBERS.c.mail_window_start,
                SUBSCRIBERS.c.mails_in_window,
            )
            .where(SUBSCRIBERS.c.email.in_(emails))
            # One order for every worker: two batches sharing addresses cannot deadlock.
            .order_by(SUBSCRIBERS.c.email)
            .with_for_update()
        )
        return {row.email: dict(row._mapping, changed=False) for row in rows}

    def _live_newsletters(self, ids: set[int]) -> set[int]:
        return set(self.session.scalars(sa.select(Newsletter.id).where(Newsletter.id.in_(ids))))

    def _suppressed(self, emails: list[str]) -> set[tuple[str, int]]:
        rows = self.session.execute(
            sa.select(Suppression.email, Suppression.newsletter_id).where(
                Suppression.email.in_(emails)
            )
        )
        return {(email, newsletter_id) for email, newsletter_id in rows}

    def _subscriptions(
        self, subscriber_ids: list[int], newsletter_ids: list[int]
    ) -> dict[tuple[int, int], _Subscription]:
        """Lock and read the subscriptions of these addresses to these newsletters."""
        if not newsletter_ids:
            return {}
        query = sa.select(
            SUBSCRIPTIONS.c.id,
            SUBSCRIPTIONS.c.newsletter_id,
            SUBSCRIPTIONS.c.subscriber_id,
            SUBSCRIPTIONS.c.status,
            SUBSCRIPTIONS.c.unsubscribe_token_id,
            SUBSCRIPTIONS.c.confirmation_mailed_at,
        ).where(
            SUBSCRIPTIONS.c.subscriber_id.in_(subscriber_ids),
            SUBSCRIPTIONS.c.newsletter_id.in_(newsletter_ids),
        )
        if self.session.get_bind().dialect.name == "postgresql":
            # Locked in id order, as every writer locks them, so two batches cannot deadlock.
            # A confirmation or unsubscription committing meanwhile waits for this batch, and
            # one committed before is read here: it is never overwritten with a stale state.
            query = query.order_by(SUBSCRIPTIONS.c.id).with_for_update()
        # (SQLite's writers take turns: nothing to lock. And there an ORDER BY id would have
        # it walk the newsletter's whole (newsletter_id, id) index to skip a sort, rather than
        # look the pairs up: 1.4 s of a 1.8 s batch at 1,000,000 subscriptions.)
        rows = self.session.execute(query)
        return {
            (row.newsletter_id, row.subscriber_id): _Subscription(
                row.newsletter_id,
                row.subscriber_id,
                id=row.id,
                status=Status(row.status),
                unsubscribe_token=row.unsubscribe_token_id,
                confirmation_mailed_at=row.confirmation_mailed_at,
            )
            for row in rows
        }

    def _sign_up(self, subscription: _Subscription, subscriber: dict, request) -> bool:
        """Make ``subscription`` pending with this request's evidence; tell if a mail is due.

        A confirmed subscription stays as it is: signing up again must not undo a consent.
        """
        if subscription.status == Status.CONFIRMED:
            return False
        action = (
            Action.RESUBSCRIBED if subscription.status == Status.UNSUBSCRIBED else Action.SIGNED_UP
        )
        subscription.status = Status.PENDING
        subscription.changed.update(
            status=Status.PENDING,
            name=request.name,
            source=request.source,
            optin_at=request.created_at,
            optin_ip=request.ip,
            optin_user_agent=request.user_agent,
            form_text=request.form_text,
            text_digest=request.form_text and ledger.text_digest(request.form_text),
            origin=request.origin,
            language=request.language,
            address_flags=request.address_flags,
            page=request.page,
            utm_source=request.utm_source,
            utm_medium=request.utm_medium,
            utm_campaign=request.utm_campaign,
            verification=request.verification,
            unsubscribed_at=None,
            # A confirmation before an unsubscription is history (kept in the consent
            # events): left here, a pending row would carry a consent since withdrawn.
            confirmed_at=None,
            confirm_ip=None,
        )
        if subscription.unsubscribe_token is None:
            subscription.unsubscribe_token = self.token(
                TokenPurpose.UNSUBSCRIBE, subscriber["id"], None
            )
        subscription.events.append((action, request))
        mailed = subscription.confirmation_mailed_at
        return mailed is None or mailed < self.throttle_cutoff

    def _claim_daily_mail(self, subscriber: dict) -> bool:
        return claim_daily_mail(subscriber, self.now, self.mails_per_day)

    def _queue_mail(self, subscriber: dict, due: list[_Subscription]) -> None:
        token = self.token(TokenPurpose.CONFIRM, subscriber["id"], self.confirm_expiry)
        for subscription in due:
            subscription.confirmation_mailed_at = self.now
            subscription.changed["confirmation_mailed_at"] = self.now
            # The new mail's acceptance is the funnel's step now; a signup that mails nothing
            # (the throttle) keeps the one the last mail had.
            subscription.changed["mail_accepted_at"] = None
        self.mails.append((token, due, subscriber["email"]))

    def token(self, purpose: TokenPurpose, subscriber_id: int, expires_at) -> dict:
        """Add a token to this batch's writes; its ``id`` is set once ``write`` ran."""
        salt = secrets.token_hex(16)
        token = {
            "purpose": purpose,
            "subscriber_id": subscriber_id,
            "salt": salt,
            "key_id": self.key_id,
            "digest": tokens.digest_of(tokens.mac(self.key, purpose, salt)),
            "created_at": self.now,
            "expires_at": expires_at,
        }
        self.new_tokens.append(token)
        return token

    def write(self, subscribers: dict[str, dict], subscriptions: list[_Subscription]) -> None:
        """Write the batch's decisions: a few multi-row statements, whatever its size."""
        session = self.session
        if self.new_tokens:
            # Ids read back by their unique digests rather than with INSERT … RETURNING in
            # parameter order, which SQLite can only do one row per statement.
            session.execute(sa.insert(TOKENS), self.new_tokens)
            ids = dict(
                session.execute(
                    sa.select(TOKENS.c.digest, TOKENS.c.id).where(
                        TOKENS.c.digest.in_([t["digest"] for t in self.new_tokens])
                    )
                ).all()
            )
            for token in self.new_tokens:
                token["id"] = ids[token["digest"]]
        for subscription in subscriptions:
            if isinstance(subscription.unsubscribe_token, dict):
                token_id = subscription.unsubscribe_token["id"]
                subscription.changed["unsubscribe_token_id"] = token_id
        added = [s for s in subscriptions if s.id is None]
        new = set()
        if added:
            session.execute(
                sa.insert(SUBSCRIPTIONS),
                [
                    {
                        "newsletter_id": s.newsletter_id,
                        "subscriber_id": s.subscriber_id,
                        "created_at": self.now,
                        "confirmation_mailed_at": None,
                        **s.changed,
                    }
                    for s in added
                ],
            )
            # The pairs are unique, and locked by this batch's subscribers: read the ids back.
            ids = {
                (row.newsletter_id, row.subscriber_id): row.id
                for row in session.execute(
                    sa.select(
                        SUBSCRIPTIONS.c.id,
                        SUBSCRIPTIONS.c.newsletter_id,
                        SUBSCRIPTIONS.c.subscriber_id,
                    ).where(
                        SUBSCRIPTIONS.c.subscriber_id.in_({s.subscriber_id for s in added}),
                        SUBSCRIPTIONS.c.newsletter_id.in_({s.newsletter_id for s in added}),
                    )
                )
            }
            for subscription in added:
                subscription.id = ids[(subscription.newsletter_id, subscription.subscriber_id)]
                subscription.changed.clear()
                new.add(subscription.id)
        changed = [s for s in subscriptions if s.changed]
        for columns, group in _by_columns(changed).items():
            session.execute(
                sa.update(SUBSCRIPTIONS)
                .where(SUBSCRIPTIONS.c.id == sa.bindparam("b_id"))
                .values({c: sa.bindparam(f"b_{c}") for c in columns}),
                [{"b_id": s.id, **{f"b_{c}": s.changed[c] for c in columns}} for s in group],
            )
        save_budgets(session, subscribers.values())
        ledger.record(
            session,
            (
                ledger.Entry(
                    subscription_id=s.id,
                    subscriber_id=s.subscriber_id,
                    newsletter_id=s.newsletter_id,
                    action=action,
                    status=Status.PENDING,
                    evidence=Evidence(
                        ip=request.ip,
                        user_agent=request.user_agent,
                        source=request.source,
                        form_text=request.form_text,
                        origin=request.origin,
                        page=request.page,
                        verification=request.verification,
                    ),
                    at=request.created_at,
                )
                for s in subscriptions
                for action, request in s.events
            ),
            new=new,
        )
        if self.mails:
            session.execute(
                sa.insert(token_subscription),
                [
                    {"token_id": token["id"], "subscription_id": s.id}
                    for token, due, _ in self.mails
                    for s in due
                ],
            )
            session.execute(
                sa.insert(OutboxMessage.__table__),
                [
                    outbox_row(OutboxKind.CONFIRM, email, {"token_id": token["id"]}, self.now)
                    for token, _, email in self.mails
                ],
            )


def claim_daily_mail(subscriber: dict, now: datetime, mails_per_day: int) -> bool:
    """Count one mail against the address's daily budget, if any is left; mark it changed.

    ``subscriber`` is a row as a batch reads it (``mail_window_start``, ``mails_in_window``);
    ``save_budgets`` writes the changed ones. Every reader's mail that someone else could
    cause (confirmations, reminders, preference and data links) draws on this one budget.
    """
    start = subscriber["mail_window_start"]
    if start is None or start <= now - timedelta(days=1):
        subscriber.update(mail_window_start=now, mails_in_window=1, changed=True)
        return True
    if subscriber["mails_in_window"] >= mails_per_day:
        return False
    subscriber.update(mails_in_window=subscriber["mails_in_window"] + 1, changed=True)
    return True


def save_budgets(session: Session, subscribers) -> None:
    """Write the daily mail budgets that ``claim_daily_mail`` changed: one statement."""
    touched = [s for s in subscribers if s.get("changed")]
    if touched:
        session.execute(
            sa.update(SUBSCRIBERS)
            .where(SUBSCRIBERS.c.id == sa.bindparam("b_id"))
            .values(
                mail_window_start=sa.bindparam("b_start"),
                mails_in_window=sa.bindparam("b_count"),
            ),
            [
                {
                    "b_id": s["id"],
                    "b_start": s["mail_window_start"],
                    "b_count": s["mails_in_window"],
                }
                for s in touched
            ],
        )


def outbox_row(kind: OutboxKind, recipient: str, payload: dict, now: datetime) -> dict:
    """Return the outbox row of a mail queued now, for a multi-row INSERT."""
    return {
        "kind": kind.value,
        "recipient": recipient,
        "payload": payload,
        "message_id": uuid.uuid4().hex,
        "state": OutboxState.PENDING,
        "attempts": 0,
        "next_attempt_at": now,
        "queued_at": now,
        "created_at": now,
    }


def _by_columns(subscriptions: list[_Subscription]) -> dict[tuple, list[_Subscription]]:
    """Group changed subscriptions by which columns changed: one UPDATE statement per group."""
    groups = defaultdict(list)
    for subscription in subscriptions:
        groups[tuple(sorted(subscription.changed))].append(subscription)
    return groups
