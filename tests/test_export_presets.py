"""Export presets: each tool's file, read back the way that tool's own importer reads it.

The list holds the rows that break naive exports: addresses that start with '-' or '+' (valid,
and formula-like to a spreadsheet), an internationalised domain as the app stores it, names
with a comma, quotes, a line break, Ukrainian and CJK text, one longer than Keila takes, and
every status. Each preset's confirmed export is compared byte for byte with its golden sample
(tests/data/export_presets/, the samples docs/exports.md shows), then parsed with the tool's
documented rules (see newsletters/export_presets.py for where each was read) and compared,
field by field, with ``exports.records()``, the values as stored.
"""

import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from newsletters import addresses, db, export_presets, exports, tokens
from newsletters.models import (
    ExportRecord,
    Newsletter,
    Status,
    Subscriber,
    Subscription,
    Token,
    TokenPurpose,
)
from tests.admin import conftest as admin_tests
from tests.admin.conftest import login
from tests.api import conftest as api_tests
from tests.api.conftest import bearer

GOLDEN = Path(__file__).parent / "data" / "export_presets"
# The editors' and the API's fixtures, for the download and the API's export.
make_editor = admin_tests.make_editor
make_key = api_tests.make_key
KEY = "test-secret"  # conftest's SECRET_KEY: the links below are derived with it
CARRIED = export_presets.CARRIED
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
LONG_NAME = "Maria del Carmen Fernández de la Concepción y Rodríguez-Ortega"  # 62 characters
CONFIRMED, PENDING, UNSUBSCRIBED = Status.CONFIRMED, Status.PENDING, Status.UNSUBSCRIBED
# (address as a reader typed it, name, status, source, language)
TRICKY = [
    ("-news@example.org", "Smith, John", CONFIRMED, "form", "en"),
    ("+ua@example.org", 'Oleh "Olik" Bondar', CONFIRMED, "embed", "uk"),
    ("user@xn--bcher-kva.example", "two\nlines", CONFIRMED, "api", None),
    ("olena@example.com", "Олена Петренко", CONFIRMED, "form", "uk"),
    ("yamada@example.jp", "山田太郎", CONFIRMED, "import:legacy,list", None),
    ("=sum@example.org", "=1+2", CONFIRMED, "form", "en"),
    ("long@example.org", LONG_NAME, CONFIRMED, "form", "en"),
    ("noname@example.org", None, CONFIRMED, "import", None),
    ("waiting@example.org", "Pending, Person", PENDING, "form", "en"),
    ("gone@example.org", "Gone Reader", UNSUBSCRIBED, "form", "uk"),
]
START = datetime(2026, 11, 30, 8, 15, tzinfo=UTC)
MACHINE = [name for name in export_presets.PRESETS if name != "spreadsheet"]


@pytest.fixture
def listed(app, newsletter, session):
    """Add TRICKY to 'briefing' as the app stores it; return the newsletter's id."""
    briefing = session.scalar(sa.select(Newsletter).where(Newsletter.slug == newsletter))
    for i, (typed, name, status, source, language) in enumerate(TRICKY):
        subscriber = Subscriber(email=addresses.normalise(typed))
        salt = f"{i:032x}"
        token = Token(
            purpose=TokenPurpose.UNSUBSCRIBE,
            subscriber=subscriber,
            salt=salt,
            key_id=tokens.key_id(KEY),
            digest=tokens.digest_of(tokens.mac(KEY.encode(), TokenPurpose.UNSUBSCRIBE, salt)),
        )
        optin_at = START + timedelta(minutes=i)
        session.add(
            Subscription(
                newsletter_id=briefing.id,
                subscriber=subscriber,
                status=status,
                name=name,
                source=source,
                optin_at=optin_at,
                optin_ip=f"203.0.113.{i + 1}" if i % 3 else f"2001:db8::{i + 1:x}",
                confirmed_at=optin_at + timedelta(seconds=42) if status != PENDING else None,
                confirm_ip="198.51.100.9" if status != PENDING else None,
                unsubscribed_at=optin_at + timedelta(days=2) if status == UNSUBSCRIBED else None,
                unsubscribe_token=token,
                origin="https://blog.example.net" if source == "embed" else None,
                text_digest=f"{i:02d}" + "ab" * 31,
                confirmation_mailed_at=optin_at if source != "import" else None,
                language=language,
            )
        )
    session.commit()
    return briefing.id


