"""Export a list in the layout another tool's CSV importer expects: one preset per tool.

``spreadsheet`` is SPEC's export, formula-safe, written by ``exports.export()``'s fast path;
every other preset is for a machine: it takes ``exports.records()``' dicts (values as stored,
never neutralised) and writes the header, cells, delimiter, dates and status words of one
tool's own importer, with the reader's unsubscribe link and consent evidence wherever that
tool keeps custom data. Each preset names where its rules were read and when (``rules``).

A tool that sets the status of a whole import (listmonk, Mailchimp, Brevo, Buttondown, Kit)
gets a file of one status, and its docs say which import option that status is; a tool that
reads a status per row (Keila, Ghost) gets that tool's word in its column. A status a tool
cannot hold is refused before a row is read, never dropped or guessed (``Preset.check``).
Names are never split into first and last: no rule splits "山田太郎" or "de la Cruz" right, so
the whole name goes into the tool's first-name field, as stored.
"""

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from flask_babel import lazy_gettext as _l
from sqlalchemy.orm import Session

from . import exports
from .models import Editor, Newsletter, Status

DEFAULT = "spreadsheet"
STATUSES = tuple(str(status) for status in Status)  # exports.STATUSES but "all"
CHECKED = "2026-12-05"  # the day each tool's rules below were read
MEDIA_TYPE = "text/csv; charset=utf-8"
# records()' time form (SPEC's ISO 8601 UTC); presets that want another parse it from this.
ISO = "%Y-%m-%dT%H:%M:%SZ"
TIMES = ("optin_at", "confirmed_at", "unsubscribed_at")
# What a machine preset carries beside the address and the name: the link for the tool's
# List-Unsubscribe header, and the consent evidence. Tools with a column per custom field get
# these; a JSON object or a note also gets EXTRA, when known.
CARRIED = (
    "unsubscribe_url",
    "optin_at",
    "optin_ip",
    "confirmed_at",
    "confirm_ip",
    "source",
    "form_text_version",
    "language",
)
EXTRA = ("unsubscribed_at", "source_origin")
# Rows a chunk: the chunk stays small beside the process, and its write call cheap.
CHUNK_ROWS = 500

Row = Callable[[Mapping[str, str]], list[str]]


@dataclass(frozen=True)
class Preset:
    """One tool's import layout: its header, one record's row, its dates and status words.

    ``statuses`` maps each of our statuses that the tool can hold to the tool's own word:
    the cell written in ``status_column`` when the tool reads a status per row, else the
    option to pick in its importer for the whole file. ``rules`` says where the layout was
    read, ``notes`` what could not be verified there.
    """

    name: str
    tool: str
    description: str
    header: tuple[str, ...]
    row: Row
    statuses: Mapping[str, str]
    rules: tuple[str, ...]
    date_format: str = ISO
    status_column: str | None = None
    delimiter: str = ","
    lineterminator: str = "\r\n"
    neutralised: bool = False
    notes: tuple[str, ...] = field(default=())

    def check(self, status: str) -> None:
        """Refuse, with a message a person can act on, a status this tool cannot import."""
        if status not in exports.STATUSES:
            raise ValueError(f"status must be one of {', '.join(exports.STATUSES)}")
        if status == "all":
            if self.status_column is not None and set(self.statuses) >= set(STATUSES):
                return
            raise ValueError(
                f"the {self.name} preset takes one status at a time "
                f"({', '.join(self.statuses)}): {self._why_not_all()}"
            )
        if status not in self.statuses:
            raise ValueError(
                f"{self.tool} has no status for {status} subscriptions: "
                f"the {self.name} preset exports {' or '.join(self.statuses)} ones"
            )

    def filename(self, slug: str, status: str) -> str:
        """Return the download's file name: the list, the status and, for a tool, its name."""
        suffix = "" if self.name == DEFAULT else f"-{self.name}"
        return f"{slug}-{status}{suffix}.csv"

    def _why_not_all(self) -> str:
        if self.status_column is None:
            return f"{self.tool} sets one status for a whole import"
        missing = [status for status in STATUSES if status not in self.statuses]
        return f"{self.tool} has no status for {' or '.join(missing)} subscriptions"


