"""Import a list from a CSV in the export's own format; the CLI and the editors' area share it.

The file is read as a stream and each row is checked in Python, by the signup's own rules for
the address and the name. The rows are then written BATCH at a time, with the same few
set-based statements whatever the batch's size: the batch goes into a temporary staging table
(COPY on PostgreSQL, one executemany on SQLite), and INSERT … SELECT statements make its
subscribers, unsubscribe tokens, subscriptions and consent events from there. Memory stays
flat however long the file: the addresses already read, to refuse a second row of one, are
kept in a second temporary table, not in Python.

On PostgreSQL the subscription's unique key, not an earlier lookup, decides that an address
is already on the list (ON CONFLICT DO NOTHING), so a signup committed meanwhile can neither
fail the import nor double a row, and imports take turns (an advisory lock) rather than
deadlock on each other's addresses. On SQLite the import holds the write lock from its first
write to its commit, so nothing else can list an address meanwhile. Like every service this
flushes and never commits: the caller commits once, and a file refused half-way leaves
nothing behind.
"""

import csv
import functools
import ipaddress
import operator
import re
import secrets
import socket
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import Session

from . import address_checks, erasure, ledger, tokens
from .db import utcnow
from .exports import COLUMNS, FORMULA_STARTS
from .models import SOURCE_MAX_LENGTH, Newsletter, Source, Status, TokenPurpose
from .subscriptions import processing, services
from .text import has_control_characters

# Rows per batch: enough that the statements' own cost vanishes (it is under 1% at this size),
# few enough that a batch's rows (about 2 MB in Python) are little beside the process.
BATCH = 5_000
# An export has ten columns; a file with hundreds is something else (or not split at commas).
MAX_COLUMNS = 100
SHOWN_LENGTH = 80
TIMES = ("optin_at", "confirmed_at", "unsubscribed_at")
ADDRESSES = ("optin_ip", "confirm_ip")
USED = ("email", "name", "status", *TIMES, *ADDRESSES, "source")
STATUSES = {str(status) for status in Status}
SOURCES = {str(source) for source in Source}
IMPORT = str(Source.IMPORT)
UNSUBSCRIBE = str(TokenPurpose.UNSUBSCRIBE)
PENDING = str(Status.PENDING)
CONFIRMED = str(Status.CONFIRMED)
UNSUBSCRIBED = str(Status.UNSUBSCRIBED)
_SEPARATORS = {";": "semicolons", "\t": "tabs", "|": "vertical bars"}
# Clocks differ; a time further ahead than this is a mistake in the file.
FUTURE_SLACK = timedelta(days=1)
# An IPv4 address already in the form ipaddress gives back (no leading zeros, each part <= 255).
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"(?:{_OCTET}\.){{3}}{_OCTET}", re.ASCII)
# A time as the export writes it.
_EXPORTED_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", re.ASCII)
# Held by every import on PostgreSQL until its commit: two imports sharing addresses would
# otherwise each wait, in the middle of the file, for a row the other added (a deadlock).
IMPORT_LOCK = 0x6E6C_696D_706F_7274  # "nlimport"

# The staging table's columns, in the order of the rows that _Checker.row returns.
STAGED = (
    "line",
    "email",
    "name",
    "status",
    "source",
    "optin_at",
    "optin_ip",
    "confirmed_at",
    "confirm_ip",
    "unsubscribed_at",
    "detail",
    "salt",
    "digest",
    "address_flags",
)
LINE, EMAIL, NAME, STATUS, SOURCE = range(5)
OPTIN_IP, DETAIL = STAGED.index("optin_ip"), STAGED.index("detail")
FLAGS = STAGED.index("address_flags")


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


class _Unusable(ValueError):
    """One row's value cannot be imported; the message says which and why."""