def export_of(app, preset, status="confirmed", **options):
    with app.app_context():
        briefing = db.session().scalar(sa.select(Newsletter).where(Newsletter.slug == "briefing"))
        return b"".join(export_presets.export(db.session(), briefing, preset, status, **options))


def records_of(app, status="confirmed"):
    with app.app_context():
        briefing = db.session().scalar(sa.select(Newsletter).where(Newsletter.slug == "briefing"))
        return list(exports.records(db.session(), briefing, status))


def test_the_app_stores_the_internationalised_domain_in_its_unicode_form():
    assert addresses.normalise("user@xn--bcher-kva.example") == "user@bücher.example"
    assert addresses.normalise("user@bücher.example") == "user@bücher.example"


def test_presets_are_offered_in_a_stable_order_each_with_its_sources():
    assert list(export_presets.PRESETS) == [
        "spreadsheet",
        "listmonk",
        "mailchimp",
        "brevo",
        "keila",
        "ghost",
        "buttondown",
        "kit",
    ]
    assert export_presets.DEFAULT == "spreadsheet"
    for preset in export_presets.PRESETS.values():
        assert str(preset.description) and "\n" not in str(preset.description)
        assert preset.rules
        assert preset.neutralised == (preset.name == "spreadsheet")
        assert preset.neutralised or len(preset.name) <= 10  # ExportRecord.format: the name


# --- each tool's own reading ----------------------------------------------------------------


def parse_listmonk(data: bytes) -> list[dict]:
    """Read as listmonk's subimporter does: Go encoding/csv, headers trimmed, ASCII, exact."""
    reader = csv.reader(io.StringIO(data.decode(), newline=""), strict=True)
    header = next(reader)
    index = {}
    for i, name in enumerate(header):
        name = re.sub(r"[^\x00-\x7f]", "", name.strip())
        if name in ("email", "name", "attributes"):
            index[name] = i
    assert "email" in index
    parsed = []
    for cells in reader:
        assert len(cells) == len(header)  # Go: every record has the first record's fields
        row = {key: cells[i] for key, i in index.items()}
        assert row["email"].strip().lower() == row["email"]  # its sanitising changes nothing
        attributes = json.loads(row["attributes"]) if row["attributes"] else {}
        assert isinstance(attributes, dict)  # models.JSON: an object, else dropped
        parsed.append({"email": row["email"], "name": row["name"], **attributes})
    return parsed


MAILCHIMP_FIELDS = {
    "Unsubscribe URL": "unsubscribe_url",
    "Opt-in Time": "optin_at",
    "Opt-in IP": "optin_ip",
    "Confirm Time": "confirmed_at",
    "Confirm IP": "confirm_ip",
    "Source": "source",
    "Form Text Version": "form_text_version",
    "Language": "language",
}


def parse_mailchimp(data: bytes) -> list[dict]:
    """Read as Mailchimp's guidelines ask: UTF-8, "Email Address" required, fields by label."""
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")))
    parsed = []
    for row in rows:
        local = row["Email Address"].rpartition("@")[0]
        assert local.isascii()  # international characters only after the @
        assert row["Email Address"] == row["Email Address"].strip()
        parsed.append(
            {"email": row["Email Address"], "name": row["First Name"]}
            | {key: row[label] for label, key in MAILCHIMP_FIELDS.items()}
        )
    return parsed