def export(
    session: Session,
    newsletter: Newsletter,
    preset: str = DEFAULT,
    status: str = "confirmed",
    editor: Editor | None = None,
    via: str = "cli",
    progress: exports.Progress | None = None,
) -> Iterator[bytes]:
    """Record an export of ``newsletter``'s list in ``preset``'s layout; return its chunks.

    ``spreadsheet`` is ``exports.export(..., fmt="csv")`` itself, byte for byte. A machine
    preset is checked against ``status`` before anything is recorded or read (ValueError),
    then recorded with the preset's name as its format, as ``exports.export()`` records.
    """
    chosen = get(preset)
    if chosen.neutralised:
        return exports.export(session, newsletter, status, "csv", editor, via, progress)
    chosen.check(status)
    records = exports.records(session, newsletter, status)  # a generator: nothing read yet
    entry_id = exports.record(session, newsletter, editor, via, status, chosen.name).id
    session.commit()
    # The export's own ending: the row count recorded, and committed, once the last chunk is out.
    return exports.counted(_chunks(records, chosen), entry_id, session, progress)


def rows(records: Iterable[Mapping[str, str]], preset: "Preset | str") -> Iterator[bytes]:
    """Yield ``preset``'s CSV, header first, in chunks of UTF-8, from dicts of ``records()``."""
    chosen = get(preset)
    if chosen.neutralised:
        for text in exports.csv_chunks(records):
            yield text.encode()
        return
    for text, _rows in _chunks(records, chosen):
        yield text


def get(name: "Preset | str") -> Preset:
    """Return the preset called ``name``, or raise ValueError naming the choices."""
    if isinstance(name, Preset):
        return name
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"preset must be one of {', '.join(PRESETS)}") from None


def _chunks(records: Iterable[Mapping[str, str]], preset: Preset) -> Iterator[tuple[bytes, int]]:
    """Yield a machine preset's CSV in chunks of UTF-8, each with its number of rows."""
    buffer = io.StringIO()
    writer = csv.writer(
        buffer,
        delimiter=preset.delimiter,
        lineterminator=preset.lineterminator,
        quoting=csv.QUOTE_MINIMAL,
    )
    writer.writerow(preset.header)
    count, first = 0, None
    for record in records:
        status = record["status"]
        if status not in preset.statuses:
            raise ValueError(f"{preset.tool} has no status for {status} subscriptions")
        if preset.status_column is None:
            # One status a file: the importer applies the one picked to every row.
            first = first or status
            if status != first:
                raise ValueError(f"{preset.tool} sets one status for a whole import")
        writer.writerow(preset.row(record))
        count += 1
        if count == CHUNK_ROWS:
            yield _drain(buffer), count
            count = 0
    yield _drain(buffer), count


def _drain(buffer: io.StringIO) -> bytes:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text.encode()


def _time(value: str, fmt: str) -> str:
    """Return records()' ISO 8601 UTC ``value`` in ``fmt``; empty stays empty."""
    if not value or fmt == ISO:
        return value
    return datetime.strptime(value, ISO).strftime(fmt)


def _known(record: Mapping[str, str], names: Iterable[str]) -> dict[str, str]:
    """Return ``names``' values in ``record`` that are known (an empty cell is unknown)."""
    return {name: record[name] for name in names if record[name]}


def _json(values: Mapping[str, str]) -> str:
    # As the tools' own samples write it; ensure_ascii=False keeps names readable in the file.
    return json.dumps(values, ensure_ascii=False)


# --- spreadsheet: SPEC's columns, formula-safe: the default, unchanged ---------------------

SPREADSHEET = Preset(
    name="spreadsheet",
    tool="a spreadsheet",
    description=_l(
        "Every column, for Excel or LibreOffice: a cell that starts like a formula gets a "
        "leading apostrophe. Not for other tools."
    ),
    header=exports.COLUMNS,
    row=lambda record: [exports.neutralise(record[column]) for column in exports.COLUMNS],
    statuses={status: status for status in STATUSES},
    status_column="status",
    neutralised=True,
    rules=("/work/shared/SPEC.md, Export format",),
)


# --- listmonk ------------------------------------------------------------------------------
# knadh/listmonk internal/subimporter/importer.go (read at 007f4de8): headers matched exactly,
# lower case, after trimming and dropping non-ASCII (a BOM); known headers are email, name,
# attributes, others ignored; "email" required; encoding/csv with the delimiter picked in the
# importer (',' by default); the address is trimmed and lower-cased, an empty name becomes one
# made from the address; attributes must be a JSON object, else that row's attributes are
# skipped. frontend/src/views/Import.vue: the status is picked for the whole file,
# "unconfirmed" or "confirmed" in Subscribe mode; Blocklist mode marks everyone in the file
# unsubscribed (and blocklisted). docs/docs/content/apis/import.md: subscription_status.
LISTMONK_ATTRIBUTES = CARRIED + EXTRA


