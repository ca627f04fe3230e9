"""The outbox: rows written with the change that causes them, claimed and marked by workers.

A row is ``pending`` until it is ``sent``; ``failed`` when the server refused it for good (a
5xx) or it cannot be built (its ``last_error`` then starts with ``UNBUILT``); ``dead`` when it
was given up after OUTBOX_MAX_ATTEMPTS attempts or OUTBOX_MAX_AGE_HOURS in the queue. Failed
and dead rows stay until an operator retries them (``retry``) or they are erased with their
address.
"""

import functools
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..db import utcnow
from ..models import (
    Newsletter,
    OutboxKind,
    OutboxMessage,
    OutboxState,
    Subscription,
    Suppression,
    TransportStatus,
    token_subscription,
)
from . import messages, suppressions

# How the last error of a mail that cannot be built begins: editors are shown these.
UNBUILT = "could not be built: "
# Webhook deliveries share the table (kind "webhook", webhook_id set) but not this module's
# handling: they are claimed one per webhook, in order, and never given up as dead or
# failed (newsletters.webhooks.delivery). Each query of mail here keeps to this condition.
MAIL = OutboxMessage.webhook_id.is_(None)


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


OUTBOX = OutboxMessage.__table__
# What a worker reads of the rows it claims.
CLAIMED_COLUMNS = (
    "id",
    "kind",
    "recipient",
    "payload",
    "message_id",
    "attempts",
    "next_attempt_at",
    "locked_until",
    "queued_at",
)


def claim(session: Session, limit: int) -> list[sa.Row]:
    """Lease up to ``limit`` due messages to this worker, in one statement; the caller commits.

    One conditional UPDATE … RETURNING: on PostgreSQL its candidates are locked with SKIP
    LOCKED, so parallel workers take different rows; on SQLite, where writers are serialised,
    the same statement is safe as it is. Each claimed row carries the lease (``locked_until``,
    OUTBOX_LEASE_SECONDS from now), and the claim counts an attempt; ``release_all`` takes it
    back. Returns the rows as written, with the columns a worker needs (plain rows: ORM
    objects would cost more than the rest of a claim), oldest due first.
    """
    now = utcnow()
    rows = session.execute(
        _statements(_dialect(session)).claim,
        {"now": now, "lease_until": now + lease(), "limit": limit},
    ).all()
    return sorted(rows, key=lambda m: (m.next_attempt_at, m.id))


def claim_due(session: Session, limit: int = 1) -> list[OutboxMessage]:
    """Lease up to ``limit`` due messages as ``claim`` does; return them as ORM objects."""
    ids = [row.id for row in claim(session, limit)]
    return list(
        session.scalars(
            sa.select(OutboxMessage)
            .where(OutboxMessage.id.in_(ids))
            .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
            # The session may hold these rows from before the claim (a long-lived worker's,
            # or the one that enqueued them): load the attempts and lease just written.
            .execution_options(populate_existing=True)
        )
    )


@dataclass(frozen=True)
class _Statements:
    """The statements a worker runs for every batch: built once per database dialect."""

    claim: sa.Update
    renew: sa.Update
    release: sa.Update
    sent: sa.Update
    suppressed: sa.Select