def parse_brevo(data: bytes) -> list[dict]:
    """Read as Brevo documents: ';' separated, EMAIL, attribute names without specials."""
    reader = csv.DictReader(io.StringIO(data.decode("utf-8"), newline=""), delimiter=";")
    assert "EMAIL" in reader.fieldnames
    assert all(re.fullmatch(r"[A-Z][A-Z0-9_]*", name) for name in reader.fieldnames)
    return [
        {"email": row["EMAIL"], "name": row["FIRSTNAME"]}
        | {key: row[key.upper()] for key in CARRIED}
        for row in reader
    ]


KEILA_COLUMNS = [
    ("email", r"email.?(address)?"),
    ("external_id", r"external.?id"),
    ("first_name", r"first.?name"),
    ("last_name", r"last.?name"),
    ("data", r"data"),
    ("status", r"status"),
]


def parse_keila(data: bytes) -> list[dict]:
    """Read as Keila's import.ex does, including its positional zip of the found columns."""
    text = data.decode("utf-8")
    first_line = text.split("\n", 1)[0]
    delimiter = ";" if len(first_line.split(";")) == 3 else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    header = next(reader)
    found = {}
    for key, pattern in KEILA_COLUMNS:
        matches = [i for i, name in enumerate(header) if re.search(pattern, name, re.I)]
        if matches:
            found[key] = matches[0]
    keys = sorted(found, key=found.get)
    # Keila zips the found keys with the row's first cells: every column must be one it knows.
    assert [found[key] for key in keys] == list(range(len(header)))
    parsed = []
    for cells in reader:
        row = dict(zip(keys, cells, strict=False))
        assert re.fullmatch(r"[^\s@]+@[^\s@]+", row["email"]) and len(row["email"]) <= 255
        assert len(row["first_name"]) <= 50  # else the whole file is refused
        assert row["status"] in ("active", "unsubscribed", "unreachable")
        data_ = json.loads(row["data"]) if row["data"] else {}
        assert isinstance(data_, dict) and len(row["data"].encode()) <= 8000
        name = data_.pop("name", row["first_name"])
        parsed.append({"email": row["email"], "name": name, "status": row["status"], **data_})
    return parsed


GHOST_HEADERS = {
    "email",
    "name",
    "note",
    "subscribed_to_emails",
    "created_at",
    "complimentary_plan",
    "stripe_customer_id",
    "labels",
}


def parse_ghost(data: bytes) -> list[dict]:
    """Read as Ghost's members-csv parse does with the importer's default header mapping."""
    text = data.decode("utf-8").removeprefix("\ufeff")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    assert set(reader.fieldnames) <= GHOST_HEADERS
    parsed = []
    for row in reader:
        assert row["name"].lower() not in ("true", "false", "undefined")  # else not text
        assert len(row["note"]) <= 2000
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z", row["created_at"])
        note = dict(line.split(": ", 1) for line in row["note"].split("\n") if line)
        parsed.append(
            {
                "email": row["email"],
                "name": row["name"],
                "subscribed": row["subscribed_to_emails"].lower() != "false",
                "status": row["subscribed_to_emails"],
                "created_at": row["created_at"],
                **note,
            }
        )
    return parsed


def parse_plain(first_name: str):
    """Read a comma-separated file whose columns keep our names (Buttondown, Kit)."""

    def parse(data: bytes) -> list[dict]:
        reader = csv.DictReader(io.StringIO(data.decode("utf-8"), newline=""))
        assert reader.fieldnames[:2] == ["email", first_name]
        return [row | {"name": row.pop(first_name)} for row in reader]

    return parse


