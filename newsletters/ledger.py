"""The consent ledger: every event of every subscription, appended, chained, never rewritten.

Each row says what happened to one subscription (``Action``), the status it left, when, from
where (IP, user agent, source, the embedding page's origin) and what the reader was shown (the
form's text, stored once in ``consent_text`` and referenced by its SHA-256). ``record`` is the
one way rows are written, by every path: signup processing, confirmation, unsubscription, the
preference centre, the importer, editors and erasure.

Rows are chained per subscription: each carries the hash of the previous row of the same
subscription and its own hash over everything it says, so ``verify`` finds a row altered,
removed, inserted or moved. The personal part of a row (IP and user agent) enters the hash
only through ``evidence_digest``, a salted SHA-256 of it: erasure and the retention settings
may blank those fields (``redact``) and the chain still verifies, while whatever else a row
says cannot change. Database triggers (migration 0013) refuse every DELETE and every UPDATE
but such a redaction, whoever sends it.
"""

import enum
import hashlib
import ipaddress
import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from .db import insert_ignoring, utcnow
from .models import ConsentEvent, ConsentText, Status

EVENTS = ConsentEvent.__table__
TEXTS = ConsentText.__table__
# The version of the hashed form of a row; a new form would come with its own number.
HASH_VERSION = 1


class Action(enum.StrEnum):
    """What happened to a subscription."""

    SIGNED_UP = "signed_up"  # a first signup: pending
    RESUBSCRIBED = "resubscribed"  # signed up again after leaving or before confirming
    CONFIRMED = "confirmed"  # the confirmation link's POST
    DECLINED = "declined"  # unticked on the confirmation page of a signup to several
    JOINED = "joined"  # from the preference centre, whose link proves the inbox: confirmed
    UNSUBSCRIBED = "unsubscribed"
    IMPORTED = "imported"
    EDITED = "edited"  # an editor changed it (unsubscribed it, for one)
    DELETED = "deleted"  # an editor deleted the subscription
    EXPIRED = "expired"  # never confirmed, removed by ``newsletters purge``
    ERASED = "erased"  # the person's data erased at their request


@dataclass(frozen=True)
class Evidence:
    """Where and how something was asked for: the same object for every path."""

    ip: str | None
    user_agent: str | None
    source: str
    # The form's text as the reader saw it (stored once, by hash).
    form_text: str | None = None
    # The scheme://host[:port] of the page the form was embedded in, when known.
    origin: str | None = None
    # The page itself, its query cut to utm_* parameters (attribution.py), and what the
    # signup proved about being made by a person (models.Verification).
    page: str | None = None
    verification: str | None = None


@dataclass(frozen=True)
class Entry:
    """One row to append: what happened to which subscription, on whose evidence."""

    subscription_id: int
    subscriber_id: int | None
    newsletter_id: int
    action: Action
    status: Status
    evidence: Evidence
    at: datetime | None = None
    detail: str | None = None


def text_digest(text: str) -> str:
    """Return the reference of a form text: the SHA-256 of its UTF-8 bytes, in hex."""
    return hashlib.sha256(text.encode()).hexdigest()


def evidence_digest(salt: str, ip: str | None, user_agent: str | None) -> str:
    """Return the salted digest that stands for a row's personal fields in its hash."""
    return _sha256([salt, ip, user_agent])


def row_hash(row) -> str:
    """Return the hash of a ledger row (a mapping of its columns), which covers its chain."""
    get = row.get
    at = get("at")
    return _sha256(
        [
            HASH_VERSION,
            get("prev_hash"),
            get("subscription_id"),
            get("subscriber_id"),
            get("newsletter_id"),
            str(get("action")),
            str(get("status")),
            instant(at),
            get("source"),
            get("origin"),
            get("text_digest"),
            get("detail"),
            get("evidence_digest"),
            # Since migration 0015, and only when known: the rows before hash as they did.
            *((get("page"), get("verification")) if get("page") or get("verification") else ()),
        ]
    )


