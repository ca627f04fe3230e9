"""Export a newsletter's list as CSV or JSON Lines, streamed at the database's pace.

``export()`` is the one use case behind ``newsletters export`` and the editors' download. It
reads the list in id order, in keyset batches that are each a short read of their own, and
yields chunks of UTF-8, so memory stays flat however long the list. The database does the
per-cell work: timestamps in SPEC's form, empty cells, the formula guard, and on PostgreSQL
the CSV quoting itself (COPY). Python adds what only it can: each row's unsubscribe link, an
HMAC with a secret key that the database never sees. bench/export.py measures it against the
databases' own CSV dumps; bench/RESULTS.md says what each part bought.
"""

import binascii
import csv
import hashlib
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator

import sqlalchemy as sa
from sqlalchemy.orm import Session

from . import tokens
from .links import external_url
from .models import Editor, ExportRecord, Newsletter, Subscriber, Subscription, Token

SPEC_COLUMNS = (
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
# After SPEC's ("more may follow"): the consent evidence of each row. The form text's version
# (the first 12 hex digits of its SHA-256, as the consent ledger names it), the origin of the
# page the form was embedded in, and how the subscription was confirmed.
CONSENT_COLUMNS = ("form_text_version", "source_origin", "confirmation_evidence")
# Then the reader: what the address checks found at signup (``subscribers.ADDRESS_FLAGS``,
# space-separated, empty if none or if it predates them) and the reader's language.
READER_COLUMNS = ("address_flags", "language")
# Then where the signup came from (attribution.py): the page the form was on, the campaign
# its utm_* parameters named, and what the signup proved (proof.py: proof, unverified).
ATTRIBUTION_COLUMNS = ("page", "utm_source", "utm_medium", "utm_campaign", "verification")
TAIL_COLUMNS = CONSENT_COLUMNS + READER_COLUMNS + ATTRIBUTION_COLUMNS
COLUMNS = SPEC_COLUMNS + TAIL_COLUMNS
# The sources of the app's own signups, each confirmed by the link of a mailed confirmation.
OWN_SOURCES = ("hosted", "plain", "iframe", "widget", "several", "api", "form", "embed")
VERSION_LENGTH = 12
STATUSES = ("confirmed", "pending", "unsubscribed", "all")
FORMATS = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson; charset=utf-8"}
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# Rows per read and per chunk: enough that a read's own cost vanishes, few enough that a
# batch's text (about 1 MB) is little beside the process's own memory.
BATCH = 5_000
# On PostgreSQL a COPY streams: its rows arrive while the previous ones are being written, so
# one statement may span several chunks and pay its start-up less often.
_CHUNKS_PER_COPY = 10

# Stored as naive UTC; the database writes them as SPEC's ISO 8601 UTC.
_ISO_FORMATS = {"sqlite": "%Y-%m-%dT%H:%M:%SZ", "postgresql": 'YYYY-MM-DD"T"HH24:MI:SS"Z"'}
# SQLite has no CSV quoting: its query joins a batch's cells and lines with these, and
# Python turns them into CSV (see _SQLiteLines).
_CELL, _ROW = "\x1f", "\x1e"
_CELL_BYTES, _ROW_BYTES = _CELL.encode(), _ROW.encode()
# What makes the csv module quote a cell (QUOTE_MINIMAL, SPEC's line ends).
_NEEDS_QUOTES = re.compile(rb'[,"\r\n]')
_CELLS = len(SPEC_COLUMNS) - 1  # the cells before the link, which is Python's
_TAIL = len(TAIL_COLUMNS)  # the cells after it
_URLSAFE = bytes.maketrans(b"+/", b"-_")
_PAD_INNER = bytes(x ^ 0x36 for x in range(256))
_PAD_OUTER = bytes(x ^ 0x5C for x in range(256))

Progress = Callable[[int], object]


def export(
    session: Session,
    newsletter: Newsletter,
    status: str = "confirmed",
    fmt: str = "csv",
    editor: Editor | None = None,
    via: str = "cli",
    progress: Progress | None = None,
) -> Iterator[bytes]:
    """Record an export of ``newsletter``'s list and return it, in chunks of UTF-8 to stream.

    The record is committed before a row is read (an interrupted download stays on the
    log), and its row count once the last chunk is out: a streamed export outlives the
    request or command that began it, so this use case commits for itself. ``progress``, if
    given, is called with the number of rows of each chunk. The chunks are bytes: the text
    is built as bytes from the database's, and a decode here would only be encoded again.
    """
    if status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}")
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")
    reader = _Reader(session, newsletter, status)
    entry_id = record(session, newsletter, editor, via, status, fmt).id
    session.commit()
    chunks = reader.csv() if fmt == "csv" else reader.jsonl()
    return counted(chunks, entry_id, session, progress)


