"""The change feed: every change of a newsletter's subscriptions, in order, from a cursor.

Each change of a subscription's status writes a consent event in the change's own
transaction (signup, confirmation, unsubscription, import, an editor's action). The feed is
those events, so nothing needs to remember to publish a change, and a change that was
rolled back was never there. Both the API's ``/changes`` and the webhooks read it.

The order is (txid, id). On PostgreSQL ``txid`` is the writing transaction's id (a column
default, migration 0012) and the feed hands out only the events of transactions older than
every transaction still running (``pg_snapshot_xmin``): ids come from a sequence when a row
is inserted, not when it commits, so ordering by id alone would let a reader pass an id that
a slower transaction commits later. On SQLite writers take turns, so events commit in the
order of their ids, and txid is NULL (read as 0).

A cursor is opaque to the caller: ``<txid>.<id>`` of the last change handed out, or empty
for the beginning.
"""

import re
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from .models import ConsentEvent, Newsletter, Status, Subscriber

CURSOR = re.compile(r"(\d{1,19})\.(\d{1,19})")
# The webhook event of each status a subscription may change to.
EVENTS = {
    Status.PENDING: "subscription.pending",
    Status.CONFIRMED: "subscription.confirmed",
    Status.UNSUBSCRIBED: "subscription.unsubscribed",
}
# Events of the ledger's actions that end a subscription rather than change its status.
ENDINGS = {
    "deleted": "subscription.deleted",  # by an editor: the address is still known
    "expired": "subscription.deleted",  # never confirmed, removed by the purge
    "erased": "subscription.erased",  # at the person's request: the address is gone
}


class CursorError(ValueError):
    """A cursor that this feed did not hand out."""


@dataclass(frozen=True)
class Position:
    """A place in the feed: after the event ``event_id`` of transaction ``txid``."""

    txid: int = 0
    event_id: int = 0

    @classmethod
    def parse(cls, cursor: str | None) -> "Position":
        """Return the position a cursor names; raise CursorError for one not handed out."""
        if not cursor:
            return cls()
        match = CURSOR.fullmatch(cursor)
        if match is None or max(int(match[1]), int(match[2])) >= 2**63:
            raise CursorError("This cursor was not handed out by this feed: start without one.")
        return cls(int(match[1]), int(match[2]))

    def __str__(self) -> str:
        return f"{self.txid}.{self.event_id}"


@dataclass(frozen=True)
class Change:
    """One change of a subscription, as the feed and the webhooks tell it."""

    id: int  # the consent event's: unique, a webhook delivery's event id is made of it
    position: Position
    newsletter: str  # slug
    newsletter_id: int
    subscription_id: int
    email: str | None  # None once the person was erased
    status: str
    at: datetime
    action: str | None = None

    @property
    def event(self) -> str:
        """Return the webhook event name of this change: ``subscription.<status>`` mostly."""
        return ENDINGS.get(self.action) or EVENTS[Status(self.status)]

    def body(self) -> dict:
        """Return SPEC's webhook body of this change (the API's change items are the same)."""
        return {
            "id": f"evt_{self.id}",
            "event": self.event,
            "newsletter": self.newsletter,
            # The subscription's id, stable for its life: how a receiver finds its record of
            # a person whose address an erasure has taken out of the body.
            "subscription": self.subscription_id,
            "email": self.email,
            "status": self.status,
            "at": _iso(self.at),
            "cursor": str(self.position),
        }


def since(session: Session, newsletter_ids: list[int], after: Position, limit: int) -> list[Change]:
    """Return up to ``limit`` changes of those newsletters after ``after``, oldest first."""
    event = ConsentEvent.__table__.c
    postgresql = session.get_bind().dialect.name == "postgresql"
    txid = event.txid if postgresql else sa.literal(0, sa.BigInteger)
    query = (
        sa.select(
            event.id,
            txid.label("txid"),
            Newsletter.slug,
            event.newsletter_id,
            event.subscription_id,
            Subscriber.email,
            event.status,
            event.at,
            event.action,
        )
        .select_from(ConsentEvent.__table__)
        .join(Newsletter, Newsletter.id == event.newsletter_id)
        # The ledger outlives erased people: their events come without an address.
        .outerjoin(Subscriber, Subscriber.id == event.subscriber_id)
        .where(event.newsletter_id.in_(newsletter_ids))
        .limit(limit)
    )
    if postgresql:
        # Only what no transaction still running can come before (see the module's doc).
        horizon = sa.func.pg_snapshot_xmin(sa.func.pg_current_snapshot())
        query = query.where(
            sa.tuple_(event.txid, event.id) > sa.tuple_(after.txid, after.event_id),
            event.txid < sa.cast(sa.cast(horizon, sa.Text), sa.BigInteger),
        ).order_by(event.txid, event.id)
    else:
        query = query.where(event.id > after.event_id).order_by(event.id)
    return [
        Change(
            id=row.id,
            position=Position(row.txid, row.id),
            newsletter=row.slug,
            newsletter_id=row.newsletter_id,
            subscription_id=row.subscription_id,
            email=row.email,
            status=str(row.status),
            at=row.at,
            action=row.action,
        )
        for row in session.execute(query)
    ]


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")