def record(session: Session, entries: Iterable[Entry], *, new: bool | set[int] = False) -> int:
    """Append ``entries`` to the ledger, chained after each subscription's last row.

    The one writer of the ledger. Callers hold the subscriptions' rows locked (they have just
    changed them), so two transactions cannot chain after the same row. ``new`` names the
    subscriptions just added (True: all of them), which have no row yet (ids are never
    reused), so their chains need no lookup. Returns the number of rows written; flushes,
    never commits.
    """
    entries = list(entries)
    if not entries:
        return 0
    session.flush()
    now = utcnow()
    texts = {
        text_digest(e.evidence.form_text): e.evidence.form_text
        for e in entries
        if e.evidence.form_text
    }
    if texts:
        session.execute(
            insert_ignoring(session, TEXTS, ["digest"]),
            [{"digest": d, "text": t, "created_at": now} for d, t in texts.items()],
        )
    known = set() if new is True else {e.subscription_id for e in entries} - (new or set())
    heads = _heads(session, known) if known else {}
    rows = []
    for entry in entries:
        evidence = entry.evidence
        salt = secrets.token_hex(16)
        row = {
            "subscription_id": entry.subscription_id,
            "subscriber_id": entry.subscriber_id,
            "newsletter_id": entry.newsletter_id,
            "action": str(entry.action),
            "status": str(entry.status),
            "at": entry.at or now,
            "ip": evidence.ip,
            "user_agent": evidence.user_agent,
            "source": evidence.source and str(evidence.source),
            "origin": evidence.origin,
            "page": evidence.page,
            "verification": evidence.verification,
            "text_digest": evidence.form_text and text_digest(evidence.form_text),
            "detail": entry.detail,
            "salt": salt,
            "evidence_digest": evidence_digest(salt, evidence.ip, evidence.user_agent),
            "prev_hash": heads.get(entry.subscription_id),
        }
        row["hash"] = heads[entry.subscription_id] = row_hash(row)
        rows.append(row)
    session.execute(sa.insert(EVENTS), rows)
    return len(rows)


def _heads(session: Session, subscription_ids: set[int]) -> dict[int, str]:
    """Return the hash of the last row of each of these subscriptions that has rows."""
    # One statement whatever the batch's size (a batch holds a few thousand at most).
    last = (
        sa.select(sa.func.max(EVENTS.c.id))
        .where(EVENTS.c.subscription_id.in_(sorted(subscription_ids)))
        .group_by(EVENTS.c.subscription_id)
    )
    return dict(
        session.execute(
            sa.select(EVENTS.c.subscription_id, EVENTS.c.hash).where(EVENTS.c.id.in_(last))
        ).all()
    )


def history(session: Session, subscription_ids: Iterable[int]) -> list:
    """Return the ledger rows of these subscriptions, each chain in order, with their texts."""
    ids = list(subscription_ids)
    if not ids:
        return []
    return session.execute(
        sa.select(EVENTS, TEXTS.c.text.label("form_text"))
        .outerjoin(TEXTS, TEXTS.c.digest == EVENTS.c.text_digest)
        .where(EVENTS.c.subscription_id.in_(ids))
        .order_by(EVENTS.c.subscription_id, EVENTS.c.id)
    ).all()


def as_dict(row) -> dict:
    """Return a ledger row as the evidence downloads show it (JSON-ready)."""
    return {
        "id": row.id,
        "subscription_id": row.subscription_id,
        "newsletter_id": row.newsletter_id,
        "action": row.action,
        "status": row.status,
        "at": instant(row.at),
        "ip": row.ip,
        "user_agent": row.user_agent,
        "source": row.source,
        "origin": row.origin,
        "page": row.page,
        "verification": row.verification,
        "form_text_version": row.text_digest,
        "form_text": getattr(row, "form_text", None),
        "detail": row.detail,
        "redacted_at": instant(row.redacted_at),
        "prev_hash": row.prev_hash,
        "hash": row.hash,
    }


def subscription_dict(subscription) -> dict:
    """Return what a subscription itself holds as evidence, as the downloads show it."""
    return {
        "id": subscription.id,
        "newsletter": subscription.newsletter.slug,
        "newsletter_name": subscription.newsletter.name,
        "email": subscription.subscriber.email,
        "name": subscription.name,
        "status": str(subscription.status),
        "source": subscription.source,
        "origin": subscription.origin,
        "page": subscription.page,
        "utm_source": subscription.utm_source,
        "utm_medium": subscription.utm_medium,
        "utm_campaign": subscription.utm_campaign,
        "verification": subscription.verification,
        "optin_at": instant(subscription.optin_at),
        "optin_ip": subscription.optin_ip,
        "optin_user_agent": subscription.optin_user_agent,
        "form_text_version": subscription.text_digest,
        "form_text": subscription.form_text,
        "confirmed_at": instant(subscription.confirmed_at),
        "confirm_ip": subscription.confirm_ip,
        "unsubscribed_at": instant(subscription.unsubscribed_at),
        "created_at": instant(subscription.created_at),
    }


