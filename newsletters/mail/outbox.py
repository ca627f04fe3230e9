"""The outbox: rows written with the change that causes them, claimed and marked by workers."""

import uuid
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import Session

from ..db import utcnow
from ..models import OutboxMessage, OutboxState


def enqueue(session: Session, kind: str, recipient: str, payload: dict) -> OutboxMessage:
    """Add a message to the outbox in the caller's transaction."""
    domain = current_app.config["MAIL_FROM"].rpartition("@")[2] or "localhost"
    message = OutboxMessage(
        kind=kind,
        recipient=recipient,
        payload=payload,
        message_id=f"<{uuid.uuid4().hex}@{domain}>",
        next_attempt_at=utcnow(),
    )
    session.add(message)
    return message


def claim_due(session: Session, limit: int = 50) -> list[OutboxMessage]:
    """Lease up to ``limit`` due messages to this worker; the caller commits the lease.

    On PostgreSQL the candidates are locked with SKIP LOCKED, so parallel workers take
    different rows; the conditional UPDATE makes the claim safe on SQLite too, where writers
    are serialised anyway.
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


def mark_sent(session: Session, message: OutboxMessage) -> None:
    """Record that ``message`` was handed to the mail server."""
    message.state = OutboxState.SENT
    message.sent_at = utcnow()
    message.locked_until = None
    message.last_error = None


def mark_failed(session: Session, message: OutboxMessage, error: str, *, permanent: bool) -> None:
    """Record a failed attempt: retry later with backoff, or give up if it cannot succeed."""
    message.last_error = error[:2000]
    message.locked_until = None
    if permanent or message.attempts >= current_app.config["OUTBOX_MAX_ATTEMPTS"]:
        message.state = OutboxState.FAILED
    else:
        message.next_attempt_at = utcnow() + backoff(message.attempts)


def backoff(attempts: int) -> timedelta:
    """Return how long to wait after the ``attempts``-th failed attempt: doubling, capped."""
    base = current_app.config["OUTBOX_BACKOFF_SECONDS"]
    cap = current_app.config["OUTBOX_BACKOFF_CAP_SECONDS"]
    return timedelta(seconds=min(cap, base * 2 ** max(0, attempts - 1)))


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