def _listmonk(record: Mapping[str, str]) -> list[str]:
    attributes = _known(record, LISTMONK_ATTRIBUTES)
    return [record["email"], record["name"], _json(attributes) if attributes else ""]


LISTMONK = Preset(
    name="listmonk",
    tool="listmonk",
    description=_l(
        "listmonk: email, name, attributes (JSON with the unsubscribe link and consent). "
        "Import with the status named in the docs."
    ),
    header=("email", "name", "attributes"),
    row=_listmonk,
    statuses={"confirmed": "confirmed", "pending": "unconfirmed", "unsubscribed": "unsubscribed"},
    rules=(
        "https://github.com/knadh/listmonk/blob/master/internal/subimporter/importer.go",
        "https://github.com/knadh/listmonk/blob/master/frontend/src/views/Import.vue",
        "https://listmonk.app/docs/apis/import/",
    ),
    notes=(
        "The Blocklist mode, the one way to import unsubscribed readers, blocklists them "
        "from every list of the listmonk instance, not only this one.",
    ),
)


# --- Mailchimp -----------------------------------------------------------------------------
# mailchimp.com/help/format-guidelines-for-your-import-file (and kb.mailchimp.com's older
# "Format List Fields"): UTF-8; "Email Address" is the only required field; columns in any
# order, each matched to an audience field in the import; international characters only
# after the @; text fields hold 255 bytes and are clipped past that; date fields take
# YYYY-MM-DD (no time), so the consent times go into text fields, ISO 8601 UTC, whole. The
# status (Subscribed, Unsubscribed, Non-subscribed, Cleaned) is chosen for the whole import
# (mailchimp.com/help/import-contacts-mailchimp, read through third-party walk-throughs: the
# help page itself was not in the stored copy).
MAILCHIMP_FIELDS = {
    "unsubscribe_url": "Unsubscribe URL",
    "optin_at": "Opt-in Time",
    "optin_ip": "Opt-in IP",
    "confirmed_at": "Confirm Time",
    "confirm_ip": "Confirm IP",
    "source": "Source",
    "form_text_version": "Form Text Version",
    "language": "Language",
}


def _mailchimp(record: Mapping[str, str]) -> list[str]:
    return [record["email"], record["name"], *(record[name] for name in MAILCHIMP_FIELDS)]


MAILCHIMP = Preset(
    name="mailchimp",
    tool="Mailchimp",
    description=_l(
        "Mailchimp: Email Address, First Name (the whole name), then the unsubscribe link "
        "and consent as text fields."
    ),
    header=("Email Address", "First Name", *MAILCHIMP_FIELDS.values()),
    row=_mailchimp,
    statuses={
        "confirmed": "Subscribed",
        "pending": "Non-subscribed",
        "unsubscribed": "Unsubscribed",
    },
    rules=(
        "https://mailchimp.com/help/format-guidelines-for-your-import-file/",
        "http://kb.mailchimp.com/lists/growth/format-list-fields",
        "https://mailchimp.com/help/import-contacts-mailchimp/ (through third-party copies)",
    ),
    notes=(
        "Mailchimp refuses an address with non-ASCII characters before the @.",
        "A name longer than 255 bytes of UTF-8 is clipped by Mailchimp.",
        "The status options' exact labels were read from third-party walk-throughs.",
    ),
)


# --- Brevo ---------------------------------------------------------------------------------
# help.brevo.com/hc/en-us/articles/208729849 ("Create a file to import your contacts", and its
# earlier "Format your contact import file"): CSV or TXT; separator a semicolon, a comma or a
# tab; UTF-8 or Windows-1252; EMAIL is the address's header; other headers are attribute
# names (FIRSTNAME, LASTNAME by default, named after the account's language), no spaces or
# special characters (help.sendinblue.com 209499265). Semicolons, as the API's fileBody wants
# them (developers.brevo.com/reference/importcontacts-1), so one file serves both. Blocklisting
# is an option of the whole import ("Blacklist the imported Email contacts",
# help.sendinblue.com 208773869); there is no pending status. The date attribute's format
# could not be found in the stored pages: the consent times go into text attributes.
BREVO_ATTRIBUTES = {name: name.upper() for name in CARRIED}


def _brevo(record: Mapping[str, str]) -> list[str]:
    return [record["email"], record["name"], *(record[name] for name in BREVO_ATTRIBUTES)]