def records(
    session: Session,
    newsletter: Newsletter,
    status: str = "confirmed",
    ids: Iterable[int] | None = None,
) -> Iterator[dict]:
    """Yield one dict of the export's columns per subscription of ``newsletter`` with ``status``.

    The values are the export's, as JSON Lines carries them (cells not neutralised). The
    session is committed first: on SQLite its open transaction would hold the write lock for
    as long as the rows are being read. ``ids``, if given, keeps only those subscriptions (a
    selection in the editors' list: a page's worth).
    """
    if status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}")
    reader = _Reader(session, newsletter, status, ids)
    session.commit()
    for batch in reader.fields():
        yield from batch


def record(
    session: Session,
    newsletter: Newsletter,
    editor: Editor | None,
    via: str,
    status: str,
    fmt: str,
) -> ExportRecord:
    """Note that a list is being exported; ``export()`` fills in the rows at the end."""
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


def neutralise(value: str) -> str:
    """Defuse a cell that a spreadsheet would run as a formula, by a leading apostrophe.

    A cell that starts with apostrophes and then a formula's character gets one more too, so
    that the import, which takes one such apostrophe off (``imports``), reads back the very
    value: a name that really is ``'=x`` survives a round trip.
    """
    if value and value.lstrip("'").startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_chunks(rows: Iterable[dict]) -> Iterator[str]:
    """Yield a CSV with SPEC's header, formula-safe, from dicts like those of ``records()``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for n, row in enumerate(rows, 1):
        writer.writerow([neutralise(row[column]) for column in COLUMNS])
        if n % 500 == 0:
            yield _drain(buffer)
    yield _drain(buffer)


def jsonl_chunks(rows: Iterable[dict]) -> Iterator[str]:
    """Yield JSON Lines, one object per subscription with the CSV's fields."""
    lines = []
    for row in rows:
        lines.append(json.dumps(row, ensure_ascii=False) + "\n")
        if len(lines) == 500:
            yield "".join(lines)
            lines.clear()
    yield "".join(lines)


# For callers that hold rows of ``records()``; the product's own path is ``export()``.
WRITERS = {"csv": csv_chunks, "jsonl": jsonl_chunks}


def counted(
    chunks: Iterator[tuple[bytes, int]], entry_id: int, session: Session, progress: Progress | None
) -> Iterator[bytes]:
    """Yield the text of ``chunks`` (text, rows); record the row count once the last is out."""
    total = 0
    for text, rows in chunks:
        total += rows
        if progress is not None and rows:
            progress(rows)
        yield text
    session.execute(sa.update(ExportRecord).where(ExportRecord.id == entry_id).values(rows=total))
    session.commit()


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text