@dataclass
class _Batch:
    """Rows checked and waiting to be written; ``given`` is each line's address as written.

    ``lines`` holds the line of each address's first row in the batch, ``repeats`` the rows
    (line, address) repeating one of them: reported once the batch is written, when it is
    known whether that first row itself repeats an earlier batch's.
    """

    rows: list[tuple] = field(default_factory=list)
    lines: dict[str, int] = field(default_factory=dict)
    given: dict[int, str] = field(default_factory=dict)
    repeats: list[tuple[int, str]] = field(default_factory=list)


def import_csv(
    session: Session,
    newsletter: Newsletter,
    lines: Iterable[str],
    *,
    send_confirmation: bool = False,
    progress: Callable[[int], None] | None = None,
    report: ImportReport | None = None,
) -> ImportReport:
    """Import the rows of a CSV into ``newsletter``'s list and report what became of each.

    Rows keep the consent evidence they bring. With ``send_confirmation``, pending rows go
    through the signup processor as well: pending again as of now, with a confirmation mail
    unless a throttle holds it back. ``progress`` is called with the number of lines read
    since its last call; it may read ``report``, the report being filled, if the caller gave
    one. Raises ``ImportRefused`` if the file as a whole is unusable.
    """
    report = ImportReport() if report is None else report
    reader = csv.reader(lines)
    now = utcnow()
    try:
        columns, width = _header(reader, report)
        checker = _Checker(columns, width, now, send_confirmation, newsletter)
        writer = _writer(session, newsletter, now)
        batch = _Batch()
        reported, end = 0, reader.line_num
        for cells in reader:
            # A quoted cell may span lines: a row starts after the previous one ended.
            line, end = end + 1, reader.line_num
            if not "".join(cells).strip():
                continue
            try:
                given, row = checker.row(cells, line)
            except (_Unusable, services.InvalidSignup) as exc:
                given = cells[columns["email"]] if columns["email"] < len(cells) else ""
                report.refused.append(RefusedRow(line, _shown(given.strip()), str(exc)))
                continue
            batch.given[line] = given
            if batch.lines.setdefault(row[EMAIL], line) != line:
                batch.repeats.append((line, row[EMAIL]))
                continue
            batch.rows.append(row)
            if len(batch.rows) == BATCH:
                _store(session, newsletter, writer, batch, report, send_confirmation)
                batch = _Batch()
                if progress:
                    progress(end - reported)
                    reported = end
        _store(session, newsletter, writer, batch, report, send_confirmation)
        writer.finish()
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


def check_header(lines: Iterable[str]) -> None:
    """Raise ``ImportRefused`` if the file's header row is one ``import_csv`` would refuse."""
    reader = csv.reader(lines)
    try:
        _header(reader, ImportReport())
    except csv.Error as exc:
        raise ImportRefused(
            f"Line {reader.line_num} cannot be read as CSV ({exc}); "
            "look for a quote that is never closed."
        ) from None


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


