"""The API's reads of subscriptions: a keyset page in id order, one by address, as JSON."""

import re
from datetime import datetime

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import Session, contains_eager

from .. import tokens
from ..links import external_url
from ..models import Newsletter, Subscriber, Subscription
from ..subscribers import flags_of
from ..subscriptions import services
from .errors import ApiError

CURSOR = re.compile(r"\d{1,18}")
# What a page holds when the caller does not say (API_PAGE_SIZE caps what it may say).
DEFAULT_PAGE_SIZE = 100


def parse_cursor(cursor: str | None) -> int:
    """Return the id a subscriptions cursor names (0 for none); refuse (400) a foreign one."""
    if not cursor:
        return 0
    if not CURSOR.fullmatch(cursor):
        raise ApiError(
            400,
            "bad_cursor",
            "This cursor was not handed out by this list: start without one.",
            {"cursor": "Pass the next_cursor of the previous page, as it was."},
        )
    return int(cursor)


def page_size(limit: int | None) -> int:
    """Return how many a page holds: as asked, at most API_PAGE_SIZE."""
    most = current_app.config["API_PAGE_SIZE"]
    return max(1, min(limit or DEFAULT_PAGE_SIZE, most))


def subscription_of(session: Session, newsletter: Newsletter, email: str) -> Subscription:
    """Return the subscription of ``email`` to ``newsletter``, or refuse (404)."""
    try:
        address = services.normalise_address(email)
    except services.InvalidSignup:
        address = None
    subscription = (
        None
        if address is None
        else session.scalar(
            sa.select(Subscription)
            .join(Subscription.subscriber)
            .options(contains_eager(Subscription.subscriber))
            .where(Subscription.newsletter_id == newsletter.id, Subscriber.email == address)
        )
    )
    if subscription is None:
        raise ApiError(
            404, "subscription_not_found", f"{email!r} has no subscription to {newsletter.slug!r}."
        )
    return subscription


def bodies(rows: list[Subscription]) -> list[dict]:
    """Return the JSON of each subscription: SPEC's export fields, null where unknown."""
    derive = tokens.deriver()
    prefix = external_url("subscriptions.unsubscribe_page", token="-")[:-1]  # noqa: S106

    def link(subscription: Subscription) -> str | None:
        token = subscription.unsubscribe_token
        secret = token and derive(token.purpose, token.salt, token.key_id, token.digest)
        return prefix + secret if secret else None

    return [
        {
            "id": s.id,
            "email": s.subscriber.email,
            "name": s.name,
            "status": str(s.status),
            "optin_at": _stamp(s.optin_at),
            "optin_ip": s.optin_ip,
            "confirmed_at": _stamp(s.confirmed_at),
            "confirm_ip": s.confirm_ip,
            "unsubscribed_at": _stamp(s.unsubscribed_at),
            "source": s.source,
            "unsubscribe_url": link(s),
            "address_flags": flags_of(s),
            "language": s.language,
            "page": s.page,
            "utm_source": s.utm_source,
            "utm_medium": s.utm_medium,
            "utm_campaign": s.utm_campaign,
            "verification": s.verification,
        }
        for s in rows
    ]


def _stamp(at: datetime | None) -> str | None:
    # SPEC's export form: ISO 8601 UTC to the second.
    return None if at is None else at.strftime("%Y-%m-%dT%H:%M:%SZ")