class _Reader:
    """Read one newsletter's subscriptions of one status in id order, a batch per read.

    The reads go through a connection of their own, outside the ORM session. On SQLite the
    engine opens every transaction with BEGIN IMMEDIATE, which takes the write lock; this
    connection stays in autocommit, so each batch is a read of its own that holds no lock a
    signup would wait for, and none between batches however slowly the chunks are consumed.
    On PostgreSQL an MVCC snapshot holds no lock that a signup waits for, so one COPY of the
    whole list would be safe; it was no faster (its plan sorts the whole list, on disk past
    work_mem), and a slow download would hold it open for as long as it lasts (pinning the
    vacuum horizon, running into statement_timeout). A COPY there reads at most
    _CHUNKS_PER_COPY batches, in one short transaction.
    """

    def __init__(
        self,
        session: Session,
        newsletter: Newsletter,
        status: str,
        ids: Iterable[int] | None = None,
    ):
        self.engine = session.get_bind()
        self.dialect = self.engine.dialect.name
        self.newsletter_id = newsletter.id
        self.status = status
        self.ids = None if ids is None else sorted(ids)
        self.size = BATCH
        self.links = _Links()

    def csv(self) -> Iterator[tuple[bytes, int]]:
        """Yield the CSV's header, then each batch's lines, with its number of rows."""
        yield ",".join(COLUMNS).encode() + b"\r\n", 0
        yield from _PostgreSQLLines(self) if self.dialect == "postgresql" else _SQLiteLines(self)

    def jsonl(self) -> Iterator[tuple[bytes, int]]:
        """Yield each batch's JSON Lines, with its number of rows."""
        for batch in self.fields():
            lines = [json.dumps(row, ensure_ascii=False) + "\n" for row in batch]
            yield "".join(lines).encode(), len(batch)

    def fields(self) -> Iterator[list[dict]]:
        """Yield each batch as dicts of the export's columns, the cells as stored (unguarded)."""
        statement = self.statement(
            *self.cells(guarded=False), *self.tail(guarded=False), *_token_columns()
        )
        names, tail = SPEC_COLUMNS[:-1], _CELLS + _TAIL
        raw = self.engine.raw_connection()
        try:
            for rows in self.batches(lambda after: self.rows(raw, statement, after)):
                cell = self.links.cell
                links = [cell(_bytes(row[tail]), *row[tail + 1 : -1]) for row in rows]
                yield [
                    dict(
                        zip(names, row[:_CELLS], strict=True),
                        unsubscribe_url=url[1:-1].decode(),
                        **dict(zip(TAIL_COLUMNS, row[_CELLS:tail], strict=True)),
                    )
                    for row, url in zip(rows, links, strict=True)
                ]
        finally:
            raw.close()

    def cells(self, guarded: bool, empty: bool = True) -> list[sa.ColumnElement]:
        """Return the expressions of SPEC's columns but the link, as text.

        ``guarded`` applies the formula guard to the cells people typed; ``empty`` turns an
        unknown value into '' (left out, it stays NULL, which the guard leaves alone).
        """

        def text(value):
            return _coalesced(value) if empty else value

        def typed(value):
            return _guarded(text(value), self.dialect) if guarded else text(value)

        stamp = self.stamp
        return [
            typed(Subscriber.email),
            typed(Subscription.name),
            sa.type_coerce(Subscription.status, sa.String),
            text(stamp(Subscription.optin_at)),
            text(Subscription.optin_ip),
            text(stamp(Subscription.confirmed_at)),
            text(Subscription.confirm_ip),
            text(stamp(Subscription.unsubscribed_at)),
            typed(Subscription.source),
        ]

    def tail(self, guarded: bool, empty: bool = True) -> list[sa.ColumnElement]:
        """Return the expressions of the columns after the link, as text (see ``cells()``)."""
        return self.consent(guarded, empty) + self.reader(empty) + self.attribution(guarded, empty)

    def attribution(self, guarded: bool, empty: bool = True) -> list[sa.ColumnElement]:
        """Return the expressions of the attribution columns, as text (see ``cells()``).

        The page and the campaign came from the reader's browser: guarded like a name.
        """

        def text(value):
            return _coalesced(value) if empty else value

        def typed(value):
            return _guarded(text(value), self.dialect) if guarded else text(value)

        return [
            typed(Subscription.page),
            typed(Subscription.utm_source),
            typed(Subscription.utm_medium),
            typed(Subscription.utm_campaign),
            text(Subscription.verification),
        ]

    def reader(self, empty: bool = True) -> list[sa.ColumnElement]:
        """Return the expressions of the reader's columns, as text (see ``cells()``).

        No formula guard: the product writes these, from words of its own (a flag, a
        language code), none of which starts like a formula.
        """

        def text(value):
            return _coalesced(value) if empty else value

        return [text(Subscription.address_flags), text(Subscription.language)]

    def consent(self, guarded: bool, empty: bool = True) -> list[sa.ColumnElement]:
        """Return the expressions of the consent columns, as text (see ``cells()``).

        The confirmation's evidence is told from the subscription's own columns, with no
        look into the ledger (a probe a row): a confirmation time on a signup of the app's
        own, or one that was mailed a confirmation link, is the link's; any other came with
        an imported file.
        """

        def text(value):
            return _coalesced(value) if empty else value

        confirmed_at = self.stamp(Subscription.confirmed_at)
        from_ip = _coalesced(sa.literal(" from ", sa.String).concat(_cell(Subscription.confirm_ip)))
        source = sa.type_coerce(Subscription.source, sa.String)
        evidence = sa.case(
            (Subscription.confirmed_at.is_(None), sa.null()),
            (
                sa.or_(
                    source.in_([sa.literal(own) for own in OWN_SOURCES]),
                    Subscription.confirmation_mailed_at.is_not(None),
                ),
                sa.literal("double opt-in link followed at ", sa.String)
                .concat(confirmed_at)
                .concat(from_ip),
            ),
            else_=sa.literal("imported as confirmed at ", sa.String)
            .concat(confirmed_at)
            .concat(from_ip),
        )
        origin = text(Subscription.origin)
        return [
            text(sa.func.substr(Subscription.text_digest, 1, VERSION_LENGTH, type_=sa.String)),
            _guarded(origin, self.dialect) if guarded else origin,
            text(evidence),
        ]

    def query(self, *columns: sa.ColumnElement) -> sa.Select:
        """Return the keyset query of one batch: ``columns``, then the subscription's id."""
        query = (
            sa.select(*columns, Subscription.id)
            .join(Subscriber, Subscription.subscriber_id == Subscriber.id)
            .outerjoin(Token, Subscription.unsubscribe_token_id == Token.id)
            .where(
                Subscription.newsletter_id == self.newsletter_id,
                Subscription.id > sa.bindparam("after", 0),
            )
            .order_by(Subscription.id)
            .limit(sa.bindparam("size", self.size))
        )
        if self.status != "all":
            # As a plain string: these parameters bypass the Enum type's own processing.
            query = query.where(sa.type_coerce(Subscription.status, sa.String) == self.status)
        if self.ids is not None:
            query = query.where(Subscription.id.in_([sa.literal(i) for i in self.ids]))
        return query

    def statement(self, *columns: sa.ColumnElement) -> sa.Compiled:
        """Compile, once, the keyset query of ``columns`` (see ``query()``)."""
        return self.compiled(self.query(*columns))

    def compiled(self, query: sa.Select) -> sa.Compiled:
        return query.compile(dialect=self.engine.dialect)

    def batches(self, fetch: Callable) -> Iterator:
        """Yield batches while they come full; ``fetch(after)`` returns (batch, rows, last id)."""
        after = 0
        while True:
            batch, rows, after = fetch(after)
            if rows:
                yield batch
            if rows < self.size:
                return

    def parameters(self, statement: sa.Compiled, after: int, size: int | None = None):
        """Return the parameters of the batch after id ``after``, as the driver takes them."""
        values = statement.construct_params({"after": after, "size": size or self.size})
        if statement.positional:
            return [values[name] for name in statement.positiontup]
        return values

    def rows(self, raw, statement: sa.Compiled, after: int) -> tuple[list, int, int | None]:
        """Read one batch of ``statement`` as rows, whose last column is the id."""
        cursor = raw.cursor()
        try:
            cursor.execute(statement.string, self.parameters(statement, after))
            rows = cursor.fetchall()
        finally:
            cursor.close()
            if self.dialect != "sqlite":
                raw.commit()
        return rows, len(rows), rows[-1][-1] if rows else None

    def stamp(self, column: sa.ColumnElement) -> sa.ColumnElement:
        """Return ``column``, a naive UTC timestamp, as SPEC's ISO 8601 text (NULL stays)."""
        if self.dialect == "postgresql":
            return sa.func.to_char(column, _ISO_FORMATS["postgresql"], type_=sa.String)
        return sa.func.strftime(_ISO_FORMATS["sqlite"], column, type_=sa.String)


