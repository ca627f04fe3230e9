"""Import a list from a CSV in the export's own format; the CLI and the editors' area share it.

The file is read as a stream and written in batches: one query looks up a batch's addresses
and a few multi-row INSERTs write its rows, so the work per row stays small however long the
file. Like every service this flushes and never commits: the caller commits once, and a file
refused half-way leaves nothing behind.
"""

import csv
import ipaddress
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from . import tokens
from .db import utcnow
from .exports import COLUMNS, FORMULA_STARTS
from .models import (
    ConsentEvent,
    Newsletter,
    Source,
    Status,
    Subscriber,
    Subscription,
    TokenPurpose,
)
from .subscriptions import services

BATCH = 500
# An export has ten columns; a file with hundreds is something else (or not split at commas).
MAX_COLUMNS = 100
SHOWN_LENGTH = 80
TIMES = ("optin_at", "confirmed_at", "unsubscribed_at")
ADDRESSES = ("optin_ip", "confirm_ip")
USED = ("email", "name", "status", *TIMES, *ADDRESSES, "source")
EVIDENCE = ("optin_at", "optin_ip", "confirmed_at", "confirm_ip", "unsubscribed_at")
STATUSES = {str(status) for status in Status}
SOURCES = {str(source) for source in Source}
_SEPARATORS = {";": "semicolons", "\t": "tabs", "|": "vertical bars"}
# Clocks differ; a time further ahead than this is a mistake in the file.
FUTURE_SLACK = timedelta(days=1)


class ImportRefused(ValueError):
    """The file as a whole cannot be imported; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class RefusedRow:
    """A row that was not imported: its line in the file, its address as given, and why."""

    line: int
    email: str
    reason: str


@dataclass
class ImportReport:
    """What an import did with each row of the file.

    ``refused`` lists every row not taken, in file order, each with its reason; ``already``
    of them are addresses already on the list, left unchanged, and ``invalid`` the rest.
    """

    taken: int = 0
    already: int = 0
    refused: list[RefusedRow] = field(default_factory=list)
    mails_queued: int = 0
    ignored_columns: list[str] = field(default_factory=list)

    @property
    def invalid(self) -> int:
        """Return how many rows were refused for what they hold (bad values, duplicates)."""
        return len(self.refused) - self.already


@dataclass(slots=True)
class _Row:
    """One row's values, checked and converted; ``given`` is its address as the file has it."""

    line: int
    given: str
    email: str
    name: str | None
    status: Status
    source: Source
    given_source: str
    optin_at: datetime | None
    optin_ip: str | None
    confirmed_at: datetime | None
    confirm_ip: str | None
    unsubscribed_at: datetime | None


class _Unusable(ValueError):
    """One row's value cannot be imported; the message says which and why."""