BREVO = Preset(
    name="brevo",
    tool="Brevo",
    description=_l(
        "Brevo: EMAIL, FIRSTNAME and attributes in capitals for the unsubscribe link and "
        "consent; separated by semicolons."
    ),
    header=("EMAIL", "FIRSTNAME", *BREVO_ATTRIBUTES.values()),
    row=_brevo,
    statuses={"confirmed": "subscribed", "unsubscribed": "blocklisted"},
    delimiter=";",
    rules=(
        "https://help.brevo.com/hc/en-us/articles/208729849-Create-a-file-to-import-your-contacts",
        "https://help.sendinblue.com/hc/en-us/articles/209499265",
        "https://help.sendinblue.com/hc/en-us/articles/208773869",
        "https://developers.brevo.com/reference/importcontacts-1",
    ),
    notes=(
        "FIRSTNAME is the default attribute's name in an English account; other languages "
        "name it otherwise (map the column in the import).",
        "The format Brevo's date attributes take on import was not found; the times are text.",
    ),
)


# --- Keila ---------------------------------------------------------------------------------
# pentacent/keila lib/keila/contacts/import.ex: RFC 4180 with commas (NimbleCSV.RFC4180),
# unless the first line has exactly three ';'-separated parts; each header is found by regex
# (email.?(address)?, first.?name, last.?name, data, status, external.?id, any case) and the
# found columns are zipped, in header order, with the row's first cells: so the file must
# hold only columns Keila knows, and no others. Data is decoded as JSON (an object; max 8 KB).
# The whole file is one transaction: one bad row refuses it all. schemas/contact.ex: names at
# most 50 characters, address ^[^\s@]+@[^\s@]+$, statuses active, unsubscribed, unreachable.
# The two versions read disagree on Status: import.ex (as stored) skips any row whose status
# does not contain "active"; the newer tests (test/keila/contacts_test.exs) apply
# "unsubscribed", refuse any word but the three, and re-activate a contact marked "active" when
# "Replace duplicates" is on. docs/exports.md says how to import so both behave.
KEILA_NAME_LENGTH = 50
KEILA_DATA = CARRIED + EXTRA


def _keila(record: Mapping[str, str]) -> list[str]:
    data = _known(record, KEILA_DATA)
    name = record["name"]
    if len(name) > KEILA_NAME_LENGTH:
        # Keila would refuse the whole file; the name goes whole into Data instead.
        data["name"], name = name, ""
    return [record["email"], name, _json(data) if data else "", KEILA.statuses[record["status"]]]


KEILA = Preset(
    name="keila",
    tool="Keila",
    description=_l(
        "Keila: Email, First name, Data (JSON with the unsubscribe link and consent), Status."
    ),
    header=("Email", "First name", "Data", "Status"),
    row=_keila,
    statuses={"confirmed": "active", "unsubscribed": "unsubscribed"},
    status_column="Status",
    rules=(
        "https://github.com/pentacent/keila/blob/main/lib/keila/contacts/import.ex",
        "https://github.com/pentacent/keila/blob/main/lib/keila/contacts/schemas/contact.ex",
        "https://github.com/pentacent/keila/blob/main/test/keila/contacts_test.exs",
        "https://github.com/pentacent/keila/blob/main/lib/keila_web/templates/contact/"
        "import_live.html.heex",
    ),
    notes=(
        "A name over 50 characters leaves First name empty and goes whole into Data.name.",
        "Status handling differs between Keila versions (see the comment above).",
    ),
)


# --- Ghost ---------------------------------------------------------------------------------
# ghost.org/help/import-members: email (required), name, note, subscribed_to_emails
# (true/false), stripe_customer_id, complimentary_plan, labels, created_at in ISO 8601 like
# 2019-10-30T14:52:08.000Z. TryGhost/Ghost ghost/members-importer/lib/MembersCSVImporter.js:
# headers mapped as named there (subscribed_to_emails → subscribed); note at most 2000
# characters; a member created in the future gets now. ghost/members-csv/lib/parse.js:
# papaparse, BOM dropped; "subscribed" is true unless the cell says "false"; any cell "true" or
# "false" (any case) becomes a boolean and "" or "undefined" becomes null, a name too. An
# existing member with subscribed=false is unsubscribed from every newsletter; with true,
# their own choices stay. A pending reader is not imported: Ghost would make them a member.
GHOST_TIME = "%Y-%m-%dT%H:%M:%S.000Z"
GHOST_NOTE = CARRIED[1:] + EXTRA + ("unsubscribe_url",)