PARSERS = {
    "listmonk": parse_listmonk,
    "mailchimp": parse_mailchimp,
    "brevo": parse_brevo,
    "keila": parse_keila,
    "ghost": parse_ghost,
    "buttondown": parse_plain("name"),
    "kit": parse_plain("first_name"),
}
HEADERS = {
    "listmonk": "email,name,attributes",
    "mailchimp": "Email Address,First Name,Unsubscribe URL,Opt-in Time,Opt-in IP,Confirm Time,"
    "Confirm IP,Source,Form Text Version,Language",
    "brevo": "EMAIL;FIRSTNAME;UNSUBSCRIBE_URL;OPTIN_AT;OPTIN_IP;CONFIRMED_AT;CONFIRM_IP;SOURCE;"
    "FORM_TEXT_VERSION;LANGUAGE",
    "keila": "Email,First name,Data,Status",
    "ghost": "email,name,note,subscribed_to_emails,created_at",
    "buttondown": "email,name," + ",".join(CARRIED),
    "kit": "email,first_name," + ",".join(CARRIED),
}
# What each tool's file says for each status it can hold: in the file for Keila and Ghost,
# else the importer's option the docs tell the editor to pick.
STATUS_WORDS = {
    "listmonk": {
        "confirmed": "confirmed",
        "pending": "unconfirmed",
        "unsubscribed": "unsubscribed",
    },
    "mailchimp": {
        "confirmed": "Subscribed",
        "pending": "Non-subscribed",
        "unsubscribed": "Unsubscribed",
    },
    "brevo": {"confirmed": "subscribed", "unsubscribed": "blocklisted"},
    "keila": {"confirmed": "active", "unsubscribed": "unsubscribed"},
    "ghost": {"confirmed": "true", "unsubscribed": "false"},
    "buttondown": {"confirmed": "regular"},
    "kit": {"confirmed": "active"},
}


def test_presets_write_each_tools_header_and_status_words():
    for name, header in HEADERS.items():
        preset = export_presets.PRESETS[name]
        assert preset.delimiter.join(preset.header) == header
        assert dict(preset.statuses) == STATUS_WORDS[name]
    assert set(HEADERS) == set(MACHINE)


@pytest.mark.parametrize("preset", MACHINE)
def test_golden_sample_of_each_preset(app, listed, preset):
    produced = export_of(app, preset)
    path = GOLDEN / f"{preset}.csv"
    if not path.exists():  # a new preset: write its sample for review, and fail until then
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(produced)
        pytest.fail(f"wrote {path}: check it against the tool's rules and run again")
    golden = path.read_bytes()
    assert produced.decode() == golden.decode()
    assert produced == golden
    assert not produced.startswith(b"\xef\xbb\xbf")  # no tool asks for a byte-order mark
    assert produced.endswith(b"\r\n") and b"\n\r" not in produced


@pytest.mark.parametrize("preset", MACHINE)
def test_each_tool_reads_every_field_exactly_as_stored(app, listed, preset):
    produced = export_of(app, preset)
    assert produced.split(b"\r\n", 1)[0].decode() == HEADERS[preset]
    parsed = PARSERS[preset](produced)
    stored = records_of(app)
    # Only confirmed subscriptions by default, in the list's order.
    assert [row["email"] for row in parsed] == [r["email"] for r in stored]
    assert {r["status"] for r in stored} == {"confirmed"}
    assert len(stored) == sum(1 for *_, status, _s, _l in TRICKY if status == CONFIRMED)
    assert "-news@example.org" in [row["email"] for row in parsed]
    assert "+ua@example.org" in [row["email"] for row in parsed]
    assert "user@bücher.example" in [row["email"] for row in parsed]
    for row, record in zip(parsed, stored, strict=True):
        assert row["email"] == record["email"]  # no apostrophe, no case or IDNA change
        assert row["name"] == record["name"]
        assert not row["name"].startswith("'") and not row["email"].startswith("'")
        for key in CARRIED:
            if preset in ("listmonk", "keila", "ghost"):  # a JSON object or a note: known only
                assert row.get(key, "") == record[key], key
            else:
                assert row[key] == record[key], key
        for key in ("optin_at", "confirmed_at"):
            assert ISO_UTC.fullmatch(row[key])
        assert row["unsubscribe_url"].startswith("https://news.example.org/unsubscribe/")
    if preset == "ghost":
        for row, record in zip(parsed, stored, strict=True):
            assert row["subscribed"] is True
            assert row["created_at"] == record["optin_at"].replace("Z", ".000Z")
    if preset == "keila":
        assert {row["status"] for row in parsed} == {"active"}