def import_csv(
    session: Session,
    newsletter: Newsletter,
    lines: Iterable[str],
    *,
    send_confirmation: bool = False,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Import the rows of a CSV into ``newsletter``'s list and report what became of each.

    Rows keep the consent evidence they bring. With ``send_confirmation``, pending rows go
    through the signup service instead: pending again as of now, with a confirmation mail
    unless a throttle holds it back. ``progress`` is called with the number of lines read
    since its last call. Raises ``ImportRefused`` if the file as a whole is unusable.
    """
    report = ImportReport()
    reader = csv.reader(lines)
    now = utcnow()
    try:
        columns, width = _header(reader, report)
        seen: dict[str, int] = {}
        batch: list[_Row] = []
        reported, end = 0, reader.line_num
        for cells in reader:
            # A quoted cell may span lines: a row starts after the previous one ended.
            line, end = end + 1, reader.line_num
            if not any(cell.strip() for cell in cells):
                continue
            try:
                row = _parse(cells, columns, width, line, now)
            except (_Unusable, services.InvalidSignup) as exc:
                given = cells[columns["email"]] if columns["email"] < len(cells) else ""
                report.refused.append(RefusedRow(line, _shown(given.strip()), str(exc)))
                continue
            first = seen.setdefault(row.email, line)
            if first != line:
                reason = f"the address is on line {first} already; only its first row counts"
                report.refused.append(RefusedRow(line, row.given, reason))
                continue
            batch.append(row)
            if len(batch) == BATCH:
                _store(session, newsletter, batch, report, send_confirmation)
                batch = []
                if progress:
                    progress(end - reported)
                    reported = end
        _store(session, newsletter, batch, report, send_confirmation)
    except UnicodeDecodeError:
        raise ImportRefused(
            "The file is not UTF-8 text. Save it as “CSV UTF-8” and import it again."
        ) from None
    except csv.Error as exc:
        raise ImportRefused(
            f"Line {reader.line_num} cannot be read as CSV ({exc}); "
            "look for a quote that is never closed."
        ) from None
    if progress and end > reported:
        progress(end - reported)
    report.refused.sort(key=lambda refused: refused.line)
    return report


def _header(reader, report: ImportReport) -> tuple[dict[str, int], int]:
    """Read the header row; return where each used column is, and how many columns there are."""
    names = None
    for cells in reader:
        if any(cell.strip() for cell in cells):
            names = [cell.strip().lower() for cell in cells]
            break
    if names is None:
        raise ImportRefused(
            "The file is empty. It needs a header row (email, name, status, …) and then "
            "one row per subscriber."
        )
    names[0] = names[0].lstrip("\ufeff").strip()
    if len(names) > MAX_COLUMNS:
        raise ImportRefused(
            f"The header row has {len(names)} columns, more than {MAX_COLUMNS}: "
            "is this a CSV list of subscribers, with commas between the values?"
        )
    if "email" not in names:
        if len(names) == 1 and (separator := next((s for s in ";\t|" if s in names[0]), None)):
            raise ImportRefused(
                f"The values are separated by {_SEPARATORS[separator]}, not commas. Save the "
                "file as “CSV UTF-8 (comma delimited)” and import it again."
            )
        if any("@" in name for name in names):
            raise ImportRefused(
                "The first line holds an address, not column names. Add a header row "
                "such as “email,name” above the addresses."
            )
        found = ", ".join(_shown(name, 30) for name in names[:12] if name) or "none"
        raise ImportRefused(
            f"The header row has no “email” column (its columns: {found}). "
            "Name the column of addresses “email”."
        )
    columns = {}
    for index, name in enumerate(names):
        if name in USED:
            if name in columns:
                raise ImportRefused(f"The column “{name}” appears twice in the header row.")
            columns[name] = index
        elif name and name not in COLUMNS:
            report.ignored_columns.append(_shown(name, 30))
    return columns, len(names)


def _parse(cells: list[str], columns: dict[str, int], width: int, line: int, now: datetime) -> _Row:
    """Check one row's values and return them ready to store, or raise why they are not."""
    if len(cells) > width:
        raise _Unusable(
            f"{len(cells)} values where the header names {width} columns: "
            "is a value with a comma in it not quoted?"
        )

    def cell(name: str) -> str:
        index = columns.get(name)
        if index is None or index >= len(cells):
            return ""
        value = cells[index].strip()
        # Undo the export's defence against spreadsheet formulas (see exports.neutralise).
        if value.startswith("'") and value[1:].startswith(FORMULA_STARTS):
            value = value[1:]
        return value

    given = cell("email")
    if not given:
        raise _Unusable("the email cell is empty")
    email = services.normalise_address(given)
    name = services.clean_name(cell("name"))
    times = {column: _time(column, cell(column), now) for column in TIMES}
    addresses = {column: _ip(column, cell(column)) for column in ADDRESSES}
    raw_status = cell("status").lower()
    if raw_status:
        if raw_status not in STATUSES:
            raise _Unusable(
                f"status “{_shown(raw_status, 30)}” is not one of confirmed, pending, unsubscribed"
            )
        status = Status(raw_status)
    elif times["unsubscribed_at"]:
        status = Status.UNSUBSCRIBED
    elif times["confirmed_at"]:
        status = Status.CONFIRMED
    else:
        status = Status.PENDING
    given_source = cell("source").lower()
    source = Source(given_source) if given_source in SOURCES else Source.IMPORT
    return _Row(
        line=line,
        given=_shown(given),
        email=email,
        name=name,
        status=status,
        source=source,
        given_source=given_source,
        **times,
        **addresses,
    )


def _time(column: str, raw: str, now: datetime) -> datetime | None:
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw)
        # A time without an offset is taken as UTC, the export's own zone.
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise _Unusable(
            f"{column} “{_shown(raw, 40)}” is not an ISO 8601 time such as 2024-05-01T09:30:00Z"
        ) from None
    if moment > now + FUTURE_SLACK:
        raise _Unusable(f"{column} {raw} is in the future")
    return moment


