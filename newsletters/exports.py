"""Stream a newsletter's subscriptions as CSV or JSON Lines, in batches: memory stays flat.

Shared by the command line, the editors' area and the API, so the columns cannot drift.
"""

import csv
import io
import json
from collections.abc import Iterator
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from . import tokens
from .links import external_url
from .models import Editor, ExportRecord, Newsletter, Status, Subscriber, Subscription, Token

COLUMNS = (
    "email",
    "name",
    "status",
    "optin_at",
    "optin_ip",
    "confirmed_at",
    "confirm_ip",
    "unsubscribed_at",
    "source",
    "unsubscribe_url",
)
STATUSES = ("confirmed", "pending", "unsubscribed", "all")
FORMATS = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson; charset=utf-8"}
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
BATCH = 1000


def records(session: Session, newsletter: Newsletter, status: str = "confirmed") -> Iterator[dict]:
    """Yield one dict per subscription of ``newsletter`` with ``status`` (or ``all``).

    Each batch is read in a transaction of its own, committed before its rows are yielded:
    a slow reader of a long list then holds no lock (on SQLite a transaction holds the write
    lock, and signups would wait for the whole export). Commit anything pending first.
    """
    if status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}")
    query = (
        sa.select(
            Subscription.id,
            Subscriber.email,
            Subscription.name,
            Subscription.status,
            Subscription.optin_at,
            Subscription.optin_ip,
            Subscription.confirmed_at,
            Subscription.confirm_ip,
            Subscription.unsubscribed_at,
            Subscription.source,
            Token.purpose,
            Token.salt,
            Token.key_id,
            Token.digest,
        )
        .join(Subscriber, Subscription.subscriber_id == Subscriber.id)
        .outerjoin(Token, Subscription.unsubscribe_token_id == Token.id)
        .where(Subscription.newsletter_id == newsletter.id)
        .order_by(Subscription.id)
        .limit(BATCH)
    )
    if status != "all":
        query = query.where(Subscription.status == Status(status))
    # The URL of every row differs only in its secret: build the prefix once.
    unsubscribe_prefix = external_url("subscriptions.unsubscribe_page", token="-")[:-1]  # noqa: S106
    derive = tokens.deriver()
    last_id = 0
    while True:
        batch = session.execute(query.where(Subscription.id > last_id)).all()
        session.commit()
        for row in batch:
            yield {
                "email": row.email,
                "name": row.name or "",
                "status": str(row.status),
                "optin_at": _iso(row.optin_at),
                "optin_ip": row.optin_ip or "",
                "confirmed_at": _iso(row.confirmed_at),
                "confirm_ip": row.confirm_ip or "",
                "unsubscribed_at": _iso(row.unsubscribed_at),
                "source": str(row.source) if row.source else "",
                "unsubscribe_url": _link(
                    unsubscribe_prefix,
                    row.salt and derive(row.purpose, row.salt, row.key_id, row.digest),
                ),
            }
        if len(batch) < BATCH:
            return
        last_id = batch[-1].id


def csv_chunks(rows: Iterator[dict]) -> Iterator[str]:
    """Yield a CSV with SPEC's header, formula-safe, a few hundred rows per chunk."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for n, row in enumerate(rows, 1):
        writer.writerow([neutralise(row[column]) for column in COLUMNS])
        if n % 500 == 0:
            yield _drain(buffer)
    yield _drain(buffer)


def jsonl_chunks(rows: Iterator[dict]) -> Iterator[str]:
    """Yield JSON Lines, one object per subscription with the CSV's fields."""
    lines = []
    for row in rows:
        lines.append(json.dumps(row, ensure_ascii=False) + "\n")
        if len(lines) == 500:
            yield "".join(lines)
            lines.clear()
    yield "".join(lines)


WRITERS = {"csv": csv_chunks, "jsonl": jsonl_chunks}


def neutralise(value: str) -> str:
    """Defuse a cell that a spreadsheet would run as a formula, by a leading apostrophe."""
    if value and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text


def _link(prefix: str, secret: str | None) -> str:
    # Empty for a row without a token, or whose token's key is no longer honoured.
    return prefix + secret if secret else ""


def _iso(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else ""


def record(
    session: Session,
    newsletter: Newsletter,
    editor: Editor | None,
    via: str,
    status: str,
    fmt: str,
) -> ExportRecord:
    """Note that a list is being exported; ``counted()`` fills in the rows at the end."""
    entry = ExportRecord(
        newsletter=newsletter,
        editor_id=editor.id if editor is not None else None,
        via=via,
        status=status,
        format=fmt,
    )
    session.add(entry)
    session.flush()
    return entry


def counted(rows: Iterator[dict], entry: ExportRecord, session: Session) -> Iterator[dict]:
    """Pass ``rows`` through and, once all went out, record how many in ``entry``."""
    entry_id = entry.id  # a streamed response outlives the request's session: keep the id
    n = 0
    for n, row in enumerate(rows, 1):  # noqa: B007 - n is the count after the loop
        yield row
    session.execute(sa.update(ExportRecord).where(ExportRecord.id == entry_id).values(rows=n))
    session.commit()