class _Checker:
    """Check rows of one file and turn each into a staging row: built once per file.

    Settings, the key and the columns' places are looked up here, not per row: at tens of
    thousands of rows a second, each row has a few microseconds.
    """

    def __init__(
        self,
        columns: dict[str, int],
        width: int,
        now: datetime,
        confirming: bool,
        newsletter: Newsletter,
    ):
        config = current_app.config
        self.newsletters = [newsletter]
        self.confirming = confirming
        self.width = width
        self.latest = now + FUTURE_SLACK
        # A column the file lacks is read from one empty cell added after the row's own.
        self.missing = any(name not in columns for name in USED)
        self.pick = operator.itemgetter(*(columns.get(name, width) for name in USED))
        self.name_max = config["NAME_MAX_LENGTH"]
        self.key = config["SECRET_KEY"].encode()

    def row(self, cells: list[str], line: int) -> tuple[str, tuple]:
        """Return the address as given and the staging row of ``cells``, or raise why not."""
        width = len(cells)
        if width != self.width:
            if width > self.width:
                raise _Unusable(
                    f"{width} values where the header names {self.width} columns: "
                    "is a value with a comma in it not quoted?"
                )
            cells.extend([""] * (self.width - width))
        if self.missing:
            cells.append("")
        values = [value.strip() for value in self.pick(cells)]
        if "'" in "".join(values):
            values = [_unneutralised(value) for value in values]
        given, name, status, optin_at, confirmed_at, unsubscribed_at = values[:6]
        optin_ip, confirm_ip, given_source = values[6:]
        if not given:
            raise _Unusable("the email cell is empty")
        # The signup's check: a typo is kept as typed (nobody to ask) and flagged, as are
        # disposable and role addresses unless the newsletter refuses them; no DNS per row.
        checked = services.check_address(given, self.newsletters, accept_typo=True, dns=False)
        email = checked.address
        name = self._name(name)
        latest = self.latest
        optin_at = _time("optin_at", optin_at, latest)
        confirmed_at = _time("confirmed_at", confirmed_at, latest)
        unsubscribed_at = _time("unsubscribed_at", unsubscribed_at, latest)
        optin_ip = _ip("optin_ip", optin_ip)
        confirm_ip = _ip("confirm_ip", confirm_ip)
        status = status.lower()
        if status:
            if status not in STATUSES:
                raise _Unusable(
                    f"status “{_shown(status, 30)}” is not one of confirmed, pending, unsubscribed"
                )
        elif unsubscribed_at:
            status = UNSUBSCRIBED
        elif confirmed_at:
            status = CONFIRMED
        else:
            status = PENDING
        source = _source(given_source)
        detail = _detail(
            optin_at, optin_ip, confirmed_at, confirm_ip, unsubscribed_at, given_source, source
        )
        if self.confirming and status == PENDING:
            detail += "; a confirmation was requested"  # see _sign_up
        # An unsubscribe token exactly as tokens.issue makes it; only its digest is stored.
        salt = secrets.token_hex(16)
        digest = tokens.digest_of(tokens.mac(self.key, UNSUBSCRIBE, salt))
        return given, (
            line,
            email,
            name,
            status,
            source,
            optin_at and optin_at[0],
            optin_ip,
            confirmed_at and confirmed_at[0],
            confirm_ip,
            unsubscribed_at and unsubscribed_at[0],
            detail,
            salt,
            digest,
            address_checks.stored(checked.flags),
        )

    def _name(self, raw: str) -> str | None:
        """Return the name by the signup's rule (``services.clean_name``)."""
        # A printable name holds no control character: clean_name would keep it as it is.
        if not raw or (len(raw) <= self.name_max and raw.isprintable()):
            return raw or None
        return services.clean_name(raw)


def _stored_time(dialect) -> Callable[[datetime], object]:
    """Return how a UTC time goes into a statement's parameter: as ``UTCDateTime`` stores it."""
    if dialect.name == "sqlite":
        return lambda moment: _stored(moment.replace(tzinfo=None))
    return lambda moment: moment.replace(tzinfo=None)


def _stored(naive: datetime) -> str:
    # SQLAlchemy's SQLite form (2024-05-01 09:30:00.000000), which sorts as text; PostgreSQL
    # reads it too. tests/test_imports.py checks it against the type's own bind processor.
    return naive.isoformat(" ", "microseconds")


def _unneutralised(value: str) -> str:
    """Undo the export's defence against spreadsheet formulas (see exports.neutralise).

    The export adds an apostrophe to a cell that starts with apostrophes and then a formula's
    character; one comes off here, so every value reads back as it was exported.
    """
    if value[:1] == "'" and value.lstrip("'").startswith(FORMULA_STARTS):
        return value[1:]
    return value


# Why a row of an erased address is not taken (see erasure): only its owner may bring it back.
ERASED = "erased at its owner's request; only their own new signup, confirmed, can bring it back"


def _repeated(first: int) -> str:
    return f"the address is on line {first} already; only its first row counts"


