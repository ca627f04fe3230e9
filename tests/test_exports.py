"""Exporting a list with `newsletters export`: SPEC's columns, filters, links and safe cells."""

import csv
import io
import json
import re
import time
from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from newsletters import create_app, db, editors, exports, tokens
from newsletters.models import (
    ExportRecord,
    Newsletter,
    Status,
    Subscriber,
    Subscription,
    Token,
    TokenPurpose,
)

SPEC_HEADER = (
    "email,name,status,optin_at,optin_ip,confirmed_at,confirm_ip,unsubscribed_at,source,"
    "unsubscribe_url"
)
HEADER = (
    SPEC_HEADER + ",form_text_version,source_origin,confirmation_evidence,address_flags,language"
    ",page,utm_source,utm_medium,utm_campaign,verification"
)
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def sign_up(client, email, name=None, ip="203.0.113.7"):
    data = {"email": email} | ({"name": name} if name else {})
    response = client.post("/n/briefing/subscribe", data=data, environ_base={"REMOTE_ADDR": ip})
    assert response.status_code == 303, response.get_data(as_text=True)


def confirm(app, client, session, email, ip="198.51.100.9"):
    """Confirm ``email``'s signup through the confirmation endpoint, as its mail link would."""
    token = session.scalar(
        sa.select(Token)
        .join(Subscriber)
        .where(Subscriber.email == email, Token.purpose == TokenPurpose.CONFIRM)
        .order_by(Token.id.desc())
    )
    with app.app_context():
        secret = tokens.secret_for(token)
    response = client.post(f"/confirm/{secret}", environ_base={"REMOTE_ADDR": ip})
    assert response.status_code == 200


def export_text(runner, *options, slug="briefing"):
    result = runner.invoke(args=["export", slug, *options])
    assert result.exit_code == 0, result.output
    return result.stdout


def export_rows(runner, *options):
    return list(csv.DictReader(io.StringIO(export_text(runner, *options), newline="")))


def subscription_of(session, email):
    session.expire_all()
    return session.scalar(sa.select(Subscription).join(Subscriber).where(Subscriber.email == email))


def test_csv_header_is_the_spec_columns_then_the_consent_columns_even_for_an_empty_list(
    runner, newsletter
):
    result = runner.invoke(args=["export", "briefing"])
    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == (HEADER + "\r\n").encode()
    assert ",".join(exports.COLUMNS) == HEADER
    assert HEADER.startswith(SPEC_HEADER + ",")


def test_one_row_per_subscription_with_its_evidence(app, client, runner, newsletter, session):
    sign_up(client, "ada@example.com", name="Ada", ip="203.0.113.7")
    confirm(app, client, session, "ada@example.com", ip="198.51.100.9")

    [row] = export_rows(runner)
    stored = subscription_of(session, "ada@example.com")
    assert list(row) == list(exports.COLUMNS)
    assert row["email"] == "ada@example.com"
    assert row["name"] == "Ada"
    assert row["status"] == "confirmed"
    assert row["optin_ip"] == "203.0.113.7"
    assert row["confirm_ip"] == "198.51.100.9"
    assert row["source"] == "plain"
    assert row["optin_at"] == stored.optin_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert row["confirmed_at"] == stored.confirmed_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert row["unsubscribed_at"] == ""
    assert row["form_text_version"] == stored.text_digest[:12]
    assert len(row["form_text_version"]) == 12
    assert row["source_origin"] == ""
    assert row["confirmation_evidence"] == (
        f"double opt-in link followed at {row['confirmed_at']} from 198.51.100.9"
    )


