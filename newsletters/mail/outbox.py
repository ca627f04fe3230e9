"""The outbox: rows written with the change that causes them, claimed and marked by workers.

A row is ``pending`` until it is ``sent``; ``failed`` when the server refused it for good (a
5xx) or it cannot be built (its ``last_error`` then starts with ``UNBUILT``); ``dead`` when it
was given up after OUTBOX_MAX_ATTEMPTS attempts or OUTBOX_MAX_AGE_HOURS in the queue. Failed
and dead rows stay until an operator retries them (``retry``) or they are erased with their
address.
"""

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..db import utcnow
from ..models import (
    Newsletter,
    OutboxMessage,
    OutboxState,
    Subscription,
    TransportStatus,
    token_subscription,
)
from . import messages, suppressions

# How the last error of a mail that cannot be built begins: editors are shown these.
UNBUILT = "could not be built: "


def enqueue(session: Session, kind: str, recipient: str, payload: dict) -> OutboxMessage:
    """Add a message to the outbox in the caller's transaction."""
    now = utcnow()
    message = OutboxMessage(
        kind=kind,
        recipient=recipient,
        payload=payload,
        # The unique part of its Message-ID; the domain is added when it is built (see
        # messages.message_id), by the worker that sends it.
        message_id=uuid.uuid4().hex,
        next_attempt_at=now,
        queued_at=now,
    )
    session.add(message)
    return message


