"""Erasure: a person's data removed everywhere, their "no" kept as a keyed hash.

``erase`` is the right to erasure for one address, whoever asks (the reader in the preference
centre, an admin, ``newsletters erase``). The address and everything personal goes: the
subscriber, its subscriptions (names, IPs, user agents), tokens, queued mails and signup
requests, the address in webhook deliveries still queued and in stored API answers, and the
IPs and user agents of its ledger rows. What must be kept stays: the ledger's rows, without
anything personal, show that consent existed, when, and that it was withdrawn. A keyed hash of
the address (``erased_address``) keeps imports and API calls from bringing it back; the
person's own new signup, once confirmed, lifts it (``forget``).
"""

import hashlib
import hmac
import json
from collections.abc import Iterable

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import Session

from . import ledger, tokens
from .db import insert_ignoring, utcnow
from .ledger import Action, Evidence
from .models import (
    ErasedAddress,
    IdempotentRequest,
    LinkRequest,
    OutboxMessage,
    OutboxState,
    SignupRequest,
    Status,
    Subscriber,
    Subscription,
    Suppression,
    Token,
)

REFUSED = (
    "This address was erased at its owner's request. Only the person can sign up again, "
    "through a signup form, and confirm it."
)


def digest(email: str, key: str | None = None) -> str:
    """Return the keyed hash that stands for an erased address."""
    key = key or current_app.config["SECRET_KEY"]
    return hmac.new(key.encode(), f"erased:{email}".encode(), hashlib.sha256).hexdigest()


def is_erased(session: Session, email: str) -> bool:
    """Tell whether ``email`` (normalised) was erased and has not signed up again since."""
    return bool(erased_among(session, [email]))


def erased_among(session: Session, emails: Iterable[str]) -> set[str]:
    """Return those of ``emails`` that are on the erasure suppression list (under any key).

    One statement however many addresses (an import's batch), with the hashes as a single
    parameter: an IN list of thousands would pass SQLite's limit on parameters.
    """
    keys = tokens.keys()
    by_digest = {digest(e, key): e for e in emails for key in keys}
    if not by_digest:
        return set()
    dialect = session.get_bind().dialect.name
    digests = json.dumps(list(by_digest)) if dialect == "sqlite" else list(by_digest)
    found = session.scalars(_ERASED[dialect], {"digests": digests})
    return {by_digest[d] for d in found}


_ERASED = {
    "sqlite": sa.text(
        "SELECT digest FROM erased_address WHERE digest IN (SELECT value FROM json_each(:digests))"
    ),
    "postgresql": sa.text(
        "SELECT digest FROM erased_address WHERE digest = ANY(CAST(:digests AS text[]))"
    ),
}


def forget(session: Session, email: str) -> None:
    """Lift the erasure of ``email``: its owner signed up again and confirmed."""
    keys = tokens.keys()
    session.execute(
        sa.delete(ErasedAddress).where(ErasedAddress.digest.in_([digest(email, k) for k in keys]))
    )


def erase(session: Session, email: str, evidence: Evidence, detail: str) -> bool:
    """Erase the person with address ``email``; return whether anything of theirs was found.

    The suppression hash goes in either way, so an erasure asked for before an import still
    keeps the address out. Flushes, never commits.
    """
    session.execute(
        insert_ignoring(session, ErasedAddress.__table__, ["digest"]),
        [{"digest": digest(email), "at": utcnow()}],
    )
    session.execute(sa.delete(SignupRequest).where(SignupRequest.email == email))
    session.execute(sa.delete(LinkRequest).where(LinkRequest.email == email))
    session.execute(sa.delete(Suppression).where(Suppression.email == email))
    _scrub_queued(session, email)
    subscriber = session.scalar(
        sa.select(Subscriber).where(Subscriber.email == email).with_for_update()
    )
    if subscriber is None:
        session.flush()
        return False
    subscriptions = list(
        session.scalars(
            sa.select(Subscription)
            .where(Subscription.subscriber_id == subscriber.id)
            .order_by(Subscription.id)
            .with_for_update()
        )
    )
    ids = [s.id for s in subscriptions]
    # The person's IP and user agent leave the ledger, then the erasure is recorded: by whom
    # (the evidence's source), never with the address.
    ledger.redact(session, ids)
    ledger.record(
        session,
        [
            ledger.Entry(
                subscription_id=s.id,
                subscriber_id=subscriber.id,
                newsletter_id=s.newsletter_id,
                action=Action.ERASED,
                status=Status.UNSUBSCRIBED,
                evidence=Evidence(ip=None, user_agent=None, source=evidence.source),
                detail=detail,
            )
            for s in subscriptions
        ],
    )
    session.execute(sa.delete(Subscription).where(Subscription.subscriber_id == subscriber.id))
    session.execute(sa.delete(Token).where(Token.subscriber_id == subscriber.id))
    session.execute(sa.delete(Subscriber).where(Subscriber.id == subscriber.id))
    session.flush()
    return True


def _scrub_queued(session: Session, email: str) -> None:
    """Remove ``email`` from what is still queued: mails, webhook bodies, API answers."""
    now = utcnow()
    # A mail a worker holds right now is left to it: deleting it under the worker would fail
    # the worker's own update. Every other mail to the address goes.
    session.execute(
        sa.delete(OutboxMessage).where(
            OutboxMessage.webhook_id.is_(None),
            OutboxMessage.recipient == email,
            sa.or_(OutboxMessage.locked_until.is_(None), OutboxMessage.locked_until < now),
        )
    )
    # Stored JSON spells the address as json.dumps does (non-ASCII escaped); a webhook's body
    # is itself JSON text inside that JSON, so its quotes are escaped once more.
    as_json = json.dumps(email)
    in_body = json.dumps(json.dumps(email, ensure_ascii=False))[1:-1]
    # A webhook delivery not yet made still goes (the receiver must hear of the change), but
    # without the address.
    deliveries = session.execute(
        sa.select(OutboxMessage.id, OutboxMessage.payload).where(
            OutboxMessage.webhook_id.is_not(None),
            OutboxMessage.state != OutboxState.SENT,
            sa.cast(OutboxMessage.payload, sa.Text).contains(in_body, autoescape=True),
        )
    ).all()
    for delivery_id, payload in deliveries:
        body = json.loads(payload) if isinstance(payload, str) else payload
        if isinstance(body, dict) and body.get("email") == email:
            body["email"] = None
            session.execute(
                sa.update(OutboxMessage)
                .where(OutboxMessage.id == delivery_id)
                .values(payload=json.dumps(body, ensure_ascii=False, separators=(",", ":")))
            )
    session.execute(
        sa.delete(IdempotentRequest).where(
            sa.cast(IdempotentRequest.body, sa.Text).contains(as_json, autoescape=True)
        )
    )