def redact(session: Session, subscription_ids: Iterable[int]) -> int:
    """Blank the IP and user agent of every row of these subscriptions (erasure)."""
    ids = list(subscription_ids)
    if not ids:
        return 0
    return session.execute(
        sa.update(EVENTS)
        .where(EVENTS.c.subscription_id.in_(ids))
        .values(ip=None, user_agent=None, salt=None, redacted_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount


def truncate_before(session: Session, cutoff: datetime, batch: int = 5000) -> int:
    """Cut the IP of rows older than ``cutoff`` to its network and drop the user agent.

    IPv4 addresses keep their /24, IPv6 their /48: enough to tell a country or a provider,
    not a person. Returns the rows changed. In batches, so a first run on a large ledger
    does not hold one long transaction's locks.
    """
    changed = 0
    while True:
        rows = session.execute(
            sa.select(EVENTS.c.id, EVENTS.c.ip)
            .where(
                EVENTS.c.at < cutoff,
                EVENTS.c.redacted_at.is_(None),
                sa.or_(EVENTS.c.ip.is_not(None), EVENTS.c.user_agent.is_not(None)),
            )
            .order_by(EVENTS.c.id)
            .limit(batch)
        ).all()
        if not rows:
            return changed
        now = utcnow()
        session.execute(
            sa.update(EVENTS)
            .where(EVENTS.c.id == sa.bindparam("b_id"))
            .values(ip=sa.bindparam("b_ip"), user_agent=None, salt=None, redacted_at=now)
            .execution_options(synchronize_session=False),
            [{"b_id": row.id, "b_ip": network_of(row.ip)} for row in rows],
        )
        changed += len(rows)


def network_of(ip: str | None) -> str | None:
    """Return the network an IP address is in (/24 or /48), as a ledger keeps it when old."""
    if not ip:
        return None
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


@dataclass(frozen=True)
class Break:
    """A place where a chain does not hold, and why."""

    subscription_id: int
    event_id: int
    reason: str

    def __str__(self) -> str:
        return f"subscription {self.subscription_id}, event {self.event_id}: {self.reason}"


def verify(session: Session, batch: int = 10000) -> tuple[int, list[Break]]:
    """Check every chain; return the rows checked and each break found.

    Walks the ledger in (subscription, id) order, a batch at a time, so memory stays flat.
    """
    checked, breaks = 0, []
    current, previous = None, None
    after = (-1, -1)
    columns = [c for c in EVENTS.c if c.name != "txid"]
    while True:
        rows = session.execute(
            sa.select(*columns)
            .where(sa.tuple_(EVENTS.c.subscription_id, EVENTS.c.id) > sa.tuple_(*after))
            .order_by(EVENTS.c.subscription_id, EVENTS.c.id)
            .limit(batch)
        ).all()
        if not rows:
            return checked, breaks
        for row in rows:
            checked += 1
            if row.subscription_id != current:
                current, previous = row.subscription_id, None
            breaks.extend(check_row(row, previous))
            previous = row
        after = (rows[-1].subscription_id, rows[-1].id)


def check_chain(rows: list) -> list[Break]:
    """Return the breaks of one subscription's chain (its rows in id order)."""
    pairs = zip(rows, [None, *rows][: len(rows)], strict=True)
    return [found for row, before in pairs for found in check_row(row, before)]


def check_row(row, previous) -> list[Break]:
    """Return what is wrong with ``row`` as the row after ``previous`` (None: the first)."""

    def broken(reason: str) -> Break:
        return Break(row.subscription_id, row.id, reason)

    found = []
    expected = None if previous is None else previous.hash
    if row.prev_hash != expected:
        if previous is None:
            found.append(broken("the first row of its chain points to an earlier row"))
        else:
            found.append(broken(f"does not follow event {previous.id} (a row removed or added)"))
    if row_hash(row._mapping) != row.hash:
        found.append(broken("its content does not match its hash (the row was altered)"))
    if row.salt is not None:
        if evidence_digest(row.salt, row.ip, row.user_agent) != row.evidence_digest:
            found.append(broken("its IP or user agent was altered"))
    elif row.redacted_at is None:
        found.append(broken("its evidence was removed without a redaction"))
    return found


# One encoder for every row: json.dumps with options would build a new one per call.
_CANONICAL = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _sha256(values: list) -> str:
    return hashlib.sha256(_CANONICAL(values).encode()).hexdigest()


def instant(at: datetime | None) -> str | None:
    """Return ``at`` in ISO 8601 UTC with microseconds: one spelling for hashing and showing."""
    if at is None:
        return None
    if at.tzinfo is not None:
        at = at.astimezone(UTC).replace(tzinfo=None)
    return at.isoformat(timespec="microseconds") + "Z"