def claim_due(session: Session, limit: int = 1) -> list[OutboxMessage]:
    """Lease up to ``limit`` due messages to this worker; the caller commits the lease.

    On PostgreSQL the candidates are locked with SKIP LOCKED, so parallel workers take
    different rows; the conditional UPDATE makes the claim safe on SQLite too, where writers
    are serialised anyway. The claim counts an attempt; ``release`` takes it back.
    """
    now = utcnow()
    lease_until = now + timedelta(seconds=current_app.config["OUTBOX_LEASE_SECONDS"])
    due = (
        sa.select(OutboxMessage.id)
        .where(
            OutboxMessage.state == OutboxState.PENDING,
            OutboxMessage.next_attempt_at <= now,
            sa.or_(OutboxMessage.locked_until.is_(None), OutboxMessage.locked_until < now),
        )
        .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    claimed = []
    for message_id in session.scalars(due).all():
        result = session.execute(
            sa.update(OutboxMessage)
            .where(
                OutboxMessage.id == message_id,
                OutboxMessage.state == OutboxState.PENDING,
                sa.or_(OutboxMessage.locked_until.is_(None), OutboxMessage.locked_until < now),
            )
            .values(locked_until=lease_until, attempts=OutboxMessage.attempts + 1)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount == 1:
            claimed.append(message_id)
    if not claimed:
        return []
    return list(
        session.scalars(
            sa.select(OutboxMessage)
            .where(OutboxMessage.id.in_(claimed))
            .order_by(OutboxMessage.id)
            # The session may hold these rows from before the claim (a long-lived worker's,
            # or the one that enqueued them): load the attempts and lease just written.
            .execution_options(populate_existing=True)
        )
    )


def release(session: Session, message: OutboxMessage) -> None:
    """Give a claimed message back, due as before and without counting the attempt."""
    message.attempts = max(0, message.attempts - 1)
    message.locked_until = None


def mark_sent(session: Session, message: OutboxMessage) -> None:
    """Record that ``message`` was handed to the mail server."""
    message.state = OutboxState.SENT
    message.sent_at = utcnow()
    message.locked_until = None
    message.last_error = None


def mark_failed(session: Session, message: OutboxMessage, error: str, *, permanent: bool) -> None:
    """Record a failed attempt: retry later with backoff, fail it, or give it up as dead."""
    message.last_error = error[:2000]
    message.locked_until = None
    if permanent:
        message.state = OutboxState.FAILED
    elif (
        message.attempts >= current_app.config["OUTBOX_MAX_ATTEMPTS"]
        or message.queued_at < utcnow() - max_age()
    ):
        message.state = OutboxState.DEAD
    else:
        message.next_attempt_at = utcnow() + backoff(message.attempts)


def mark_unbuilt(session: Session, message: OutboxMessage, reason: str) -> None:
    """Fail ``message`` for good: it cannot be built from what the database holds."""
    mark_failed(session, message, UNBUILT + reason, permanent=True)


@dataclass(frozen=True)
class Unbuilt:
    """Confirmation mails of one newsletter that could not be built, for one reason."""

    newsletter: Newsletter
    reason: str
    mails: int
    last_queued_at: datetime


def unbuilt(session: Session, newsletter: Newsletter | None = None) -> list[Unbuilt]:
    """Return the mails of ``newsletter`` (or of any) that could not be built, by reason."""
    token_id = OutboxMessage.payload["token_id"].as_integer()
    query = (
        sa.select(
            Newsletter,
            OutboxMessage.last_error,
            sa.func.count(OutboxMessage.id),
            sa.func.max(OutboxMessage.queued_at),
        )
        .select_from(OutboxMessage)
        .join(token_subscription, token_subscription.c.token_id == token_id)
        .join(Subscription, Subscription.id == token_subscription.c.subscription_id)
        .join(Newsletter, Newsletter.id == Subscription.newsletter_id)
        .where(
            OutboxMessage.kind == "confirm",
            OutboxMessage.state == OutboxState.FAILED,
            OutboxMessage.last_error.startswith(UNBUILT, autoescape=True),
        )
        .group_by(Newsletter.id, OutboxMessage.last_error)
        .order_by(sa.func.max(OutboxMessage.queued_at).desc())
    )
    if newsletter is not None:
        query = query.where(Newsletter.id == newsletter.id)
    return [
        Unbuilt(found, error.removeprefix(UNBUILT), n, last)
        for found, error, n, last in session.execute(query)
    ]


def park_expired(session: Session) -> int:
    """Mark dead the pending messages queued longer than OUTBOX_MAX_AGE_HOURS; return how many.

    A confirmation mail days late is worse than none (its link may have expired, the reader
    has moved on): it waits for an operator's decision instead.
    """
    now = utcnow()
    hours = max_age().total_seconds() / 3600
    note = f"expired: queued more than {hours:g} hours ago; last error: "
    result = session.execute(
        sa.update(OutboxMessage)
        .where(
            OutboxMessage.state == OutboxState.PENDING,
            OutboxMessage.queued_at < now - max_age(),
            sa.or_(OutboxMessage.locked_until.is_(None), OutboxMessage.locked_until < now),
        )
        .values(
            state=OutboxState.DEAD,
            last_error=sa.literal(note) + sa.func.coalesce(OutboxMessage.last_error, "none"),
        )
        .execution_options(synchronize_session=False)
    )
    return result.rowcount


def max_age() -> timedelta:
    """Return how long a message may wait in the queue before it is given up."""
    return timedelta(hours=current_app.config["OUTBOX_MAX_AGE_HOURS"])


def backoff(attempts: int) -> timedelta:
    """Return how long to wait after the ``attempts``-th failed attempt: doubling, capped."""
    base = current_app.config["OUTBOX_BACKOFF_SECONDS"]
    cap = current_app.config["OUTBOX_BACKOFF_CAP_SECONDS"]
    return timedelta(seconds=min(cap, base * 2 ** max(0, attempts - 1)))


def retry(
    session: Session, states: Iterable[OutboxState], ids: Iterable[int] = ()
) -> list[OutboxMessage]:
    """Queue again the messages in ``states`` (only those of ``ids``, if given), attempts reset.

    A failed message's address was suppressed when the server refused it; retrying it is an
    operator's word that the address works, so its suppressions for that mail's newsletters
    are lifted too.
    """
    query = sa.select(OutboxMessage).where(OutboxMessage.state.in_(list(states)))
    ids = list(ids)
    if ids:
        query = query.where(OutboxMessage.id.in_(ids))
    now = utcnow()
    retried = list(session.scalars(query.order_by(OutboxMessage.id).with_for_update()))
    for message in retried:
        # A mail that could not be built was never refused, so it lifts no suppression.
        refused = not (message.last_error or "").startswith(UNBUILT)
        if message.state == OutboxState.FAILED and refused:
            suppressions.lift(session, message.recipient, messages.newsletter_ids(session, message))
        message.state = OutboxState.PENDING
        message.attempts = 0
        message.next_attempt_at = now
        message.queued_at = now
        message.locked_until = None
    session.flush()
    return retried


def undeliverable(session: Session, limit: int = 200) -> list[OutboxMessage]:
    """Return the latest failed and dead messages, newest first: what an operator looks at."""
    return list(
        session.scalars(
            sa.select(OutboxMessage)
            .where(OutboxMessage.state.in_([OutboxState.DEAD, OutboxState.FAILED]))
            .order_by(OutboxMessage.id.desc())
            .limit(limit)
        )
    )


def counts(session: Session) -> dict[str, int]:
    """Return how many messages are in each state."""
    rows = session.execute(
        sa.select(OutboxMessage.state, sa.func.count()).group_by(OutboxMessage.state)
    )
    return {str(state): n for state, n in rows}


def oldest_due(session: Session) -> datetime | None:
    """Return when the oldest pending message became due."""
    return session.scalar(
        sa.select(sa.func.min(OutboxMessage.next_attempt_at)).where(
            OutboxMessage.state == OutboxState.PENDING
        )
    )


def transport_failed(session: Session, transport: str, error: str) -> TransportStatus:
    """Record that ``transport`` could not be used, with why; return its status row."""
    now = utcnow()
    status = _transport_status(session, transport)
    status.failures += 1
    status.last_error = error[:2000]
    status.failed_at = now
    session.flush()
    return status


def transport_worked(session: Session, transport: str) -> None:
    """Record that ``transport`` delivered again, if it had been failing."""
    session.execute(
        sa.update(TransportStatus)
        .where(TransportStatus.transport == transport, TransportStatus.failures > 0)
        .values(failures=0, recovered_at=utcnow())
    )


def last_transport_error(session: Session) -> TransportStatus | None:
    """Return the status of the transport that failed last, if any ever did."""
    return session.scalar(
        sa.select(TransportStatus)
        .where(TransportStatus.failed_at.is_not(None))
        .order_by(TransportStatus.failed_at.desc())
        .limit(1)
    )


def _transport_status(session: Session, transport: str) -> TransportStatus:
    query = sa.select(TransportStatus).where(TransportStatus.transport == transport)
    status = session.scalar(query.with_for_update())
    if status is not None:
        return status
    try:
        with session.begin_nested():
            status = TransportStatus(transport=transport, failures=0)
            session.add(status)
    except IntegrityError:
        # Another worker recorded the first failure at the same moment.
        status = session.scalar(query.with_for_update())
    return status