def test_consent_columns_name_the_embedding_page_and_say_what_confirmed_each_row(
    app, client, runner, newsletter, session
):
    client.post(
        "/n/briefing/subscribe",
        data={"email": "embedded@example.com"},
        headers={"Origin": "https://blog.example.net"},
    )
    client.post(
        "/n/briefing/subscribe",
        data={"email": "waiting@example.com"},
        headers={"Referer": "https://shop.example.org:8443/page?x=1"},
    )
    confirm(app, client, session, "embedded@example.com", ip="2001:db8::5")
    imported = "email,status,confirmed_at,confirm_ip,source\r\n" + (
        "old@example.com,confirmed,2020-01-02T03:04:05Z,192.0.2.1,legacy-list\r\n"
        "bare@example.com,confirmed,2020-01-02T03:04:05Z,,\r\n"
    )
    result = runner.invoke(args=["import", "briefing", "-"], input=imported)
    assert result.exit_code == 0, result.output

    rows = {row["email"]: row for row in export_rows(runner, "--status", "all")}

    embedded = rows["embedded@example.com"]
    assert embedded["source_origin"] == "https://blog.example.net"
    assert embedded["confirmation_evidence"] == (
        f"double opt-in link followed at {embedded['confirmed_at']} from 2001:db8::5"
    )
    assert rows["waiting@example.com"]["source_origin"] == "https://shop.example.org:8443"
    assert rows["waiting@example.com"]["confirmation_evidence"] == ""
    assert rows["old@example.com"]["confirmation_evidence"] == (
        "imported as confirmed at 2020-01-02T03:04:05Z from 192.0.2.1"
    )
    assert rows["bare@example.com"]["confirmation_evidence"] == (
        "imported as confirmed at 2020-01-02T03:04:05Z"
    )
    assert rows["old@example.com"]["form_text_version"] == ""
    assert rows["old@example.com"]["source_origin"] == ""
    # JSON Lines carry the same three fields.
    lines = export_text(runner, "--status", "all", "--format", "jsonl").splitlines()
    objects = {o["email"]: o for o in map(json.loads, lines)}
    assert objects["embedded@example.com"] == embedded