class _SQLiteLines:
    """Yield a list's CSV lines on SQLite, a batch at a time, with its number of rows.

    A batch is one row: SQLite's group_concat joins the batch's lines (their cells joined
    with ``_CELL``, formula-guarded), its tokens and the lines' consent and reader cells
    (after the link, joined the same way), so that the sqlite3 module hands over a batch, not
    a row at a time (its cost per row was most of an export's), and Python splits it in one
    call. The lines become CSV by one replace, but for those holding a comma, a quote or a
    line break: the csv module quotes these. A batch that cannot be split for sure (a cell
    that holds a separator itself) is read again row by row.
    """

    def __init__(self, reader: _Reader):
        self.reader = reader
        # printf writes NULL as '', and joins the cells in one pass.
        line = sa.func.printf(
            _CELL.join(["%s"] * _CELLS), *reader.cells(guarded=True, empty=False), type_=sa.String
        )
        tail = sa.func.printf(
            _CELL.join(["%s"] * _TAIL), *reader.tail(guarded=True, empty=False), type_=sa.String
        )
        purpose_salt, key_id, digest = _token_columns()
        rows = reader.query(
            line.label("line"),
            _coalesced(purpose_salt).label("purpose_salt"),
            _coalesced(key_id).label("key_id"),
            _coalesced(digest).label("digest"),
            tail.label("tail"),
        ).subquery()
        # An aggregate over a subquery with a LIMIT reads that subquery's rows in its order
        # (SQLite does not flatten such a subquery into it): the lines come in id order.
        self.statement = reader.compiled(
            sa.select(
                sa.func.count(),
                *(sa.func.group_concat(column, _ROW) for column in list(rows.c)[:5]),
                sa.func.max(rows.c.id),
            )
        )
        self.by_row = reader.statement(
            *reader.cells(guarded=True), *reader.tail(guarded=True), *_token_columns()
        )
        self.buffer = io.StringIO()
        # The csv module quotes a cell holding a character of the line's end: keep SPEC's.
        self.writer = csv.writer(self.buffer, lineterminator="\r\n")

    def __iter__(self) -> Iterator[tuple[bytes, int]]:
        link = self.reader.links.cell
        raw = self.reader.engine.raw_connection()
        connection = raw.driver_connection
        connection.text_factory = bytes  # the lines stay bytes, as they are written
        try:
            for heads, purpose_salts, key_ids, digests, tails in self.reader.batches(
                lambda after: self._batch(raw, after)
            ):
                # Four pieces a line: SPEC's cells, ",link,", the cells after it, its end.
                lines = [b"\r\n"] * (4 * len(heads))
                lines[0::4] = heads
                lines[1::4] = map(link, purpose_salts, key_ids, digests)
                lines[2::4] = tails
                yield b"".join(lines), len(heads)
        finally:
            connection.text_factory = str
            raw.close()

    def _batch(self, raw, after: int) -> tuple[tuple, int, int | None]:
        parameters = self.reader.parameters(self.statement, after)
        row = raw.driver_connection.execute(self.statement.string, parameters).fetchone()
        batch = self._split(row)
        if batch is None:
            return self._by_row(raw, after)
        return batch, row[0], row[-1]

    def _split(self, row: tuple) -> tuple | None:
        """Return a batch's heads, tokens and tails, or None if it cannot be split for sure."""
        rows, lines, *tokens, tails, _ = row
        if not rows:
            return ()
        heads = self._lines(lines, rows, _CELLS)
        tails = self._lines(tails, rows, _TAIL)
        tokens = [column.split(_ROW_BYTES) for column in tokens]
        if heads is None or tails is None or any(len(column) != rows for column in tokens):
            return None
        return heads, *tokens, tails

    def _lines(self, lines: bytes, rows: int, cells: int) -> list[bytes] | None:
        """Return the CSV of each of ``rows`` lines of ``cells`` cells joined with _CELL."""
        if lines.count(_CELL_BYTES) != (cells - 1) * rows or lines.count(_ROW_BYTES) != rows - 1:
            return None  # a cell holds a separator itself
        heads = lines.replace(_CELL_BYTES, b",").split(_ROW_BYTES)
        if _NEEDS_QUOTES.search(lines):
            for i, line in enumerate(lines.split(_ROW_BYTES)):
                if _NEEDS_QUOTES.search(line):
                    heads[i] = self._csv(line.decode().split(_CELL))
        return heads

    def _csv(self, cells: list[str]) -> bytes:
        self.writer.writerow(cells)
        return _drain(self.buffer)[:-2].encode()

    def _by_row(self, raw, after: int) -> tuple[tuple, int, int | None]:
        rows, count, last = self.reader.rows(raw, self.by_row, after)
        tail = _CELLS + _TAIL
        heads = [self._csv([cell.decode() for cell in row[:_CELLS]]) for row in rows]
        tails = [self._csv([cell.decode() for cell in row[_CELLS:tail]]) for row in rows]
        tokens = [[row[i] for row in rows] for i in range(tail, tail + 3)]
        return (heads, *tokens, tails), count, last