def _ghost(record: Mapping[str, str]) -> list[str]:
    note = "\n".join(f"{name}: {value}" for name, value in _known(record, GHOST_NOTE).items())
    return [
        record["email"],
        record["name"],
        note,
        GHOST.statuses[record["status"]],
        _time(record["optin_at"], GHOST_TIME),
    ]


GHOST = Preset(
    name="ghost",
    tool="Ghost",
    description=_l(
        "Ghost members: email, name, note (consent and unsubscribe link), "
        "subscribed_to_emails, created_at."
    ),
    header=("email", "name", "note", "subscribed_to_emails", "created_at"),
    row=_ghost,
    statuses={"confirmed": "true", "unsubscribed": "false"},
    status_column="subscribed_to_emails",
    date_format=GHOST_TIME,
    rules=(
        "https://ghost.org/help/import-members/",
        "https://github.com/TryGhost/Ghost/blob/main/ghost/members-importer/lib/MembersCSVImporter.js",
        "https://github.com/TryGhost/Ghost/blob/main/ghost/members-csv/lib/parse.js",
    ),
    notes=(
        "A name that is exactly true, false or undefined is read by Ghost as a value, not text.",
        "Ghost's limit on a member's name was not checked.",
    ),
)


# --- Buttondown ----------------------------------------------------------------------------
# docs.buttondown.com/api-imports-introduction: a CSV it does not recognise as another tool's
# export has its standard columns (email, name, tags) mapped by name; the others are mapped to
# metadata in the import (buttondown/docs pages/getting-started/importing-your-data.mdx: "map
# each column ... keeping their existing tags, join dates, and metadata"). Metadata keys
# without hyphens (pages/advanced-features/metadata.mdx: {{ subscriber.metadata.first-name }}
# fails). Imported readers are taken as having consented already (importing-your-data.mdx);
# whether an import can mark a reader unsubscribed was not found, so only confirmed ones go.
def _name_then_carried(record: Mapping[str, str]) -> list[str]:
    """Return the address, the whole name, then ``CARRIED``: a column per custom field."""
    return [record["email"], record["name"], *(record[name] for name in CARRIED)]


BUTTONDOWN = Preset(
    name="buttondown",
    tool="Buttondown",
    description=_l(
        "Buttondown: email, name, then the unsubscribe link and consent for metadata. "
        "Confirmed readers only."
    ),
    header=("email", "name", *CARRIED),
    row=_name_then_carried,
    statuses={"confirmed": "regular"},
    rules=(
        "https://docs.buttondown.com/api-imports-introduction",
        "https://github.com/buttondown/docs/blob/main/pages/getting-started/importing-your-data.mdx",
        "https://github.com/buttondown/docs/blob/main/pages/advanced-features/metadata.mdx",
    ),
    notes=(
        "The date format Buttondown reads in a mapped column was not found; times are ISO 8601.",
        "Whether a name column is stored as such or as metadata depends on Buttondown's mapping.",
    ),
)


# --- Kit (ConvertKit) ----------------------------------------------------------------------
# help.kit.com/en/articles/2502555-how-to-import-a-subscriber-list: a column per field with a
# header row, at least the address; a Tags column lists tags separated by commas; blank cells
# replace what Kit holds for an existing subscriber (tags are only added). Column names email,
# first_name and custom fields matched by name (docs.emailfirst.co/kit/importing-subscribers,
# third-party). Permission is required of every imported reader and unsubscribed ones must not
# be imported (help.convertkit.com 5027047): confirmed readers only.
KIT = Preset(
    name="kit",
    tool="Kit",
    description=_l(
        "Kit (ConvertKit): email, first_name, then custom fields for the unsubscribe link "
        "and consent. Confirmed readers only."
    ),
    header=("email", "first_name", *CARRIED),
    row=_name_then_carried,
    statuses={"confirmed": "active"},
    rules=(
        "https://help.kit.com/en/articles/2502555-how-to-import-a-subscriber-list",
        "https://help.convertkit.com/en/articles/5027047",
        "https://docs.emailfirst.co/kit/importing-subscribers (third-party)",
    ),
    notes=(
        "The exact header names Kit matches automatically are from a third-party guide.",
        "Custom fields must exist in Kit before the import to be filled.",
    ),
)


PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (SPREADSHEET, LISTMONK, MAILCHIMP, BREVO, KEILA, GHOST, BUTTONDOWN, KIT)
}