@functools.lru_cache(maxsize=1024)
def _source(raw: str) -> str:
    """Return the subscription's source for a ``source`` cell: the file's own, or ``import``.

    The app's own sources (form, embed, api, import) are matched in any case; any other
    label is kept as written, so that exporting the list again gives it back.
    """
    if not raw:
        return IMPORT
    if raw.lower() in SOURCES:
        return raw.lower()
    if len(raw) > SOURCE_MAX_LENGTH:
        raise _Unusable(f"source “{_shown(raw, 30)}” is longer than {SOURCE_MAX_LENGTH} characters")
    if has_control_characters(raw):
        raise _Unusable(f"source “{_shown(raw, 30)}” contains line breaks or control characters")
    return raw


def _time(column: str, raw: str, latest: datetime) -> tuple[str, str] | None:
    """Return a time cell's UTC time as stored (see ``_stored``) and as the audit trail says it."""
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
    if moment > latest:
        raise _Unusable(f"{column} {raw} is in the future")
    if _EXPORTED_TIME.fullmatch(raw):
        # The export's own form, UTC to the second: both forms are the text rearranged.
        return f"{raw[:10]} {raw[11:19]}.000000", raw
    return _stored(moment.replace(tzinfo=None)), _iso(moment)


def _ip(column: str, raw: str) -> str | None:
    if not raw:
        return None
    # An address already in the form ipaddress gives back is returned as it is; the C
    # functions tell so in a fraction of its time (RFC 5952's form; dotted IPv6 excepted).
    if _IPV4.fullmatch(raw):
        return raw
    if ":" in raw and "." not in raw:
        try:
            if socket.inet_ntop(socket.AF_INET6, socket.inet_pton(socket.AF_INET6, raw)) == raw:
                return raw
        except (OSError, ValueError):  # not an address, or not text the C functions take
            pass
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


def _detail(
    optin_at: tuple | None,
    optin_ip: str | None,
    confirmed_at: tuple | None,
    confirm_ip: str | None,
    unsubscribed_at: tuple | None,
    given_source: str,
    source: str,
) -> str:
    """Say what evidence of consent came with an imported row, for the audit trail."""
    given = " ".join(
        f"{column}={value}"
        for column, value in (
            ("optin_at", optin_at and optin_at[1]),
            # IPs are named, not written out: the ledger keeps the opt-in IP in its own
            # field, which erasure and the retention settings can blank; a detail stays.
            ("optin_ip", optin_ip and "given"),
            ("confirmed_at", confirmed_at and confirmed_at[1]),
            ("confirm_ip", confirm_ip and "given"),
            ("unsubscribed_at", unsubscribed_at and unsubscribed_at[1]),
        )
        if value
    )
    if not given:
        detail = "imported from a CSV without evidence of consent"
    elif optin_at or optin_ip or confirmed_at:
        detail = "imported from a CSV with " + given
    else:
        detail = "imported from a CSV with " + given + " but without evidence of opt-in"
    if given_source:
        detail += f"; source given: {source}"
    return detail


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _store(
    session: Session,
    newsletter: Newsletter,
    writer: "_Writer",
    batch: _Batch,
    report: ImportReport,
    send_confirmation: bool,
) -> None:
    """Write one batch and report its rows not taken; with confirmations, sign pending ones up."""
    if not batch.rows:
        return
    erased = erasure.erased_among(session, batch.lines)
    if erased:
        _refuse_erased(batch, erased, report)
        if not batch.rows:
            return
    repeated, in_the_way, added = writer.write(batch.rows)
    _record_imported(session, newsletter, batch, added)
    for line, first in repeated:
        report.refused.append(RefusedRow(line, _shown(batch.given[line]), _repeated(first)))
    earlier = dict(repeated)
    for line, email in batch.repeats:
        first = batch.lines[email]
        first = earlier.get(first, first)
        report.refused.append(RefusedRow(line, _shown(batch.given[line]), _repeated(first)))
    for line, status in in_the_way.items():
        shown = _shown(batch.given[line])
        if status is None:
            reason = "another program removed this address during the import; import it again"
            report.refused.append(RefusedRow(line, shown, reason))
        else:
            report.already += 1
            report.refused.append(RefusedRow(line, shown, f"already on this list ({status})"))
    report.taken += len(batch.rows) - len(repeated) - len(in_the_way)
    if send_confirmation:
        skipped = {line for line, _ in repeated} | in_the_way.keys()
        pending = [r for r in batch.rows if r[STATUS] == PENDING and r[LINE] not in skipped]
        report.mails_queued += _sign_up(session, newsletter, pending)