class _PostgreSQLLines:
    """Yield a list's CSV lines on PostgreSQL, a batch at a time, with its number of rows.

    Each batch is one ``COPY (SELECT …) TO STDOUT (FORMAT csv)``: PostgreSQL quotes exactly
    as the csv module does (a cell with a comma, quote, CR or LF; quotes doubled), once empty
    cells are NULLs, which it leaves unquoted as the csv module leaves empty strings. The
    token's columns and the id ride at the end of each line; none can hold a comma. Before
    them come the consent and reader cells, which the link goes in front of: found by the
    line's last commas when none of them holds a quote (a quoted cell would), else by the csv
    module. Each line's link is derived as it arrives, while the server goes on with the next lines.
    """

    def __init__(self, reader: _Reader):
        self.reader = reader
        cells = [
            _cell(cell)
            for cell in reader.cells(guarded=True, empty=False)
            + reader.tail(guarded=True, empty=False)
        ]
        self.statement = reader.statement(*cells, *_token_columns())
        self.rows = reader.size * _CHUNKS_PER_COPY
        self.buffer = io.StringIO()
        self.writer = csv.writer(self.buffer, lineterminator="\r\n")

    def __iter__(self) -> Iterator[tuple[bytes, int]]:
        raw = self.reader.engine.raw_connection()
        try:
            after, copied = 0, self.rows
            while copied == self.rows:
                start, copied = after, 0
                for text, rows, after in self._copy(raw, start):  # noqa: B007 - the next start
                    copied += rows
                    yield text, rows
        finally:
            raw.close()

    def _copy(self, raw, after: int) -> Iterator[tuple[bytes, int, int]]:
        """Yield the chunks of one COPY, of the rows after id ``after``, as they arrive."""
        connection = raw.driver_connection
        encoding = connection.info.encoding
        sql = f"COPY ({self.statement.string}) TO STDOUT (FORMAT csv)"
        link = self.reader.links.cell
        chunk = self.reader.size
        lines = []
        append = lines.append
        try:
            with connection.cursor() as cursor:
                parameters = self.reader.parameters(self.statement, after, self.rows)
                with cursor.copy(sql, parameters) as copy:
                    for line in copy:  # one line a message, ending in \n; NULL cells empty
                        cells, purpose_salt, key_id, digest, last = bytes(line[:-1]).rsplit(b",", 4)
                        # The cells after the link: the last _TAIL, unless one of them is
                        # quoted (rsplit finds the comma faster than rfind calls in a row).
                        head = cells.rsplit(b",", _TAIL)[0]
                        tail = cells[len(head) + 1 :]
                        if b'"' in tail:
                            head, tail = self._parsed(cells, encoding)
                        else:
                            tail += b"\r\n"
                        append(head)
                        append(link(purpose_salt, key_id, digest))
                        append(tail)
                        if len(lines) == 3 * chunk:
                            yield _utf8(b"".join(lines), encoding), chunk, int(last)
                            lines.clear()
            if lines:
                yield _utf8(b"".join(lines), encoding), len(lines) // 3, int(last)
        finally:
            connection.commit()

    def _parsed(self, line: bytes, encoding: str) -> tuple[bytes, bytes]:
        """Return the CSV of SPEC's cells of ``line`` and of the cells after the link (csv)."""
        [cells] = csv.reader([line.decode(encoding)])
        self.writer.writerow(cells[:_CELLS])
        head = _drain(self.buffer)[:-2]
        self.writer.writerow(cells[_CELLS:])
        return head.encode(encoding), _drain(self.buffer).encode(encoding)


