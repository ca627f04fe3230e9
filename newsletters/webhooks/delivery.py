"""The worker's part of webhooks: queue each change as a delivery, then send them, in order.

Fan-out: the change feed (``changes``) is the source, read from each active webhook's
position; the deliveries go into the outbox (kind "webhook") and the position moves on, in
one transaction. A change that was rolled back is not in the feed, so it is never sent; a
fan-out that fails is rolled back whole, so no change is queued twice or skipped.

Delivery: a webhook's deliveries go one after the other, oldest first. A claim takes only
the oldest pending delivery of each webhook, so a receiver that was down sees every event
once it is back, in order. A failure (no connection, a timeout, a refused address, any
answer but a 2xx) counts an attempt on that delivery and tries it again after a backoff;
its attempts are so the webhook's failures in a row. At WEBHOOK_MAX_FAILURES the webhook is
paused and its newsletter's editors get a mail; its deliveries wait until one resumes it.
"""

import functools
import hashlib
import hmac
import json
import logging
import time
from collections import Counter
from collections.abc import Callable

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import Session

from .. import changes, db
from ..db import utcnow
from ..mail import outbox
from ..models import Editor, OutboxKind, OutboxMessage, OutboxState, Webhook, editor_newsletter
from . import targets
from .services import KIND

log = logging.getLogger(__name__)
OUTBOX = OutboxMessage.__table__
# Changes one webhook's fan-out queues at most per transaction.
FAN_OUT_BATCH = 500
# Deliveries one claim takes at most (one per webhook); fewer when slow receivers could
# outlast the lease (see ``_claim_size``).
MAX_CLAIM = 20
SIGNATURE_HEADER = "X-Newsletters-Signature"
CLAIMED_COLUMNS = ("id", "webhook_id", "payload", "attempts", "locked_until")