@functools.cache
def _statements(dialect: str) -> _Statements:
    c = OUTBOX.c
    free = sa.or_(c.locked_until.is_(None), c.locked_until < sa.bindparam("now"))
    due = (
        sa.select(c.id)
        .where(
            c.state == OutboxState.PENDING,
            c.next_attempt_at <= sa.bindparam("now"),
            free,
            c.webhook_id.is_(None),  # see MAIL
        )
        # In the order of the index on (state, next_attempt_at), so the claim reads its rows
        # and stops: a tie-break on id would sort every due row first (all of a backlog).
        .order_by(c.next_attempt_at)
        .limit(sa.bindparam("limit"))
        .with_for_update(skip_locked=True)
        # Evaluated once, as a CTE: a LIMIT inside IN (…) may otherwise be run again by
        # PostgreSQL for each row it compares, each run locking and leasing more rows.
        .cte("due")
        .prefix_with("MATERIALIZED", dialect="postgresql")
    )
    # Held: still leased until the moment this worker's claim or last renewal wrote.
    held = (
        messages.among(dialect, c.id, "ids"),
        c.state == OutboxState.PENDING,
        c.locked_until == sa.bindparam("held_until"),
    )
    return _Statements(
        # The rows are updated by id alone: the conditions were checked as they were locked
        # (on PostgreSQL a row changed meanwhile is checked again, on its new version), or,
        # on SQLite, in this same statement. Repeated here they would lead SQLite to scan
        # every pending row of the index instead of looking up a hundred ids.
        claim=sa.update(OUTBOX)
        .where(c.id.in_(sa.select(due.c.id)))
        .values(locked_until=sa.bindparam("lease_until"), attempts=c.attempts + 1)
        .returning(*(c[name] for name in CLAIMED_COLUMNS)),
        renew=sa.update(OUTBOX)
        .where(*held)
        .values(locked_until=sa.bindparam("until"))
        .returning(c.id),
        release=sa.update(OUTBOX)
        .where(*held)
        .values(locked_until=None, attempts=sa.case((c.attempts > 0, c.attempts - 1), else_=0)),
        sent=sa.update(OUTBOX)
        .where(messages.among(dialect, c.id, "ids"))
        .values(
            state=OutboxState.SENT,
            sent_at=sa.bindparam("now"),
            locked_until=None,
            last_error=None,
        ),
        suppressed=sa.select(Suppression.email, Suppression.newsletter_id).where(
            messages.among(dialect, Suppression.__table__.c.email, "emails")
        ),
    )


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def lease() -> timedelta:
    """Return how long a claim holds its messages: OUTBOX_LEASE_SECONDS."""
    return timedelta(seconds=current_app.config["OUTBOX_LEASE_SECONDS"])


def renew(session: Session, ids: list[int], held_until: datetime) -> tuple[list[int], datetime]:
    """Extend the lease of the messages ``ids`` that this worker still holds; the caller commits.

    Held means leased until ``held_until`` still, as this worker's claim or last renewal
    left them: a message whose lease ran out and another worker claimed is not taken back.
    Return the ids still held, and their new lease.
    """
    until = utcnow() + lease()
    held = session.scalars(
        _statements(_dialect(session)).renew,
        {"ids": list(ids), "held_until": held_until, "until": until},
    ).all()
    return sorted(held), until


def release(session: Session, message: OutboxMessage) -> None:
    """Give a claimed message back, due as before and without counting the attempt."""
    message.attempts = max(0, message.attempts - 1)
    message.locked_until = None


def release_all(session: Session, ids: list[int], held_until: datetime) -> None:
    """Give back the claimed messages ``ids`` still held: due as before, the attempt uncounted."""
    if ids:
        session.execute(
            _statements(_dialect(session)).release, {"ids": list(ids), "held_until": held_until}
        )


def mark_sent(session: Session, message: OutboxMessage) -> None:
    """Record that ``message`` was handed to the mail server."""
    message.state = OutboxState.SENT
    message.sent_at = utcnow()
    message.locked_until = None
    message.last_error = None


def mark_all_sent(session: Session, ids: list[int]) -> None:
    """Record that the messages ``ids`` were handed to the mail server, in one statement.

    Whoever holds their lease now: a mail the server took is sent, whatever happens next.
    """
    if ids:
        session.execute(_statements(_dialect(session)).sent, {"ids": list(ids), "now": utcnow()})


def note_confirmations_accepted(session: Session, token_ids: list[int]) -> None:
    """Record that the mail server took the confirmation mails of these tokens (the funnel).

    The first time only: a reminder or a resent mail does not move a signup's step.
    """
    ids = [i for i in token_ids if isinstance(i, int)]
    if not ids:
        return
    subscriptions = Subscription.__table__
    session.execute(
        sa.update(subscriptions)
        .where(
            subscriptions.c.id.in_(
                sa.select(token_subscription.c.subscription_id).where(
                    token_subscription.c.token_id.in_(ids)
                )
            ),
            subscriptions.c.mail_accepted_at.is_(None),
        )
        .values(mail_accepted_at=utcnow())
    )


@dataclass(frozen=True)
class Failure:
    """What a failed attempt at one message leaves: its next state and why (see ``failure``)."""

    id: int
    state: OutboxState
    error: str
    next_attempt_at: datetime


def failure(message: OutboxMessage, error: str, *, permanent: bool) -> Failure:
    """Decide what a failed attempt at ``message`` leaves: a retry with backoff, failed or dead."""
    state, due = OutboxState.PENDING, message.next_attempt_at
    if permanent:
        state = OutboxState.FAILED
    elif (
        message.attempts >= current_app.config["OUTBOX_MAX_ATTEMPTS"]
        or message.queued_at < utcnow() - max_age()
    ):
        state = OutboxState.DEAD
    else:
        due = utcnow() + backoff(message.attempts)
    return Failure(message.id, state, error[:2000], due)


