"""Webhooks' use cases, shared by the CLI and the editors' area: add, list, remove, resume, resend.

Each function flushes and never commits: the command or the view commits once.
"""

import secrets

import sqlalchemy as sa
from flask_babel import gettext as _
from sqlalchemy.orm import Session

from ..db import utcnow
from ..mail import outbox
from ..models import ConsentEvent, Newsletter, OutboxKind, OutboxMessage, OutboxState, Webhook
from . import targets

# Recognisable in a config file or a secret scanner's rules.
SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret
KIND = OutboxKind.WEBHOOK.value
# Deliveries a log shows at most, newest first.
LOG_LENGTH = 100


class WebhookError(ValueError):
    """A webhook that cannot be added or found; the message says why."""


def add(session: Session, newsletter: Newsletter, url: str) -> tuple[Webhook, str]:
    """Add a webhook of ``newsletter`` to ``url``; return it with its signing secret.

    The URL is checked now (scheme, and every address its host resolves to), for an early
    and clear refusal; each delivery checks it again. The webhook is told of the changes
    from now on, not of the newsletter's past.
    """
    try:
        target = targets.check(url)
    except targets.TargetError as exc:
        raise WebhookError(str(exc)) from None
    txid, event_id = _feed_end(session)
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    webhook = Webhook(
        newsletter=newsletter,
        url=target.url,
        secret=secret,
        queued_txid=txid,
        queued_event_id=event_id,
    )
    session.add(webhook)
    session.flush()
    return webhook, secret


def _feed_end(session: Session) -> tuple[int, int]:
    """Return the change feed's position after which a webhook added now starts.

    On PostgreSQL: after every event of the transactions that finished before the oldest one
    still running (``changes`` hands out no others), so an event that commits after this,
    whatever its id, is told; on SQLite, where events commit in id order, after the last id.
    """
    last_id = session.scalar(sa.select(sa.func.max(ConsentEvent.id))) or 0
    if session.get_bind().dialect.name != "postgresql":
        return 0, last_id
    horizon = session.scalar(
        sa.select(
            sa.cast(
                sa.cast(sa.func.pg_snapshot_xmin(sa.func.pg_current_snapshot()), sa.Text),
                sa.BigInteger,
            )
        )
    )
    return horizon - 1, last_id


def find(session: Session, webhook_id: int, newsletter: Newsletter | None = None) -> Webhook:
    """Return webhook ``webhook_id`` (of ``newsletter``, if given), or raise WebhookError."""
    webhook = session.get(Webhook, webhook_id)
    if webhook is None or (newsletter is not None and webhook.newsletter_id != newsletter.id):
        raise WebhookError(_("there is no webhook number %(number)s", number=webhook_id))
    return webhook


def listing(session: Session, newsletter: Newsletter | None = None) -> list[Webhook]:
    """Return the webhooks of ``newsletter``, or of every newsletter, oldest first."""
    query = sa.select(Webhook).join(Webhook.newsletter).order_by(Newsletter.slug, Webhook.id)
    if newsletter is not None:
        query = query.where(Webhook.newsletter_id == newsletter.id)
    return list(session.scalars(query))


def remove(session: Session, webhook: Webhook) -> None:
    """Delete ``webhook`` and its deliveries, sent and waiting (the foreign key cascades)."""
    session.execute(sa.delete(OutboxMessage).where(OutboxMessage.webhook_id == webhook.id))
    session.delete(webhook)
    session.flush()


def resume(session: Session, webhook: Webhook) -> bool:
    """Send ``webhook``'s deliveries again from where it was paused; False if it was not paused.

    The delivery it stopped at gets a fresh count of attempts and is due now: the webhook
    continues in order, from the same place.
    """
    if webhook.paused_at is None:
        return False
    webhook.paused_at = None
    webhook.paused_reason = None
    head = next_delivery(session, webhook)
    if head is not None:
        head.attempts = 0
        head.next_attempt_at = utcnow()
        head.locked_until = None
    session.flush()
    return True


def next_delivery(session: Session, webhook: Webhook) -> OutboxMessage | None:
    """Return the delivery ``webhook`` sends next: its oldest pending one."""
    return session.scalar(
        sa.select(OutboxMessage)
        .where(OutboxMessage.webhook_id == webhook.id, OutboxMessage.state == OutboxState.PENDING)
        .order_by(OutboxMessage.id)
        .limit(1)
    )


def deliveries(session: Session, webhook: Webhook, limit: int = LOG_LENGTH) -> list[OutboxMessage]:
    """Return the latest deliveries of ``webhook``, newest first: its delivery log."""
    return list(
        session.scalars(
            sa.select(OutboxMessage)
            .where(OutboxMessage.webhook_id == webhook.id)
            .order_by(OutboxMessage.id.desc())
            .limit(limit)
        )
    )


def pending_count(session: Session, webhook: Webhook) -> int:
    """Return how many deliveries of ``webhook`` wait."""
    return session.scalar(
        sa.select(sa.func.count()).where(
            OutboxMessage.webhook_id == webhook.id, OutboxMessage.state == OutboxState.PENDING
        )
    )


def resend(session: Session, webhook: Webhook, delivery_id: int) -> OutboxMessage:
    """Queue delivery ``delivery_id`` of ``webhook`` again, due now, attempts reset.

    It goes out before the webhook's later waiting deliveries (they wait for the oldest), so
    the receiver gets it again, then the rest in order.
    """
    delivery = session.get(OutboxMessage, delivery_id, with_for_update=True)
    if delivery is None or delivery.webhook_id != webhook.id:
        raise WebhookError(
            _(
                "webhook %(webhook)s has no delivery number %(number)s",
                webhook=webhook.id,
                number=delivery_id,
            )
        )
    outbox.requeue(delivery, utcnow())
    session.flush()
    return delivery