class _Links:
    """Derive the unsubscribe URLs of many tokens: tokens.mac's HMAC, in a tight loop.

    The common token, made with a key still honoured, takes a precomputed HMAC-SHA256 state
    of its key (RFC 2104's inner and outer pads, as the hmac module's pure-Python path keeps
    them): two hash copies a row, over twice as fast as hmac.digest(), which sets the key up
    again for every call. Rare tokens (no recorded key while fallbacks are set, or a key no
    longer honoured) go through tokens.deriver(), which defines the rule.
    """

    def __init__(self):
        url = external_url("subscriptions.unsubscribe_page", token="-")[:-1]  # noqa: S106
        self.prefix = b"," + url.encode()
        self.derive = tokens.deriver()
        keys = tokens.keys()
        self.pads = {}
        for key in keys:
            fingerprint = tokens.key_id(key)
            self.pads[fingerprint] = self.pads[fingerprint.encode()] = _hmac_pads(key.encode())
        if len(keys) == 1:  # a token without a recorded key is the current key's (deriver())
            self.pads[None] = self.pads[""] = self.pads[b""] = _hmac_pads(keys[0].encode())

    def cell(self, purpose_salt: bytes | None, key_id, digest) -> bytes:
        """Return the token's CSV cell, with the commas before and after it."""
        pair = self.pads.get(key_id) if purpose_salt else None
        if pair is None:
            return self._rare(purpose_salt, key_id, digest)
        inner = pair[0].copy()
        inner.update(purpose_salt)
        outer = pair[1].copy()
        outer.update(inner.digest())
        secret = binascii.b2a_base64(outer.digest(), newline=False)[:-1].translate(_URLSAFE)
        return self.prefix + secret + b","

    def _rare(self, purpose_salt: bytes | None, key_id, digest) -> bytes:
        # Empty for a row without a token, or whose token's key is no longer honoured.
        if not purpose_salt:
            return b",,"
        purpose, _, salt = purpose_salt.decode().partition(":")
        secret = self.derive(purpose, salt, _text(key_id) or None, _text(digest) or "")
        return self.prefix + secret.encode() + b"," if secret else b",,"