def _refuse_erased(batch: _Batch, erased: set[str], report: ImportReport) -> None:
    """Take the rows of erased addresses, and the rows repeating them, out of ``batch``."""
    for row in batch.rows:
        if row[EMAIL] in erased:
            report.refused.append(RefusedRow(row[LINE], _shown(batch.given[row[LINE]]), ERASED))
    for line, email in batch.repeats:
        if email in erased:
            report.refused.append(RefusedRow(line, _shown(batch.given[line]), ERASED))
    batch.rows = [row for row in batch.rows if row[EMAIL] not in erased]
    batch.repeats = [(line, email) for line, email in batch.repeats if email not in erased]


def _record_imported(
    session: Session, newsletter: Newsletter, batch: "_Batch", added: list[tuple[int, int, int]]
) -> None:
    """Append the ledger row of each subscription this batch added: that it was imported."""
    rows = {row[LINE]: row for row in batch.rows}
    ledger.record(
        session,
        (
            ledger.Entry(
                subscription_id=subscription_id,
                subscriber_id=subscriber_id,
                newsletter_id=newsletter.id,
                action=ledger.Action.IMPORTED,
                status=Status(rows[line][STATUS]),
                evidence=ledger.Evidence(ip=rows[line][OPTIN_IP], user_agent=None, source=IMPORT),
                detail=rows[line][DETAIL],
            )
            for line, subscription_id, subscriber_id in added
        ),
        new=True,
    )


def _sign_up(session: Session, newsletter: Newsletter, rows: list[tuple]) -> int:
    """Sign pending rows just imported up as a signup would; return the mails queued.

    The signup processor makes them pending as of now, with a confirmation mail unless a
    throttle, the address's daily budget or a suppression holds it back. Its consent event
    says it came by import; the subscription then gets back the source label of its row.
    """
    if not rows:
        return 0
    now = utcnow()
    requests = [
        processing.Request(
            email=row[EMAIL],
            name=row[NAME],
            newsletter_ids=[newsletter.id],
            ip=None,
            user_agent=None,
            source=IMPORT,
            form_text=None,
            created_at=now,
            address_flags=row[FLAGS],
        )
        for row in rows
    ]
    mails = processing.process(session, requests)
    labelled = [
        {"newsletter": newsletter.id, "email": row[EMAIL], "source": row[SOURCE]}
        for row in rows
        if row[SOURCE] != IMPORT
    ]
    if labelled:
        session.execute(_RELABEL, labelled)
    return mails


_RELABEL = sa.text(
    "UPDATE subscription SET source = :source WHERE newsletter_id = :newsletter"
    " AND subscriber_id = (SELECT id FROM subscriber WHERE email = :email)"
)


def _writer(session: Session, newsletter: Newsletter, now: datetime) -> "_Writer":
    session.flush()
    kind = _PostgreSQLWriter if session.get_bind().dialect.name == "postgresql" else _SQLiteWriter
    return kind(session, newsletter, now)


