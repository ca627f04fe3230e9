"""'Send me my link': the request stores one row whoever asks; the worker mails the link.

``accept`` is all the request writes: one INSERT of a ``LinkRequest``, the same statement
whatever the address's state, so the answer takes the same time for everyone and tells nobody
whether an address is on a list. ``process_due`` takes a batch of requests (``SKIP LOCKED`` on
PostgreSQL, so several workers share them) and, with set-based statements, issues a
preference-centre token and queues a PREFERENCES_LINK mail for each address that has a
subscription, within its daily mail budget; unknown addresses get nothing. Then it deletes the
requests, in the same transaction.
"""

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import Session

from ..db import utcnow
from ..models import (
    LinkRequest,
    OutboxKind,
    OutboxMessage,
    Subscriber,
    Subscription,
    TokenPurpose,
)
from . import processing

REQUESTS = LinkRequest.__table__
SUBSCRIBERS = Subscriber.__table__
SUBSCRIPTIONS = Subscription.__table__
ACCEPT = sa.insert(REQUESTS)


def request_link(session: Session, email: str, ip: str | None) -> None:
    """Accept a "send me my link" for the normalised address ``email``; flush, never commit.

    With SIGNUP_PROCESSING = "inline" (tests, and a deployment without a worker) the request
    is processed at once in the caller's transaction, as a signup is.
    """
    if current_app.config["SIGNUP_PROCESSING"] == "inline":
        process(session, [email])
        return
    # On the connection, not through the ORM: the request's one statement costs an INSERT.
    session.connection().execute(ACCEPT, {"email": email, "ip": ip, "created_at": utcnow()})


def pending(session: Session) -> bool:
    """Tell whether any link request waits to be processed."""
    return session.scalar(sa.select(REQUESTS.c.id).limit(1)) is not None


def process_due(session: Session, limit: int | None = None) -> int:
    """Process up to ``limit`` waiting link requests, oldest first; return how many.

    Flushes and never commits: the requests are deleted in the caller's transaction, so each
    is processed exactly once however the worker ends.
    """
    limit = limit or current_app.config["SIGNUP_BATCH"]
    requests = session.execute(
        sa.select(REQUESTS.c.id, REQUESTS.c.email)
        .order_by(REQUESTS.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    if not requests:
        return 0
    process(session, [r.email for r in requests])
    session.execute(sa.delete(REQUESTS).where(REQUESTS.c.id.in_([r.id for r in requests])))
    return len(requests)


def process(session: Session, emails: list[str]) -> int:
    """Queue a preference link to each of ``emails`` that is on a list; return the mails queued.

    One mail per address however often it asked in the batch, each counted against the
    address's daily budget (CONFIRM_MAILS_PER_DAY) as the confirmation mails are.
    """
    return len(queue(session, emails, TokenPurpose.PREFERENCES, OutboxKind.PREFERENCES_LINK))


def queue(
    session: Session,
    emails: list[str],
    purpose: TokenPurpose,
    kind: OutboxKind,
    on_a_list: bool = True,
) -> set[str]:
    """Queue a mail of ``kind`` with a new link (a ``purpose`` token) to each known address.

    Known: a subscriber, with at least one subscription when ``on_a_list``. Each mail counts
    against the address's daily budget; returns the addresses mailed. The link expires after
    CONFIRM_TTL_HOURS. Set-based: a few statements for the whole batch.
    """
    if not emails:
        return set()
    now = utcnow()
    # The signup batch's own budget, token and write steps: one rule for every reader's mail.
    batch = processing._Batch(session, now)
    query = (
        sa.select(
            SUBSCRIBERS.c.id,
            SUBSCRIBERS.c.email,
            SUBSCRIBERS.c.mail_window_start,
            SUBSCRIBERS.c.mails_in_window,
        )
        .where(SUBSCRIBERS.c.email.in_(sorted(set(emails))))
        # Locked in the signup batches' order: the budget is counted once, and no deadlock.
        .order_by(SUBSCRIBERS.c.email)
        .with_for_update(of=SUBSCRIBERS)
    )
    if on_a_list:
        query = query.where(sa.exists().where(SUBSCRIPTIONS.c.subscriber_id == SUBSCRIBERS.c.id))
    subscribers = {row.email: dict(row._mapping, changed=False) for row in session.execute(query)}
    per_day = current_app.config["CONFIRM_MAILS_PER_DAY"]
    mails = [
        (batch.token(purpose, s["id"], batch.confirm_expiry), s["email"])
        for s in subscribers.values()
        if processing.claim_daily_mail(s, now, per_day)
    ]
    batch.write(subscribers, [])  # the tokens and the budgets; no subscription changes
    if mails:
        session.execute(
            sa.insert(OutboxMessage.__table__),
            [
                processing.outbox_row(kind, email, {"token_id": token["id"]}, now)
                for token, email in mails
            ],
        )
    return {email for _, email in mails}