def _ip(column: str, raw: str) -> str | None:
    if not raw:
        return None
    try:
        address = str(ipaddress.ip_address(raw))
    except ValueError:
        address = ""
    if not address or len(address) > 45:
        raise _Unusable(f"{column} “{_shown(raw, 50)}” is not an IPv4 or IPv6 address")
    return address


def _shown(text: str, limit: int = SHOWN_LENGTH) -> str:
    """Return ``text`` safe to print on a terminal or page: no control characters, not long."""
    if not text.isprintable() and any(unicodedata.category(ch) in ("Cc", "Cf") for ch in text):
        text = "".join(
            "\N{REPLACEMENT CHARACTER}" if unicodedata.category(ch) in ("Cc", "Cf") else ch
            for ch in text
        )
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _store(
    session: Session,
    newsletter: Newsletter,
    batch: list[_Row],
    report: ImportReport,
    send_confirmation: bool,
) -> None:
    """Write one batch: look its addresses up at once, then insert what is new in bulk."""
    if not batch:
        return
    subscribers, listed = _lookup(session, newsletter, [row.email for row in batch])
    new, to_confirm = [], []
    for row in batch:
        if row.email in listed:
            _already(report, row, listed[row.email])
        elif send_confirmation and row.status == Status.PENDING:
            to_confirm.append(row)
        else:
            new.append(row)
    try:
        with session.begin_nested():
            _insert(session, newsletter, new, subscribers)
        report.taken += len(new)
    except IntegrityError:
        # A signup added one of these addresses since the lookup; settle them one at a time.
        for row in new:
            _add_one(session, newsletter, row, report)
    for row in to_confirm:
        _sign_up(session, newsletter, row, report)


def _lookup(
    session: Session, newsletter: Newsletter, emails: list[str]
) -> tuple[dict[str, Subscriber], dict[str, Status]]:
    """Return the subscribers among ``emails``, and the status of those on the list.

    Two queries, each on a unique index: a join would let PostgreSQL, whose statistics do not
    yet know the rows this import added, hash the whole list for every batch.
    """
    subscribers = {
        subscriber.email: subscriber
        for subscriber in session.scalars(sa.select(Subscriber).where(Subscriber.email.in_(emails)))
    }
    if not subscribers:
        return subscribers, {}
    emails_by_id = {subscriber.id: email for email, subscriber in subscribers.items()}
    listed = session.execute(
        sa.select(Subscription.subscriber_id, Subscription.status).where(
            Subscription.newsletter_id == newsletter.id,
            Subscription.subscriber_id.in_(emails_by_id),
        )
    )
    return subscribers, {emails_by_id[subscriber_id]: status for subscriber_id, status in listed}