class _Writer:
    """Write one import's batches into a newsletter's list through a staging table."""

    def __init__(self, session: Session, newsletter: Newsletter, now: datetime):
        self.connection = session.connection()
        self.values = {
            "newsletter": newsletter.id,
            "now": _stored_time(self.connection.dialect)(now),
            "key_id": tokens.key_id(current_app.config["SECRET_KEY"]),
        }

    def write(
        self, rows: list[tuple]
    ) -> tuple[list[tuple[int, int]], dict[int, str | None], list[tuple[int, int, int]]]:
        """Write ``rows``; return those repeating an earlier batch's address, those not taken,
        and those added.

        The first is a list of (line, line of the address's first row); the second maps a
        line to the status of the subscription already there (None if it vanished meanwhile);
        the third lists (line, subscription id, subscriber id) of the subscriptions added.
        """
        raise NotImplementedError

    def finish(self) -> None:
        """Drop what the import kept on the connection."""


class _PostgreSQLWriter(_Writer):
    """COPY into a staging table, then one statement for subscriptions, tokens and events."""

    def __init__(self, session: Session, newsletter: Newsletter, now: datetime):
        super().__init__(session, newsletter, now)
        execute = self.connection.exec_driver_sql
        sequence = execute(
            "SELECT pg_get_serial_sequence('token', 'id'), pg_advisory_xact_lock(%(lock)s)",
            {"lock": IMPORT_LOCK},
        ).scalar_one()
        self.main = sa.text(_PG_MAIN.format(sequence=_quoted(sequence)))
        execute(_PG_STAGING)
        execute(_PG_SEEN)
        execute("TRUNCATE import_row, import_seen")

    def write(self, rows):
        connection = self.connection
        connection.exec_driver_sql("TRUNCATE import_row")
        cursor = connection.connection.driver_connection.cursor()
        with cursor, cursor.copy(_PG_COPY) as copy:
            for row in rows:
                copy.write_row(row)
        repeated = connection.execute(_PG_REPEATED).all()
        if repeated:
            lines = [line for line, _ in repeated]
            connection.execute(_DROP_LINES, {"lines": lines})
        connection.execute(_PG_SUBSCRIBERS, self.values)
        in_the_way, added = {}, []
        for line, status, subscription_id, subscriber_id in connection.execute(
            self.main, self.values
        ):
            if subscription_id is None:
                in_the_way[line] = status
            else:
                added.append((line, subscription_id, subscriber_id))
        # A signup that committed while this statement waited for it is not in the statement's
        # snapshot: read those subscriptions again, now that they are committed.
        unseen = [line for line, status in in_the_way.items() if status is None]
        if unseen:
            found = connection.execute(_PG_STATUS, self.values | {"lines": unseen})
            in_the_way.update(found.all())
        return repeated, in_the_way, added


def _quoted(sequence: str) -> str:
    # The name comes from the database; quote it as a literal anyway.
    return "'" + sequence.replace("'", "''") + "'"