def signature(secret: str, body: bytes) -> str:
    """Return the signature header's value of ``body``: ``sha256=<hex HMAC-SHA256>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def fan_out(session: Session, batch: int = FAN_OUT_BATCH) -> tuple[int, bool]:
    """Queue the changes each active webhook has not been given; the caller commits.

    Each webhook is locked while its deliveries are queued (SKIP LOCKED on PostgreSQL: one
    that another worker fans out now is that worker's). Return how many deliveries were
    queued, and whether some webhook has more waiting than ``batch``.
    """
    webhooks = session.scalars(
        sa.select(Webhook)
        .where(Webhook.paused_at.is_(None))
        .order_by(Webhook.id)
        .with_for_update(skip_locked=True)
        # A long-lived worker's session may hold these from before: read the positions anew.
        .execution_options(populate_existing=True)
    ).all()
    now = utcnow()
    rows, more = [], False
    for webhook in webhooks:
        after = changes.Position(webhook.queued_txid, webhook.queued_event_id)
        found = changes.since(session, [webhook.newsletter_id], after, batch)
        if not found:
            continue
        more = more or len(found) == batch
        host = targets.parse(webhook.url).host[:320] if webhook.url else ""
        for change in found:
            body = change.body()
            rows.append(
                {
                    "kind": KIND,
                    "webhook_id": webhook.id,
                    "recipient": host,
                    # The JSON text itself: what is signed and sent, byte for byte.
                    "payload": json.dumps(body, ensure_ascii=False, separators=(",", ":")),
                    "message_id": body["id"],
                    "state": OutboxState.PENDING,
                    "attempts": 0,
                    "next_attempt_at": now,
                    "queued_at": now,
                    "created_at": now,
                }
            )
        webhook.queued_txid = found[-1].position.txid
        webhook.queued_event_id = found[-1].position.event_id
    if rows:
        session.execute(sa.insert(OUTBOX), rows)
    session.flush()
    return len(rows), more


@functools.cache
def _claim_statement(dialect: str) -> sa.Update:
    c = OUTBOX.c
    earlier = OUTBOX.alias("earlier")
    due = (
        sa.select(c.id)
        .where(
            c.webhook_id.in_(sa.select(Webhook.id).where(Webhook.paused_at.is_(None))),
            c.state == OutboxState.PENDING,
            c.next_attempt_at <= sa.bindparam("now"),
            sa.or_(c.locked_until.is_(None), c.locked_until < sa.bindparam("now")),
            # Only a webhook's oldest pending delivery: the next waits until it is sent.
            ~sa.exists().where(
                earlier.c.webhook_id == c.webhook_id,
                earlier.c.state == OutboxState.PENDING,
                earlier.c.id < c.id,
            ),
        )
        .order_by(c.next_attempt_at)
        .limit(sa.bindparam("limit"))
        .with_for_update(skip_locked=True)
        # Evaluated once (see mail.outbox's claim): a LIMIT inside IN (…) may run again.
        .cte("due")
        .prefix_with("MATERIALIZED", dialect="postgresql")
    )
    return (
        sa.update(OUTBOX)
        .where(c.id.in_(sa.select(due.c.id)))
        .values(locked_until=sa.bindparam("lease_until"), attempts=c.attempts + 1)
        .returning(*(c[name] for name in CLAIMED_COLUMNS))
    )


def claim(session: Session, limit: int) -> list[sa.Row]:
    """Lease the next delivery of up to ``limit`` webhooks, counting an attempt; caller commits."""
    now = utcnow()
    rows = session.execute(
        _claim_statement(session.get_bind().dialect.name),
        {"now": now, "lease_until": now + outbox.lease(), "limit": limit},
    ).all()
    return sorted(rows, key=lambda row: row.id)


def _claim_size() -> int:
    # Each delivery may take a connect and a read of WEBHOOK_TIMEOUT_SECONDS; a claim's last
    # one must start well within the lease, or another worker could take it meanwhile.
    timeout = max(0.1, float(current_app.config["WEBHOOK_TIMEOUT_SECONDS"]))
    return max(1, min(MAX_CLAIM, int(outbox.lease().total_seconds() / (4 * timeout))))


def deliver_due(report: Callable[[str], None] = log.info, budget: float | None = None) -> Counter:
    """Send the deliveries due now, each webhook's in order; return counts by outcome.

    Outcomes: ``sent``, ``retry`` (due again after a backoff), ``paused`` (the webhook was
    paused at this failure). With ``budget``, no delivery starts after that many seconds.
    """
    session = db.session()
    outcome: Counter = Counter()
    began = time.monotonic()
    while True:
        rows = claim(session, _claim_size())
        hooks = {
            w.id: (w.url, w.secret)
            for w in session.execute(
                sa.select(Webhook.id, Webhook.url, Webhook.secret).where(
                    Webhook.id.in_({row.webhook_id for row in rows})
                )
            )
        }
        session.commit()
        if not rows:
            return outcome
        rest = list(rows)
        try:
            while rest:
                if budget is not None and time.monotonic() - began >= budget:
                    return outcome
                row = rest.pop(0)
                url, secret = hooks[row.webhook_id]
                error = _send(url, secret, row.payload)
                outcome[_record(session, row, error, report)] += 1
        finally:
            # Not attempted (the budget ran out, an interrupt): due as before, uncounted.
            _release(session, rest)


def _send(url: str, secret: str, payload: str) -> str | None:
    """POST one delivery; return None if the receiver took it, else what went wrong."""
    body = payload.encode()
    event = json.loads(payload).get("event", "")
    try:
        target = targets.parse(url)
        answer = targets.post(
            target,
            body,
            {SIGNATURE_HEADER: signature(secret, body), "X-Newsletters-Event": event},
        )
    except targets.TargetError as exc:
        return str(exc)
    if answer.ok:
        return None
    if 300 <= answer.status < 400:
        return (
            f"HTTP {answer.status} {answer.reason}: a redirect (to {answer.location or '?'}), "
            "not followed: give the webhook its final URL"
        )
    return f"HTTP {answer.status} {answer.reason}: {answer.text}".strip()


def _record(session: Session, row: sa.Row, error: str | None, report) -> str:
    """Record one attempt, in its own transaction; return its outcome's name."""
    c = OUTBOX.c
    ours = (c.id == row.id, c.locked_until == row.locked_until)
    now = utcnow()
    try:
        if error is None:
            session.execute(
                sa.update(OUTBOX)
                .where(*ours)
                .values(state=OutboxState.SENT, sent_at=now, locked_until=None, last_error=None)
            )
            report(f"webhook {row.webhook_id}: delivery {row.id} sent")
            session.commit()
            return "sent"
        session.execute(
            sa.update(OUTBOX)
            .where(*ours)
            .values(
                last_error=error[:2000],
                next_attempt_at=now + outbox.backoff(row.attempts),
                locked_until=None,
            )
        )
        limit = max(1, current_app.config["WEBHOOK_MAX_FAILURES"])
        paused = row.attempts >= limit and pause(
            session, row.webhook_id, f"{row.attempts} deliveries failed in a row; the last: {error}"
        )
        session.commit()
    except BaseException:
        session.rollback()
        raise
    if paused:
        report(f"webhook {row.webhook_id}: paused after {row.attempts} failures: {error}")
        return "paused"
    report(f"webhook {row.webhook_id}: delivery {row.id} failed, will retry: {error}")
    return "retry"


def _release(session: Session, rows: list[sa.Row]) -> None:
    c = OUTBOX.c
    try:
        for row in rows:
            session.execute(
                sa.update(OUTBOX)
                .where(c.id == row.id, c.locked_until == row.locked_until)
                .values(locked_until=None, attempts=c.attempts - 1)
            )
        session.commit()
    except BaseException:
        session.rollback()
        raise


def pause(session: Session, webhook_id: int, reason: str) -> bool:
    """Pause a webhook and queue a mail to its newsletter's editors; False if paused already.

    The editors are the newsletter's active editors, or the active admins if it has none.
    """
    paused = session.execute(
        sa.update(Webhook)
        .where(Webhook.id == webhook_id, Webhook.paused_at.is_(None))
        .values(paused_at=utcnow(), paused_reason=reason[:2000])
        .execution_options(synchronize_session=False)
    )
    if paused.rowcount != 1:
        return False
    webhook = session.get(Webhook, webhook_id, populate_existing=True)
    newsletter = webhook.newsletter
    editors = (
        session.scalars(
            sa.select(Editor.email)
            .join(editor_newsletter, editor_newsletter.c.editor_id == Editor.id)
            .where(editor_newsletter.c.newsletter_id == newsletter.id, Editor.disabled_at.is_(None))
        ).all()
        or session.scalars(
            sa.select(Editor.email).where(Editor.is_admin, Editor.disabled_at.is_(None))
        ).all()
    )
    for email in sorted(set(editors)):
        outbox.enqueue(
            session,
            OutboxKind.WEBHOOK_PAUSED,
            email,
            {
                "webhook_id": webhook.id,
                "url": webhook.url,
                "newsletter": newsletter.name,
                "slug": newsletter.slug,
                "reason": webhook.paused_reason,
            },
        )
    session.flush()
    return True


def run_round(report: Callable[[str], None] = log.info, budget: float | None = None) -> bool:
    """Queue the new changes, then send the due deliveries; tell whether work was left over.

    The worker's webhook part of each round. A database error is raised, the open
    transaction rolled back by the caller.
    """
    session = db.session()
    began = time.monotonic()
    queued = 0
    more = True
    while more:
        done, more = fan_out(session)
        session.commit()
        queued += done
        if budget is not None and time.monotonic() - began >= budget:
            return True
    if queued:
        report(f"webhooks: {queued} deliveries queued")
    left = None if budget is None else budget - (time.monotonic() - began)
    if left is not None and left <= 0:
        return True
    deliver_due(report, left)
    return budget is not None and time.monotonic() - began >= budget