@pytest.mark.parametrize("preset", MACHINE)
def test_each_status_a_tool_holds_exports_in_its_words_and_others_are_refused(
    app, listed, session, preset
):
    chosen = export_presets.PRESETS[preset]
    for status in ("confirmed", "pending", "unsubscribed", "all"):
        before = session.scalar(sa.select(sa.func.count()).select_from(ExportRecord))
        if status not in STATUS_WORDS[preset]:
            with pytest.raises(ValueError, match=chosen.tool if status != "all" else "one status"):
                export_of(app, preset, status)
            # Refused before anything is recorded or read.
            assert session.scalar(sa.select(sa.func.count()).select_from(ExportRecord)) == before
            continue
        parsed = PARSERS[preset](export_of(app, preset, status))
        expected = [r["email"] for r in records_of(app, status)]
        assert [row["email"] for row in parsed] == expected and expected
        if chosen.status_column is not None:
            assert {row["status"] for row in parsed} == {STATUS_WORDS[preset][status]}


def test_keila_gets_a_name_too_long_for_it_whole_in_data(app, listed):
    parsed = {row["email"]: row for row in parse_keila(export_of(app, "keila"))}
    raw = csv.DictReader(io.StringIO(export_of(app, "keila").decode(), newline=""))
    cells = {row["Email"]: row for row in raw}
    assert cells["long@example.org"]["First name"] == ""
    assert json.loads(cells["long@example.org"]["Data"])["name"] == LONG_NAME
    assert parsed["long@example.org"]["name"] == LONG_NAME
    assert "name" not in json.loads(cells["olena@example.com"]["Data"])


def test_unsubscribed_readers_carry_the_time_they_left_where_a_tool_keeps_json(app, listed):
    [row] = parse_listmonk(export_of(app, "listmonk", "unsubscribed"))
    [record] = records_of(app, "unsubscribed")
    assert row["unsubscribed_at"] == record["unsubscribed_at"] != ""
    [gone] = parse_ghost(export_of(app, "ghost", "unsubscribed"))
    assert gone["subscribed"] is False and gone["unsubscribed_at"] == record["unsubscribed_at"]


def test_a_machine_export_is_recorded_with_its_preset_and_row_count(app, listed, session):
    seen = []
    export_of(app, "brevo", progress=seen.append, via="admin")
    entry = session.scalars(sa.select(ExportRecord).order_by(ExportRecord.id.desc())).first()
    confirmed = sum(1 for *_, status, _s, _l in TRICKY if status == CONFIRMED)
    assert (entry.format, entry.status, entry.via, entry.rows) == (
        "brevo",
        "confirmed",
        "admin",
        confirmed,
    )
    assert sum(seen) == confirmed


@pytest.mark.parametrize("status", exports.STATUSES)
def test_spreadsheet_is_the_csv_export_byte_for_byte(app, listed, status):
    produced = export_of(app, "spreadsheet", status)
    with app.app_context():
        briefing = db.session().scalar(sa.select(Newsletter).where(Newsletter.slug == "briefing"))
        assert produced == b"".join(exports.export(db.session(), briefing, status, "csv"))
        records = exports.records(db.session(), briefing, status)
        assert b"".join(export_presets.rows(records, "spreadsheet")) == produced
    # The spreadsheet keeps its guard: the formula-like address and name are neutralised.
    if status in ("confirmed", "all"):
        assert b"'-news@example.org," in produced and b"'=1+2" in produced