_PG_STAGING = """
CREATE TEMPORARY TABLE IF NOT EXISTS import_row (
    line integer, email text, name text, status text, source text, optin_at timestamp,
    optin_ip text, confirmed_at timestamp, confirm_ip text, unsubscribed_at timestamp,
    detail text, salt text, digest text, address_flags text
) ON COMMIT DROP"""
_PG_SEEN = """
CREATE TEMPORARY TABLE IF NOT EXISTS import_seen (email text PRIMARY KEY, line integer)
ON COMMIT DROP"""
_PG_COPY = f"COPY import_row ({', '.join(STAGED)}) FROM STDIN"
# The rows whose address an earlier batch had; the batch's own addresses are recorded in the
# same statement, which its SELECT does not see.
_PG_REPEATED = sa.text("""
WITH recorded AS (
    INSERT INTO import_seen (email, line) SELECT email, line FROM import_row
    ON CONFLICT (email) DO NOTHING
)
SELECT line, first FROM (
    SELECT r.line, (SELECT s.line FROM import_seen AS s WHERE s.email = r.email) AS first
    FROM import_row AS r
) AS seen WHERE first IS NOT NULL""")
_DROP_LINES = sa.text("DELETE FROM import_row WHERE line IN :lines").bindparams(
    sa.bindparam("lines", expanding=True)
)
# In address order, as the signup processor adds them: two writers meet in the same order.
_PG_SUBSCRIBERS = sa.text("""
INSERT INTO subscriber (email, created_at, mails_in_window)
SELECT email, :now, 0 FROM import_row ORDER BY email
ON CONFLICT (email) DO NOTHING""")
# Subscriptions in file order (an export lists them so), each with its unsubscribe token (id
# drawn from the token sequence), also in file order; then every row: those added with their
# subscription's id, the others with the status of the subscription in their way (NULL when
# it committed while this statement ran). The ledger's rows follow from Python, which
# chains them (ledger.record). The foreign keys are checked at the end of the statement, when
# every row is in. Lookups are scalar subqueries, which PostgreSQL runs as one index probe a row: in
# the middle of an import the statistics do not know the rows it added, and a join would be
# planned as a scan of the whole table for every batch.
_PG_MAIN = """
WITH batch AS MATERIALIZED (
    SELECT r.*, (SELECT id FROM subscriber WHERE email = r.email) AS subscriber_id
    FROM import_row AS r
), added AS (
    INSERT INTO subscription (newsletter_id, subscriber_id, status, name, source, optin_at,
        optin_ip, confirmed_at, confirm_ip, unsubscribed_at, unsubscribe_token_id, created_at,
        address_flags)
    SELECT :newsletter, subscriber_id, status, name, source, optin_at, optin_ip, confirmed_at,
        confirm_ip, unsubscribed_at, nextval({sequence}::regclass), :now, address_flags
    FROM batch WHERE subscriber_id IS NOT NULL ORDER BY line
    ON CONFLICT (newsletter_id, subscriber_id) DO NOTHING
    RETURNING id, subscriber_id, unsubscribe_token_id
), tokens AS (
    INSERT INTO token (id, purpose, subscriber_id, salt, key_id, digest, created_at)
    SELECT a.unsubscribe_token_id, 'unsubscribe', a.subscriber_id, b.salt, :key_id, b.digest, :now
    FROM added AS a JOIN batch AS b USING (subscriber_id) ORDER BY b.line
)
SELECT b.line, CASE WHEN a.id IS NULL THEN (
    SELECT status FROM subscription
    WHERE newsletter_id = :newsletter AND subscriber_id = b.subscriber_id
) END, a.id, b.subscriber_id
FROM batch AS b LEFT JOIN added AS a USING (subscriber_id)
ORDER BY b.line"""
_PG_STATUS = sa.text("""
SELECT line, status FROM (
    SELECT r.line, (
        SELECT status FROM subscription WHERE newsletter_id = :newsletter AND subscriber_id = (
            SELECT id FROM subscriber WHERE email = r.email
        )
    ) AS status
    FROM import_row AS r WHERE r.line IN :lines
) AS found WHERE status IS NOT NULL""").bindparams(sa.bindparam("lines", expanding=True))


class _SQLiteWriter(_Writer):
    """executemany into a staging table, then one INSERT … SELECT per table.

    The lookup of addresses already listed and the inserts are separate statements: safe,
    since from the batch's first write (its subscribers) no other connection can write
    until this import commits. Were that broken, the subscription's unique key would fail
    the import, not double a row.
    """

    def __init__(self, session: Session, newsletter: Newsletter, now: datetime):
        super().__init__(session, newsletter, now)
        execute = self.connection.exec_driver_sql
        execute(_SQLITE_STAGING)
        execute(_SQLITE_SEEN)
        execute("DELETE FROM temp.import_row")
        execute("DELETE FROM temp.import_seen")

    def write(self, rows):
        connection, values = self.connection, self.values
        connection.exec_driver_sql("DELETE FROM temp.import_row")
        connection.exec_driver_sql(_SQLITE_STAGE, rows)
        repeated = connection.execute(_SQLITE_REPEATED).all()
        if repeated:
            connection.execute(_DROP_LINES, {"lines": [line for line, _ in repeated]})
        connection.execute(_SQLITE_RECORD)
        connection.execute(_SQLITE_SUBSCRIBERS, values)
        connection.execute(_SQLITE_SUBSCRIBER_IDS)
        in_the_way = dict(connection.execute(_SQLITE_LISTED, values).all())
        if in_the_way:
            connection.execute(_DROP_LINES, {"lines": list(in_the_way)})
        connection.execute(_SQLITE_TOKENS, values)
        connection.execute(_SQLITE_SUBSCRIPTIONS, values)
        added = connection.execute(_SQLITE_ADDED, values).all()
        return repeated, in_the_way, added

    def finish(self) -> None:
        # Temporary tables outlive the transaction on SQLite, and the pool keeps connections.
        self.connection.exec_driver_sql("DROP TABLE temp.import_row")
        self.connection.exec_driver_sql("DROP TABLE temp.import_seen")


