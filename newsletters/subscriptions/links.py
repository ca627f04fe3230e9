"""'Send me my link': the request stores one row whoever asks; the worker mails the link.

``accept`` is all the request writes: one INSERT of a ``LinkRequest``, the same statement
whatever the address's state, so the answer takes the same time for everyone and tells nobody
whether an address is on a list. ``process_due`` takes a batch of requests (``SKIP LOCKED`` on
PostgreSQL, so several workers share them) and, with set-based statements, issues a
preference-centre token and queues a PREFERENCES_LINK mail for each address that has a
subscription, within its daily mail budget; unknown addresses get nothing. Then it deletes the
requests, in the same transaction. Each request keeps the language of the page it was asked
from, and the link's mail is written in it.
"""

from collections.abc import Mapping

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import Session

from .. import i18n
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
    is processed at once in the caller's transaction, as a signup is. The mail is in the
    language of the request's page.
    """
    language = i18n.current_language()
    if current_app.config["SIGNUP_PROCESSING"] == "inline":
        process(session, [email], {email: language})
        return
    # On the connection, not through the ORM: the request's one statement costs an INSERT.
    session.connection().execute(
        ACCEPT, {"email": email, "ip": ip, "language": language, "created_at": utcnow()}
    )


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
        sa.select(REQUESTS.c.id, REQUESTS.c.email, REQUESTS.c.language)
        .order_by(REQUESTS.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    if not requests:
        return 0
    # An address that asked more than once gets its latest request's language.
    languages = {r.email: r.language for r in requests}
    process(session, [r.email for r in requests], languages)
    session.execute(sa.delete(REQUESTS).where(REQUESTS.c.id.in_([r.id for r in requests])))
    return len(requests)


def process(
    session: Session, emails: list[str], languages: Mapping[str, str | None] | None = None
) -> int:
    """Queue a preference link to each of ``emails`` that is on a list; return the mails queued.

    One mail per address however often it asked in the batch, each counted against the
    address's daily budget (CONFIRM_MAILS_PER_DAY) as the confirmation mails are, and each in
    the address's language in ``languages`` (email → language), if any.
    """
    return len(
        queue(
            session,
            emails,
            TokenPurpose.PREFERENCES,
            OutboxKind.PREFERENCES_LINK,
            languages=languages,
        )
    )


def queue(
    session: Session,
    emails: list[str],
    purpose: TokenPurpose,
    kind: OutboxKind,
    on_a_list: bool = True,
    languages: Mapping[str, str | None] | None = None,
) -> set[str]:
    """Queue a mail of ``kind`` with a new link (a ``purpose`` token) to each known address.

    Known: a subscriber, with at least one subscription when ``on_a_list``. Each mail counts
    against the address's daily budget; returns the addresses mailed. The link expires after
    CONFIRM_TTL_HOURS. Each mail is in its address's language in ``languages`` (email →
    language); one without, in the language the renderer falls back to. Set-based:
    a few statements for the whole batch.
    """
    languages = languages or {}
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
                processing.outbox_row(kind, email, _payload(token["id"], languages.get(email)), now)
                for token, email in mails
            ],
        )
    return {email for _, email in mails}


def _payload(token_id: int, language: str | None) -> dict:
    """Return a link mail's payload: its token, and its language when one is known."""
    language = i18n.supported(language)
    return {"token_id": token_id, "language": language} if language else {"token_id": token_id}