def unbuilt_failure(message: OutboxMessage, reason: str) -> Failure:
    """Decide what a message that cannot be built from what the database holds leaves: failed."""
    return failure(message, UNBUILT + reason, permanent=True)


def mark_all_failed(session: Session, failures: list[Failure], held_until: datetime) -> None:
    """Record failed attempts, one statement for all (run once per row by the driver).

    Only for messages still held under the lease ``held_until``: one whose lease ran out
    and that another worker took is that worker's to record.
    """
    if failures:
        table = OutboxMessage.__table__
        session.execute(
            sa.update(table)
            .where(table.c.id == sa.bindparam("b_id"), table.c.locked_until == held_until)
            .values(
                state=sa.bindparam("b_state"),
                last_error=sa.bindparam("b_error"),
                next_attempt_at=sa.bindparam("b_due"),
                locked_until=None,
            ),
            [
                {"b_id": f.id, "b_state": f.state, "b_error": f.error, "b_due": f.next_attempt_at}
                for f in failures
            ],
        )


def mark_failed(session: Session, message: OutboxMessage, error: str, *, permanent: bool) -> None:
    """Record a failed attempt: retry later with backoff, fail it, or give it up as dead."""
    decided = failure(message, error, permanent=permanent)
    message.last_error = decided.error
    message.locked_until = None
    message.state = decided.state
    message.next_attempt_at = decided.next_attempt_at


def mark_unbuilt(session: Session, message: OutboxMessage, reason: str) -> None:
    """Fail ``message`` for good: it cannot be built from what the database holds."""
    mark_failed(session, message, UNBUILT + reason, permanent=True)


def suppressed(session: Session, emails: Iterable[str]) -> set[tuple[str, int]]:
    """Return the (address, newsletter id) pairs among ``emails`` that no mail may go to."""
    emails = sorted(set(emails))
    if not emails:
        return set()
    rows = session.execute(_statements(_dialect(session)).suppressed, {"emails": emails})
    return {(email, newsletter_id) for email, newsletter_id in rows}


def suppress_all(session: Session, refused: list[tuple[str, int, str]]) -> None:
    """Suppress each (address, newsletter id, reason) of ``refused``, in one statement.

    An address suppressed already (meanwhile, by another worker) keeps its first reason.
    """
    if refused:
        table = Suppression.__table__
        dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
        now = utcnow()
        first: dict[tuple[str, int], str] = {}
        for email, newsletter_id, reason in refused:
            first.setdefault((email, newsletter_id), reason)
        session.execute(
            dialect.insert(table).on_conflict_do_nothing(index_elements=["email", "newsletter_id"]),
            [
                {"email": email, "newsletter_id": n, "reason": reason[:2000], "at": now}
                for (email, n), reason in first.items()
            ],
        )


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
            OutboxMessage.kind == OutboxKind.CONFIRM,
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
            MAIL,  # a paused webhook's deliveries wait as long as it takes
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
    query = sa.select(OutboxMessage).where(MAIL, OutboxMessage.state.in_(list(states)))
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
        requeue(message, now)
    session.flush()
    return retried


def requeue(message: OutboxMessage, now: datetime) -> None:
    """Put ``message`` back in the queue, due ``now``, as if new: no attempts, no lease."""
    message.state = OutboxState.PENDING
    message.attempts = 0
    message.next_attempt_at = now
    message.queued_at = now
    message.locked_until = None


def undeliverable(session: Session, limit: int = 200) -> list[OutboxMessage]:
    """Return the latest failed and dead messages, newest first: what an operator looks at."""
    return list(
        session.scalars(
            sa.select(OutboxMessage)
            .where(MAIL, OutboxMessage.state.in_([OutboxState.DEAD, OutboxState.FAILED]))
            .order_by(OutboxMessage.id.desc())
            .limit(limit)
        )
    )


def counts(session: Session) -> dict[str, int]:
    """Return how many mails are in each state."""
    rows = session.execute(
        sa.select(OutboxMessage.state, sa.func.count()).where(MAIL).group_by(OutboxMessage.state)
    )
    return {str(state): n for state, n in rows}


def oldest_due(session: Session) -> datetime | None:
    """Return when the oldest pending mail became due."""
    return session.scalar(
        sa.select(sa.func.min(OutboxMessage.next_attempt_at)).where(
            MAIL, OutboxMessage.state == OutboxState.PENDING
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