_SQLITE_STAGING = f"""
CREATE TEMPORARY TABLE IF NOT EXISTS import_row ({", ".join(STAGED)}, subscriber_id INTEGER)"""
_SQLITE_SEEN = """
CREATE TEMPORARY TABLE IF NOT EXISTS import_seen (email TEXT PRIMARY KEY, line INTEGER)
WITHOUT ROWID"""
_PLACES = ", ".join("?" * len(STAGED))
# Built from this module's own column names.
_SQLITE_STAGE = f"INSERT INTO temp.import_row ({', '.join(STAGED)}) VALUES ({_PLACES})"  # noqa: S608
# CROSS JOIN makes SQLite walk the batch and look each row up by an index, never the reverse.
_SQLITE_REPEATED = sa.text("""
SELECT r.line, s.line FROM temp.import_row AS r CROSS JOIN temp.import_seen AS s
WHERE s.email = r.email""")
_SQLITE_RECORD = sa.text(
    "INSERT INTO temp.import_seen (email, line) SELECT email, line FROM temp.import_row"
)
_SQLITE_SUBSCRIBERS = sa.text("""
INSERT INTO subscriber (email, created_at, mails_in_window)
SELECT email, :now, 0 FROM temp.import_row WHERE true ORDER BY email
ON CONFLICT (email) DO NOTHING""")
_SQLITE_SUBSCRIBER_IDS = sa.text("""
UPDATE temp.import_row SET subscriber_id = (
    SELECT id FROM subscriber WHERE subscriber.email = import_row.email
)""")
_SQLITE_LISTED = sa.text("""
SELECT r.line, s.status FROM temp.import_row AS r CROSS JOIN subscription AS s
WHERE s.newsletter_id = :newsletter AND s.subscriber_id = r.subscriber_id""")
_SQLITE_TOKENS = sa.text("""
INSERT INTO token (purpose, subscriber_id, salt, key_id, digest, created_at)
SELECT 'unsubscribe', subscriber_id, salt, :key_id, digest, :now FROM temp.import_row
ORDER BY line""")
_SQLITE_SUBSCRIPTIONS = sa.text("""
INSERT INTO subscription (newsletter_id, subscriber_id, status, name, source, optin_at,
    optin_ip, confirmed_at, confirm_ip, unsubscribed_at, unsubscribe_token_id, created_at,
    address_flags)
SELECT :newsletter, r.subscriber_id, r.status, r.name, r.source, r.optin_at, r.optin_ip,
    r.confirmed_at, r.confirm_ip, r.unsubscribed_at, t.id, :now, r.address_flags
FROM temp.import_row AS r CROSS JOIN token AS t WHERE t.digest = r.digest
ORDER BY r.line""")
_SQLITE_ADDED = sa.text("""
SELECT r.line, s.id, s.subscriber_id
FROM temp.import_row AS r CROSS JOIN subscription AS s
WHERE s.newsletter_id = :newsletter AND s.subscriber_id = r.subscriber_id
ORDER BY r.line""")