def test_rows_takes_records_and_refuses_a_mix_of_statuses_for_a_whole_file_tool():
    record = dict.fromkeys(exports.COLUMNS, "") | {"email": "a@example.org", "status": "confirmed"}
    other = record | {"email": "b@example.org", "status": "pending"}
    text = b"".join(export_presets.rows([record], "kit")).decode()
    assert text == "email,first_name," + ",".join(CARRIED) + "\r\na@example.org" + "," * 9 + "\r\n"
    with pytest.raises(ValueError, match="one status for a whole import"):
        b"".join(export_presets.rows([record, other], "listmonk"))
    with pytest.raises(ValueError, match="Keila has no status for pending"):
        b"".join(export_presets.rows([other], "keila"))
    with pytest.raises(ValueError, match="preset must be one of spreadsheet, listmonk"):
        export_presets.get("substack")


def test_large_lists_stream_in_chunks(app, newsletter, session):
    briefing = session.scalar(sa.select(Newsletter).where(Newsletter.slug == "briefing"))
    for i in range(export_presets.CHUNK_ROWS + 3):
        session.add(
            Subscription(
                newsletter_id=briefing.id,
                subscriber=Subscriber(email=f"reader{i}@example.org"),
                status=CONFIRMED,
                optin_at=START,
                confirmed_at=START,
            )
        )
    session.commit()
    with app.app_context():
        briefing = db.session().scalar(sa.select(Newsletter).where(Newsletter.slug == "briefing"))
        chunks = list(export_presets.export(db.session(), briefing, "kit"))
    assert len(chunks) == 2
    assert b"".join(chunks).count(b"\r\n") == export_presets.CHUNK_ROWS + 4


# The three ways to ask for a preset: the command line, the editors' download, the API.


def test_the_cli_exports_a_preset_and_refuses_what_the_tool_cannot_take(app, listed, runner):
    result = runner.invoke(args=["export", "briefing", "--preset", "listmonk"])
    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == export_of(app, "listmonk")
    refused = runner.invoke(args=["export", "briefing", "--preset", "kit", "--status", "pending"])
    assert refused.exit_code == 2
    assert "Kit has no status for pending subscriptions" in refused.output
    jsonl = runner.invoke(args=["export", "briefing", "--preset", "brevo", "--format", "jsonl"])
    assert jsonl.exit_code == 2 and "leave --format csv" in jsonl.output


def test_the_editors_download_offers_each_preset_and_names_the_file_after_the_tool(
    app, client, listed, make_editor
):
    login(client, make_editor("ed@example.com", "briefing"))
    dashboard = client.get("/admin/n/briefing/").get_data(as_text=True)
    for preset in MACHINE:
        assert f'name="preset" value="{preset}"' in dashboard
        assert str(export_presets.PRESETS[preset].description) in dashboard

    response = client.get("/admin/n/briefing/export?format=csv&preset=ghost&status=confirmed")

    assert response.status_code == 200
    disposition = response.headers["Content-Disposition"]
    assert disposition == 'attachment; filename="briefing-confirmed-ghost.csv"'
    assert response.get_data() == export_of(app, "ghost")
    assert client.get("/admin/n/briefing/export?preset=nope").status_code == 400
    refused = client.get("/admin/n/briefing/export?preset=kit&status=unsubscribed")
    assert refused.status_code == 400
    assert "Kit has no status for unsubscribed" in refused.get_data(as_text=True)
    jsonl = client.get("/admin/n/briefing/export?preset=kit&format=jsonl")
    assert jsonl.status_code == 400


def test_the_api_exports_a_preset_as_csv(app, client, listed, make_key):
    key = make_key("api@example.com", "briefing")
    response = client.get(
        "/api/v1/newsletters/briefing/export?preset=mailchimp", headers=bearer(key)
    )
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert response.get_data() == export_of(app, "mailchimp")
    refused = client.get(
        "/api/v1/newsletters/briefing/export?preset=buttondown&status=pending",
        headers=bearer(key),
    )
    assert refused.status_code == 400
    assert refused.json["error"] == "invalid_fields"
    unknown = client.get("/api/v1/newsletters/briefing/export?preset=nope", headers=bearer(key))
    assert unknown.status_code == 400