def _insert(
    session: Session, newsletter: Newsletter, rows: list[_Row], subscribers: dict[str, Subscriber]
) -> None:
    """Insert the subscriptions of ``rows`` (and their new subscribers) with the evidence given.

    Subscribers and tokens are objects, made as the signup makes them; the subscriptions and
    their consent events, the bulk of the work, go in as multi-row INSERTs.
    """
    if not rows:
        return
    subscribers = dict(subscribers)
    for row in rows:
        if row.email not in subscribers:
            subscribers[row.email] = Subscriber(email=row.email)
            session.add(subscribers[row.email])
    issued = [
        tokens.issue(session, TokenPurpose.UNSUBSCRIBE, subscribers[row.email]) for row in rows
    ]
    session.flush()
    ids = session.scalars(
        sa.insert(Subscription).returning(Subscription.id, sort_by_parameter_order=True),
        [
            {
                "newsletter_id": newsletter.id,
                "subscriber_id": subscribers[row.email].id,
                "status": row.status,
                "name": row.name,
                "source": row.source,
                "optin_at": row.optin_at,
                "optin_ip": row.optin_ip,
                "confirmed_at": row.confirmed_at,
                "confirm_ip": row.confirm_ip,
                "unsubscribed_at": row.unsubscribed_at,
                "unsubscribe_token_id": token.id,
            }
            for row, token in zip(rows, issued, strict=True)
        ],
    ).all()
    session.execute(
        sa.insert(ConsentEvent),
        [
            {
                "subscription_id": subscription_id,
                "status": row.status,
                "source": str(Source.IMPORT),
                "detail": _detail(row),
            }
            for row, subscription_id in zip(rows, ids, strict=True)
        ],
    )


def _add_one(session: Session, newsletter: Newsletter, row: _Row, report: ImportReport) -> None:
    """Add one row in its own savepoint; an address listed meanwhile is reported, not taken."""
    subscriber = services._get_or_create(session, Subscriber, {"email": row.email})
    try:
        with session.begin_nested():
            _insert(session, newsletter, [row], {row.email: subscriber})
    except IntegrityError:
        status = session.scalar(
            sa.select(Subscription.status).where(
                Subscription.newsletter_id == newsletter.id,
                Subscription.subscriber_id == subscriber.id,
            )
        )
        if status is None:
            raise
        _already(report, row, status)
    else:
        report.taken += 1


def _sign_up(session: Session, newsletter: Newsletter, row: _Row, report: ImportReport) -> None:
    """Sign ``row`` up as the form would, so that its confirmation mail obeys the throttles."""
    evidence = services.Evidence(ip=None, user_agent=None, source=Source.IMPORT)
    result = services.signup(session, [newsletter], row.email, row.name, evidence)
    _record(
        session,
        result.subscriptions[0],
        Status.PENDING,
        _detail(row) + "; a confirmation was requested",
    )
    report.taken += 1
    report.mails_queued += result.mail_queued


def _already(report: ImportReport, row: _Row, status: Status) -> None:
    report.already += 1
    report.refused.append(RefusedRow(row.line, row.given, f"already on this list ({status})"))


def _record(session: Session, subscription: Subscription, status: Status, detail: str) -> None:
    session.add(
        ConsentEvent(
            subscription=subscription, status=status, source=str(Source.IMPORT), detail=detail
        )
    )


def _detail(row: _Row) -> str:
    """Say what evidence of consent came with an imported row, for the audit trail."""
    given = [
        f"{column}={_iso(value) if isinstance(value, datetime) else value}"
        for column in EVIDENCE
        if (value := getattr(row, column)) is not None
    ]
    opted_in = any(getattr(row, column) for column in ("optin_at", "optin_ip", "confirmed_at"))
    detail = "imported from a CSV " + (
        "with " + " ".join(given) if given else "without evidence of consent"
    )
    if given and not opted_in:
        detail += " but without evidence of opt-in"
    if row.given_source and row.given_source != row.source:
        detail += f"; source given: {_shown(row.given_source, 20)}"
    return detail


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