def test_timestamps_are_iso_8601_utc_and_empty_where_unknown(
    app, client, runner, newsletter, session
):
    sign_up(client, "pending@example.com")
    [row] = export_rows(runner, "--status", "pending")
    assert ISO_UTC.match(row["optin_at"])
    parsed = datetime.strptime(row["optin_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - parsed).total_seconds()) < 60
    assert row["confirmed_at"] == row["confirm_ip"] == row["unsubscribed_at"] == ""


def test_default_is_confirmed_and_status_option_filters(app, client, runner, newsletter, session):
    for email in ("confirmed@example.com", "pending@example.com", "gone@example.com"):
        sign_up(client, email)
    confirm(app, client, session, "confirmed@example.com")
    session.execute(
        sa.update(Subscription)
        .where(Subscription.id == subscription_of(session, "gone@example.com").id)
        .values(status=Status.UNSUBSCRIBED, unsubscribed_at=datetime.now(UTC))
    )

    def emails(*options):
        return [row["email"] for row in export_rows(runner, *options)]

    assert emails() == ["confirmed@example.com"]
    assert emails("--status", "confirmed") == ["confirmed@example.com"]
    assert emails("--status", "pending") == ["pending@example.com"]
    assert emails("--status", "unsubscribed") == ["gone@example.com"]
    assert emails("--status", "all") == [
        "confirmed@example.com",
        "pending@example.com",
        "gone@example.com",
    ]


def test_unknown_status_is_refused_with_the_choices(runner, newsletter):
    result = runner.invoke(args=["export", "briefing", "--status", "bounced"])
    assert result.exit_code == 2
    assert "'confirmed', 'pending', 'unsubscribed', 'all'" in result.output


def test_only_the_named_newsletters_subscriptions_are_exported(
    app, client, runner, newsletter, session
):
    runner.invoke(args=["newsletter", "create", "digest", "--name", "Weekly Digest"])
    sign_up(client, "briefing@example.com")
    response = client.post("/n/digest/subscribe", data={"email": "digest@example.com"})
    assert response.status_code == 303
    assert [r["email"] for r in export_rows(runner, "--status", "all")] == ["briefing@example.com"]


def test_unsubscribe_url_starts_with_base_url_and_unsubscribes_in_one_click(
    app, client, runner, newsletter, session
):
    sign_up(client, "reader@example.com")
    confirm(app, client, session, "reader@example.com")
    [row] = export_rows(runner)
    assert row["unsubscribe_url"].startswith("https://news.example.org/unsubscribe/")

    response = client.post(
        urlsplit(row["unsubscribe_url"]).path, data={"List-Unsubscribe": "One-Click"}
    )
    assert response.status_code == 200
    assert subscription_of(session, "reader@example.com").status == Status.UNSUBSCRIBED
    assert export_rows(runner) == []
    [gone] = export_rows(runner, "--status", "unsubscribed")
    assert ISO_UTC.match(gone["unsubscribed_at"])
    # The link stays the same after the change: a sending tool's copy keeps working.
    assert gone["unsubscribe_url"] == row["unsubscribe_url"]


def test_each_subscriber_gets_their_own_unsubscribe_url(app, client, runner, newsletter, session):
    for email in ("one@example.com", "two@example.com"):
        sign_up(client, email)
    first, second = export_rows(runner, "--status", "pending")
    assert first["unsubscribe_url"] != second["unsubscribe_url"]
    client.post(urlsplit(second["unsubscribe_url"]).path, data={"List-Unsubscribe": "One-Click"})
    assert subscription_of(session, "one@example.com").status == Status.PENDING
    assert subscription_of(session, "two@example.com").status == Status.UNSUBSCRIBED


@pytest.mark.parametrize(
    "name", ['=HYPERLINK("http://evil.example")', "=1+2", "+1", "-1", "@SUM(1)"]
)
def test_names_that_a_spreadsheet_would_run_are_neutralised_in_csv(
    client, runner, newsletter, name
):
    sign_up(client, "reader@example.com", name=name)
    [row] = export_rows(runner, "--status", "pending")
    assert row["name"] == "'" + name


def test_an_address_that_starts_like_a_formula_is_neutralised_too(client, runner, newsletter):
    sign_up(client, "-2+3@example.com")
    [row] = export_rows(runner, "--status", "pending")
    assert row["email"] == "'-2+3@example.com"


@pytest.mark.parametrize(
    ("value", "safe"),
    [
        ("\tcmd", "'\tcmd"),
        ("\r=1+2", "'\r=1+2"),
        ("=1+2", "'=1+2"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@A1", "'@A1"),
        ("Ada", "Ada"),
        ("a=b", "a=b"),
        ("", ""),
    ],
)
def test_neutralise_prefixes_only_cells_that_start_like_a_formula(value, safe):
    assert exports.neutralise(value) == safe


def test_json_lines_carry_the_same_fields_as_the_csv(app, client, runner, newsletter, session):
    sign_up(client, "ada@example.com", name="Ada")
    sign_up(client, "bob@example.com")
    confirm(app, client, session, "ada@example.com")

    lines = export_text(runner, "--status", "all", "--format", "jsonl").splitlines()
    objects = [json.loads(line) for line in lines]
    assert [list(o) for o in objects] == [list(exports.COLUMNS)] * 2
    assert objects == export_rows(runner, "--status", "all")
    assert objects[0]["status"] == "confirmed" and objects[1]["status"] == "pending"


def test_address_flags_and_language_follow_the_consent_columns_in_csv_and_json_lines(
    client, runner, newsletter, session
):
    for email in ("flagged@example.com", "plain@example.com"):
        sign_up(client, email)
    # As the signup's address checks and language choice store them (or an older row).
    for email, flags, language in [
        ("flagged@example.com", "disposable role", "uk"),
        ("plain@example.com", None, None),
    ]:
        session.execute(
            sa.update(Subscription)
            .where(Subscription.subscriber.has(email=email))
            .values(address_flags=flags, language=language)
        )
    session.commit()

    assert exports.COLUMNS[-7:-5] == ("address_flags", "language")
    csv_rows = export_rows(runner, "--status", "all")
    jsonl = export_text(runner, "--status", "all", "--format", "jsonl").splitlines()
    for rows in (csv_rows, [json.loads(line) for line in jsonl]):
        assert [(r["email"], r["address_flags"], r["language"]) for r in rows] == [
            ("flagged@example.com", "disposable role", "uk"),
            ("plain@example.com", "", ""),
        ]
    lines = export_text(runner, "--status", "all").splitlines()
    # Then the attribution columns (tests/subscriptions/test_attribution.py).
    assert lines[1].endswith(",disposable role,uk,,,,,unverified")
    assert lines[2].endswith(",,,,,,,unverified")


def test_json_lines_keep_a_formula_like_name_as_typed(client, runner, newsletter):
    # JSON is data, not a spreadsheet: the receiving program gets the name the reader gave.
    sign_up(client, "reader@example.com", name="=1+2")
    [line] = export_text(runner, "--status", "pending", "--format", "jsonl").splitlines()
    assert json.loads(line)["name"] == "=1+2"


def test_output_option_writes_the_file_and_nothing_to_stdout(client, runner, newsletter, tmp_path):
    sign_up(client, "jörg@bücher.example", name="Jörg")
    target = tmp_path / "list.csv"
    result = runner.invoke(args=["export", "briefing", "--status", "all", "-o", str(target)])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    to_stdout = runner.invoke(args=["export", "briefing", "--status", "all"])
    assert target.read_bytes() == to_stdout.stdout_bytes
    assert "jörg@bücher.example,Jörg,pending" in target.read_text(encoding="utf-8")


def test_unknown_newsletter_is_a_clear_error_and_writes_no_file(runner, newsletter, tmp_path):
    target = tmp_path / "list.csv"
    result = runner.invoke(args=["export", "nope", "-o", str(target)])
    assert result.exit_code != 0
    assert "there is no newsletter 'nope'" in result.output
    assert "Traceback" not in result.output
    assert not target.exists()


def test_every_row_is_exported_once_and_in_order_across_batches(
    app, client, runner, newsletter, session, monkeypatch
):
    monkeypatch.setattr(exports, "BATCH", 3)
    emails = [f"reader{i:02d}@example.com" for i in range(10)]
    for email in emails:
        sign_up(client, email)
    for email in emails[::2]:
        confirm(app, client, session, email)

    assert [r["email"] for r in export_rows(runner, "--status", "all")] == emails
    assert [r["email"] for r in export_rows(runner)] == emails[::2]
    assert [r["email"] for r in export_rows(runner, "--status", "pending")] == emails[1::2]
    jsonl = export_text(runner, "--status", "all", "--format", "jsonl").splitlines()
    assert [json.loads(line)["email"] for line in jsonl] == emails


def test_a_list_that_fills_whole_batches_ends_cleanly(client, runner, newsletter, monkeypatch):
    monkeypatch.setattr(exports, "BATCH", 3)
    emails = [f"reader{i}@example.com" for i in range(6)]
    for email in emails:
        sign_up(client, email)
    assert [r["email"] for r in export_rows(runner, "--status", "pending")] == emails


def test_signups_go_on_while_an_export_is_being_streamed(
    app, client, newsletter, settings, session, monkeypatch
):
    # An export may take minutes (a slow pipe, a long list); meanwhile it must not hold a lock
    # that signups wait for. A second app instance stands for the web server's process.
    monkeypatch.setattr(exports, "BATCH", 2)
    for i in range(4):
        sign_up(client, f"early{i}@example.com")
    web = create_app(settings)
    try:
        with app.app_context():
            briefing = db.session().scalar(
                sa.select(Newsletter).where(Newsletter.slug == "briefing")
            )
            rows = exports.records(db.session(), briefing, "all")
            first = next(rows)
            started = time.monotonic()
            sign_up(web.test_client(), "during@example.com")
            assert time.monotonic() - started < 5
            rest = list(rows)
    finally:
        with web.app_context():
            db.engine().dispose()
    emails = [row["email"] for row in [first, *rest]]
    assert emails[:4] == [f"early{i}@example.com" for i in range(4)]
    assert subscription_of(session, "during@example.com").status == Status.PENDING


# Cells a person, an old import or a hand edit may have left in the database: formula-like,
# quoted, multi-line, unicode, empty, and the characters the SQLite path joins cells with.
AWKWARD = [
    None,
    "",
    "Ada",
    "Jörg Müller",
    "名前 😀",
    "=1+2",
    "+1",
    "-1",
    "@SUM(1)",
    "\tcmd",
    "\r=cmd",
    "Smith, John",
    'say "hi"',
    "two\nlines",
    "carriage\rreturn",
    "tab\tinside",
    "\\back\\slash",
    "'quoted already",
    " spaced ",
    "unit\x1fsep",
    "record\x1esep",
    ",=both",
    '"',
    ",",
]
# Where signups came from, as browsers send it: a campaign may start like a formula.
PAGES = [None, "https://news.example.org/a?utm_campaign=x", 'http://x.example/p,"q"']
CAMPAIGNS = [None, "spring", "=cmd", "-sale", 'a,b "c"', "весна"]
VERIFICATIONS = [None, "proof", "unverified"]
UTM_COLUMNS = ("utm_source", "utm_medium", "utm_campaign")
SOURCES = ["form", "embed", "api", "import", "import:legacy,list", "import:=cmd", "-x", '@"q"']
IPS = [None, "203.0.113.7", "2001:db8::1", "", "1,2"]
MOMENTS = [
    None,
    datetime(2023, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(2000, 1, 1, tzinfo=UTC),
    datetime(2026, 6, 15, 12, 30, 45, 123456, tzinfo=UTC),
]
# What a hand edit may have left in the consent columns' sources, beside what the app writes.
ORIGINS = [
    None,
    "https://blog.example.net",
    "",
    "http://a,b.example",
    'http://say"hi".example',
    "=cmd",
    "http://two\nlines",
    "http://unit\x1fsep",
    "http://carriage\rreturn",
]
DIGESTS = [None, "0123456789abcdef" * 4, "", "short"]
FLAGS = [None, "role", "typo disposable", "no_mx", "unchecked", "disposable role", ""]
LANGUAGES = [None, "en", "uk"]
OLD_KEY = "an-old-key-longer-than-a-sha256-block-" + "x" * 40
DROPPED_KEY = "a-key-nobody-honours-any-more"


def add_varied_rows(session, newsletter_id, current_key, rows=300):
    """Add ``rows`` subscriptions with every awkward cell and every kind of token."""
    for i in range(rows):
        prefix = ["", "-", "+", "=", "@", "\t", '"a,b"'][i % 7] if i % 3 == 0 else ""
        subscriber = Subscriber(email=f"{prefix}reader{i}@exämple.com")
        token = None
        kind = i % 6  # current key, old key, unrecorded (current), unrecorded (old), dropped, none
        if kind != 5:
            key = [current_key, OLD_KEY, current_key, OLD_KEY, DROPPED_KEY][kind]
            salt = f"{i:032x}"
            token = Token(
                purpose=TokenPurpose.UNSUBSCRIBE,
                subscriber=subscriber,
                salt=salt,
                key_id=None if kind in (2, 3) else tokens.key_id(key),
                digest=tokens.digest_of(tokens.mac(key.encode(), TokenPurpose.UNSUBSCRIBE, salt)),
            )
        session.add(
            Subscription(
                newsletter_id=newsletter_id,
                subscriber=subscriber,
                status=list(Status)[i % 3],
                name=AWKWARD[i % len(AWKWARD)],
                source=SOURCES[i % len(SOURCES)],
                optin_at=MOMENTS[i % 4],
                optin_ip=IPS[i % 5],
                confirmed_at=MOMENTS[(i + 1) % 4],
                confirm_ip=IPS[(i + 2) % 5],
                unsubscribed_at=MOMENTS[(i + 3) % 4],
                unsubscribe_token=token,
                origin=ORIGINS[i % len(ORIGINS)],
                text_digest=DIGESTS[i % len(DIGESTS)],
                confirmation_mailed_at=MOMENTS[(i // 2) % 4],
                address_flags=FLAGS[i % len(FLAGS)],
                language=LANGUAGES[i % len(LANGUAGES)],
                page=PAGES[i % len(PAGES)],
                utm_source=CAMPAIGNS[i % len(CAMPAIGNS)],
                utm_medium=CAMPAIGNS[(i + 1) % len(CAMPAIGNS)],
                utm_campaign=CAMPAIGNS[(i + 2) % len(CAMPAIGNS)],
                verification=VERIFICATIONS[i % len(VERIFICATIONS)],
            )
        )
    session.commit()


def reference_rows(session, newsletter_id, status):
    """Render each row straightforwardly, from the ORM's objects, as the export promises."""

    def iso(moment):
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else ""

    query = (
        sa.select(Subscription)
        .where(Subscription.newsletter_id == newsletter_id)
        .order_by(Subscription.id)
    )
    if status != "all":
        query = query.where(Subscription.status == Status(status))
    session.expire_all()

    def confirmation(subscription):
        if subscription.confirmed_at is None:
            return ""
        how = (
            "double opt-in link followed"
            if subscription.source in exports.OWN_SOURCES
            or subscription.confirmation_mailed_at is not None
            else "imported as confirmed"
        )
        ip = f" from {subscription.confirm_ip}" if subscription.confirm_ip else ""
        return f"{how} at {iso(subscription.confirmed_at)}{ip}"

    for subscription in session.scalars(query):
        token = subscription.unsubscribe_token
        secret = tokens.secret_for(token) if token is not None else None
        yield {
            "email": subscription.subscriber.email,
            "name": subscription.name or "",
            "status": str(subscription.status),
            "optin_at": iso(subscription.optin_at),
            "optin_ip": subscription.optin_ip or "",
            "confirmed_at": iso(subscription.confirmed_at),
            "confirm_ip": subscription.confirm_ip or "",
            "unsubscribed_at": iso(subscription.unsubscribed_at),
            "source": subscription.source or "",
            "unsubscribe_url": f"https://news.example.org/unsubscribe/{secret}" if secret else "",
            "form_text_version": (subscription.text_digest or "")[:12],
            "source_origin": subscription.origin or "",
            "confirmation_evidence": confirmation(subscription),
            "address_flags": subscription.address_flags or "",
            "language": subscription.language or "",
            "page": subscription.page or "",
            "utm_source": subscription.utm_source or "",
            "utm_medium": subscription.utm_medium or "",
            "utm_campaign": subscription.utm_campaign or "",
            "verification": subscription.verification or "",
        }


def reference_csv(rows) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(HEADER.split(","))
    for row in rows:
        writer.writerow(
            [
                "'" + value
                if column in ("email", "name", "source", "source_origin", "page", *UTM_COLUMNS)
                and value[:1] in "=+-@\t\r"
                and value
                else value
                for column, value in row.items()
            ]
        )
    return out.getvalue().encode()


def reference_jsonl(rows) -> bytes:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode()


@pytest.mark.parametrize(
    ("current_key", "fallbacks"),
    [("test-secret", []), ("test-secret", [OLD_KEY]), ("k" * 100, [OLD_KEY])],
    ids=["one key", "rotated", "long keys"],
)
def test_export_matches_a_straightforward_rendering_byte_for_byte(
    settings, session, monkeypatch, current_key, fallbacks
):
    keyed = create_app(settings | {"SECRET_KEY": current_key, "SECRET_KEY_FALLBACKS": fallbacks})
    try:
        with keyed.app_context():
            briefing = Newsletter(slug="briefing", name="Morning Briefing")
            db.session().add(briefing)
            db.session().commit()
            add_varied_rows(session, briefing.id, current_key)
            for batch in (exports.BATCH, 7):
                monkeypatch.setattr(exports, "BATCH", batch)
                for status in exports.STATUSES:
                    rows = list(reference_rows(session, briefing.id, status))
                    for fmt, render in (("csv", reference_csv), ("jsonl", reference_jsonl)):
                        chunks = exports.export(db.session(), briefing, status, fmt)
                        assert b"".join(chunks) == render(rows), (batch, status, fmt)
                    assert list(exports.records(db.session(), briefing, status)) == rows
            counts = session.scalars(sa.select(ExportRecord.rows).order_by(ExportRecord.id))
            assert list(counts) == [100] * 6 + [300] * 2 + [100] * 6 + [300] * 2
    finally:
        with keyed.app_context():
            db.engine().dispose()


def test_the_admin_download_is_the_same_export_as_the_command_line(
    app, client, runner, newsletter, session, monkeypatch
):
    from tests.admin.conftest import PASSWORD, login

    monkeypatch.setattr(exports, "BATCH", 4)
    with app.app_context():
        briefing = db.session().scalar(sa.select(Newsletter).where(Newsletter.slug == "briefing"))
        db.session().commit()  # SQLite: the app's open transaction holds the write lock
        add_varied_rows(session, briefing.id, "test-secret", rows=30)
        editors.create(db.session(), "editor@example.com", PASSWORD, newsletters=[briefing])
        db.session().commit()
    login(client, "editor@example.com")
    for fmt in exports.FORMATS:
        response = client.get(f"/admin/n/briefing/export?status=all&format={fmt}")
        assert response.status_code == 200 and response.is_streamed
        cli = runner.invoke(args=["export", "briefing", "--status", "all", "--format", fmt])
        assert response.get_data() == cli.stdout_bytes
    logged = session.scalars(sa.select(ExportRecord).order_by(ExportRecord.id)).all()
    assert [(r.via, r.format, r.rows) for r in logged] == [
        ("admin", "csv", 30),
        ("cli", "csv", 30),
        ("admin", "jsonl", 30),
        ("cli", "jsonl", 30),
    ]