def _hmac_pads(key: bytes) -> tuple:
    """Return SHA-256 states fed with ``key``'s inner and outer pads (RFC 2104)."""
    block = hashlib.sha256().block_size
    if len(key) > block:
        key = hashlib.sha256(key).digest()
    key = key.ljust(block, b"\0")
    return hashlib.sha256(key.translate(_PAD_INNER)), hashlib.sha256(key.translate(_PAD_OUTER))


def _token_columns() -> tuple:
    # purpose:salt (NULL without a token), the key's fingerprint, and the digest only where
    # it is needed: to find the key of a token that did not record it.
    return (
        sa.type_coerce(Token.purpose, sa.String).concat(":").concat(Token.salt),
        Token.key_id,
        sa.case((Token.key_id.is_(None), Token.digest)),
    )


def _coalesced(column: sa.ColumnElement) -> sa.ColumnElement:
    return sa.func.coalesce(column, "", type_=sa.String)


def _guarded(value: sa.ColumnElement, dialect: str) -> sa.ColumnElement:
    """Return ``value`` with SPEC's formula guard, as ``neutralise()`` applies it."""
    # The code of the first character after any apostrophes (0 or NULL if none): an integer
    # test is the cheapest.
    unquoted = sa.func.ltrim(value, "'")
    first = sa.func.ascii(unquoted) if dialect == "postgresql" else sa.func.unicode(unquoted)
    starts = first.in_([sa.literal(ord(c)) for c in FORMULA_STARTS])
    return sa.case((starts, sa.literal("'").concat(value)), else_=value)


def _cell(value: sa.ColumnElement) -> sa.ColumnElement:
    # COPY's CSV quotes an empty string but not a NULL; the csv module quotes neither.
    return sa.func.nullif(value, "")


def _utf8(text: bytes, encoding: str) -> bytes:
    return text if encoding == "utf-8" else text.decode(encoding).encode()


def _bytes(value: str | bytes | None) -> bytes | None:
    return value.encode() if isinstance(value, str) else value


def _text(value: str | bytes | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value
