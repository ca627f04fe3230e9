"""Importing a list: the export's own format back in, refused rows, mails, CLI and browser."""

import csv
import io
import ipaddress
import re
import threading
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime
from unittest.mock import ANY

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy.dialects.postgresql import psycopg as psycopg_dialect
from sqlalchemy.dialects.sqlite import pysqlite

from newsletters import cli, db, editors, exports, import_jobs, imports
from newsletters.db import UTCDateTime
from newsletters.models import (
    ConsentEvent,
    ExportRecord,
    Newsletter,
    OutboxMessage,
    Source,
    Status,
    Subscriber,
    Subscription,
    Token,
)
from newsletters.subscriptions import processing

COMPARED = [column for column in exports.COLUMNS if column != "unsubscribe_url"]
HEADER = ",".join(exports.COLUMNS)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def add(session, slug, email, **columns) -> Subscription:
    """Add a subscription of ``email`` to the newsletter ``slug`` as it would be stored."""
    newsletter = session.scalar(sa.select(Newsletter).where(Newsletter.slug == slug))
    subscriber = session.scalar(sa.select(Subscriber).where(Subscriber.email == email))
    subscription = Subscription(
        newsletter=newsletter, subscriber=subscriber or Subscriber(email=email), **columns
    )
    session.add(subscription)
    session.commit()
    return subscription


def export_csv(app, slug: str) -> str:
    """Return the whole list of ``slug`` (every status) as the CSV export writes it."""
    with app.app_context():
        session = db.session()
        newsletter = session.scalar(sa.select(Newsletter).where(Newsletter.slug == slug))
        return "".join(exports.csv_chunks(exports.records(session, newsletter, "all")))


def run_import(app, text: str, slug="briefing", **options) -> imports.ImportReport:
    """Import ``text`` into ``slug`` the way the CLI and the admin view do, and commit."""
    with app.app_context():
        session = db.session()
        newsletter = session.scalar(sa.select(Newsletter).where(Newsletter.slug == slug))
        report = imports.import_csv(session, newsletter, io.StringIO(text, newline=""), **options)
        session.commit()
        return report


def refusals(report) -> list[tuple[int, str, str]]:
    return [(r.line, r.email, r.reason) for r in report.refused]


def rows_of(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


def count(session, model) -> int:
    return session.scalar(sa.select(sa.func.count()).select_from(model))


@pytest.fixture
def copy(session, newsletter):
    """Add a second, empty newsletter 'copy' to import into."""
    session.add(Newsletter(slug="copy", name="Copy"))
    session.commit()
    return "copy"


def test_exported_list_imported_into_a_fresh_newsletter_exports_identically(
    app, session, newsletter, copy
):
    add(
        session,
        "briefing",
        "confirmed@example.com",
        name="Ada Lovelace",
        status=Status.CONFIRMED,
        source=Source.FORM,
        optin_at=at("2024-05-01T09:30:00"),
        optin_ip="203.0.113.5",
        confirmed_at=at("2024-05-01T09:41:07"),
        confirm_ip="2001:db8::1",
    )
    add(
        session,
        "briefing",
        "pending@example.com",
        status=Status.PENDING,
        source=Source.EMBED,
        optin_at=at("2024-06-02T10:00:00"),
        optin_ip="198.51.100.7",
    )
    add(
        session,
        "briefing",
        "left@example.com",
        name="Émile Zola",
        status=Status.UNSUBSCRIBED,
        source=Source.API,
        optin_at=at("2023-01-01T00:00:00"),
        confirmed_at=at("2023-01-01T00:05:00"),
        unsubscribed_at=at("2024-02-29T23:59:59"),
    )
    add(session, "briefing", "legacy@example.com", status=Status.CONFIRMED, source=Source.IMPORT)
    add(
        session,
        "briefing",
        "-dash@example.com",
        name='=HYPERLINK("http://evil.example","click")',
        status=Status.CONFIRMED,
        source=Source.FORM,
    )
    original = export_csv(app, "briefing")
    assert "'-dash@example.com" in original and "'=HYPERLINK" in original

    report = run_import(app, original, slug="copy")

    assert (report.taken, report.refused, report.mails_queued) == (5, [], 0)
    before, after = rows_of(original), rows_of(export_csv(app, "copy"))
    assert [[row[c] for c in COMPARED] for row in after] == [
        [row[c] for c in COMPARED] for row in before
    ]
    assert all(row["unsubscribe_url"].startswith("https://news.example.org/") for row in after)
    assert {row["unsubscribe_url"] for row in after}.isdisjoint(
        row["unsubscribe_url"] for row in before
    )
    assert count(session, Subscriber) == 5


def test_formula_neutralised_name_is_stored_as_the_name_itself(app, session, newsletter):
    name = "=SUM(A1:A9)"
    text = HEADER + "\r\n" + f"sum@example.com,'{name},confirmed,,,,,,,\r\n"

    run_import(app, text)

    assert session.scalar(sa.select(Subscription.name)) == name
    assert rows_of(export_csv(app, "briefing"))[0]["name"] == "'" + name


@pytest.mark.parametrize(
    "name",
    ["'=SUM(A1:A9)", "''+1", "'-", "'plain", "''", "=x", "@home", "'", "it's =fine"],
)
def test_the_spreadsheet_export_reads_back_every_name_as_it_was(
    app, session, newsletter, copy, name
):
    add(session, "briefing", "reader@example.com", name=name, status=Status.CONFIRMED)

    run_import(app, export_csv(app, "briefing"), slug="copy")

    stored = session.scalars(sa.select(Subscription.name).order_by(Subscription.id)).all()
    assert stored == [name, name]
    assert rows_of(export_csv(app, "copy")) == [
        {**row, "unsubscribe_url": ANY} for row in rows_of(export_csv(app, "briefing"))
    ]


def test_each_refused_row_is_reported_with_its_line_and_why(app, session, newsletter):
    text = (
        "email,name,status,optin_at,optin_ip\n"
        "good@example.com,Good,,,\n"
        "not-an-address,,,,\n"
        "bad-date@example.com,,,yesterday,\n"
        "bad-ip@example.com,,,,300.1.2.3\n"
        "bad-status@example.com,,subscribed,,\n"
        "GOOD@example.com,Again,,,\n"
        ",Nobody,,,\n"
        '"multi@example.com","two\nlines",,,\n'
        "after@example.com,,,,\n"
        "future@example.com,,,2999-01-01T00:00:00Z,\n"
        "shifted@example.com,Smith, John,confirmed,,\n"
    )

    report = run_import(app, text)

    assert report.taken == 2
    assert report.already == 0 and report.invalid == 9
    lines = {line: (email, reason) for line, email, reason in refusals(report)}
    assert sorted(lines) == [3, 4, 5, 6, 7, 8, 9, 12, 13]
    assert lines[3][0] == "not-an-address" and "@" in lines[3][1]
    assert lines[4] == (
        "bad-date@example.com",
        "optin_at “yesterday” is not an ISO 8601 time such as 2024-05-01T09:30:00Z",
    )
    assert lines[5] == (
        "bad-ip@example.com",
        "optin_ip “300.1.2.3” is not an IPv4 or IPv6 address",
    )
    assert lines[6] == (
        "bad-status@example.com",
        "status “subscribed” is not one of confirmed, pending, unsubscribed",
    )
    assert lines[7] == (
        "GOOD@example.com",
        "the address is on line 2 already; only its first row counts",
    )
    assert lines[8] == ("", "the email cell is empty")
    assert lines[9][0] == "multi@example.com" and "line breaks" in lines[9][1]
    assert "in the future" in lines[12][1]
    assert "is a value with a comma in it not quoted?" in lines[13][1]
    emails = session.scalars(sa.select(Subscriber.email).order_by(Subscriber.email)).all()
    assert emails == ["after@example.com", "good@example.com"]


def test_columns_are_matched_by_name_in_any_order_and_case(app, session, newsletter):
    text = (
        "\ufeff Source ,Unsubscribe_URL,Confirmed_At, EMAIL ,favourite colour\n"
        "form,https://elsewhere.example/u/1,2024-05-01T11:30:00+02:00,Reader@Example.COM,blue\n"
    )

    report = run_import(app, text)

    assert report.taken == 1 and report.ignored_columns == ["favourite colour"]
    subscription = session.scalar(sa.select(Subscription))
    assert subscription.subscriber.email == "reader@example.com"
    assert subscription.status == Status.CONFIRMED
    assert subscription.confirmed_at == at("2024-05-01T09:30:00")
    assert subscription.source == Source.FORM


def test_naive_times_are_taken_as_utc_and_other_sources_kept_as_given(app, session, newsletter):
    text = "email,optin_at,source\nreader@example.com,2024-05-01 09:30:00,Mailchimp\n"

    run_import(app, text)

    subscription = session.scalar(sa.select(Subscription))
    assert subscription.optin_at == at("2024-05-01T09:30:00")
    assert subscription.source == "Mailchimp"
    assert subscription.status == Status.PENDING
    [event] = session.scalars(sa.select(ConsentEvent)).all()
    assert event.source == "import"
    assert "optin_at=2024-05-01T09:30:00Z" in event.detail
    assert "source given: Mailchimp" in event.detail


def test_an_imported_source_label_is_kept_and_exported_again(app, session, newsletter, copy):
    label = "import:legacy-list-of-the-spring-2019-campaign"
    text = f"email,status,source\nold@example.com,confirmed,{label}\nbare@example.com,confirmed,\n"

    report = run_import(app, text)

    assert report.taken == 2
    sources = dict(
        session.execute(sa.select(Subscriber.email, Subscription.source).join(Subscription)).all()
    )
    assert sources == {"old@example.com": label, "bare@example.com": "import"}
    # The consent trail says the row came by import, and what the file called its source.
    events = dict(
        session.execute(
            sa.select(Subscriber.email, ConsentEvent)
            .join(Subscription, ConsentEvent.subscription_id == Subscription.id)
            .join(Subscriber)
        ).all()
    )
    assert events["old@example.com"].source == "import"
    assert events["old@example.com"].detail.endswith(f"; source given: {label}")
    assert "source given" not in events["bare@example.com"].detail
    exported = {row["email"]: row["source"] for row in rows_of(export_csv(app, "briefing"))}
    assert exported == {"old@example.com": label, "bare@example.com": "import"}
    # And round again: the label survives an export imported elsewhere.
    run_import(app, export_csv(app, "briefing"), slug="copy")
    again = {row["email"]: row["source"] for row in rows_of(export_csv(app, "copy"))}
    assert again == exported


def test_a_source_too_long_or_with_control_characters_is_refused_with_why(app, session, newsletter):
    text = (
        "email,source\n"
        f"long@example.com,{'x' * 65}\n"
        "bell@example.com,legacy\x07list\n"
        "separator@example.com,legacy\u2028list\n"
        f"fits@example.com,{'y' * 64}\n"
    )

    report = run_import(app, text)

    assert report.taken == 1
    lines = {line: reason for line, _, reason in refusals(report)}
    assert lines[2] == f"source “{'x' * 29}…” is longer than 64 characters"
    assert "contains line breaks or control characters" in lines[3]
    assert "contains line breaks or control characters" in lines[4]
    assert session.scalars(sa.select(Subscription.source)).all() == ["y" * 64]


def test_send_confirmation_keeps_the_file_s_source_label(app, session, newsletter):
    report = run_import(
        app, "email,source\nreader@example.com,import:legacy-list\n", send_confirmation=True
    )

    assert (report.taken, report.mails_queued) == (1, 1)
    subscription = session.scalar(sa.select(Subscription))
    assert subscription.source == "import:legacy-list" and subscription.status == Status.PENDING
    assert {event.source for event in subscription.events} == {"import"}
    # The import's own event says what came with the row, and that a confirmation was asked.
    details = {event.detail for event in subscription.events}
    assert (
        "imported from a CSV without evidence of consent; source given: import:legacy-list"
        "; a confirmation was requested"
    ) in details


def test_row_without_evidence_is_kept_and_its_event_says_so(app, session, newsletter):
    run_import(app, "email,status\nold@example.com,confirmed\n")

    subscription = session.scalar(sa.select(Subscription))
    assert subscription.status == Status.CONFIRMED
    assert subscription.source == Source.IMPORT
    assert subscription.optin_at is None and subscription.unsubscribe_token_id is not None
    [event] = session.scalars(sa.select(ConsentEvent)).all()
    assert (event.status, event.source) == (Status.CONFIRMED, "import")
    assert event.detail == "imported from a CSV without evidence of consent"


def test_address_already_on_the_list_is_left_unchanged_and_reported(app, session, newsletter):
    add(session, "briefing", "known@example.com", name="Kept", status=Status.UNSUBSCRIBED)
    text = "email,name,status\nknown@example.com,Changed,confirmed\nnew@example.com,,\n"

    report = run_import(app, text)

    assert (report.taken, report.already, report.invalid) == (1, 1, 0)
    assert refusals(report) == [(2, "known@example.com", "already on this list (unsubscribed)")]
    known = session.scalar(
        sa.select(Subscription).join(Subscriber).where(Subscriber.email == "known@example.com")
    )
    assert (known.name, known.status) == ("Kept", Status.UNSUBSCRIBED)


def test_subscriber_of_another_newsletter_is_reused(app, session, newsletter, copy):
    add(session, "copy", "both@example.com", status=Status.CONFIRMED)

    report = run_import(app, "email\nboth@example.com\n")

    assert report.taken == 1
    assert count(session, Subscriber) == 1 and count(session, Subscription) == 2


def test_address_listed_by_a_signup_committing_during_a_batch_is_reported_not_doubled(
    app, session, newsletter, copy
):
    # PostgreSQL: a signup has added raced@ to the list but not yet committed when the batch's
    # INSERT runs; the INSERT waits for it on the unique key, skips the row, and the import
    # reads the subscription again once it is committed (its own snapshot cannot see it).
    url = app.config["DATABASE_URL"]
    if not url.startswith("postgresql"):
        pytest.skip("SQLite: the import holds the write lock; see the test after this one")
    add(session, "copy", "raced@example.com", status=Status.CONFIRMED)
    other = sa.create_engine(url)
    signup = other.connect()
    commits = []

    def list_meanwhile(conn, cursor, statement, *args):
        if "INSERT INTO subscription" in statement and not commits:
            transaction = signup.begin()
            signup.execute(
                sa.text(
                    "INSERT INTO subscription (newsletter_id, subscriber_id, status, source,"
                    " created_at) SELECT n.id, b.id, 'pending', 'form', now()"
                    " FROM newsletter n, subscriber b"
                    " WHERE n.slug = 'briefing' AND b.email = 'raced@example.com'"
                )
            )
            commits.append(threading.Timer(0.5, transaction.commit))
            commits[0].start()

    with app.app_context():
        sa.event.listen(db.engine(), "before_cursor_execute", list_meanwhile)
        report = run_import(app, "email\nfresh@example.com\nraced@example.com\n")
    commits[0].join()
    signup.close()
    other.dispose()

    assert (report.taken, report.already) == (1, 1)
    assert refusals(report) == [(3, "raced@example.com", "already on this list (pending)")]
    assert count(session, Subscriber) == 2 and count(session, Subscription) == 3
    # Neither a token nor a consent event of the import's is left for the row it did not take.
    assert count(session, Token) == 1 and count(session, ConsentEvent) == 1


def test_a_signup_during_an_import_on_sqlite_waits_for_it_and_does_not_fail_it(
    app, session, newsletter
):
    # SQLite: from its first write the import holds the write lock, so a signup processed
    # meanwhile waits (busy_timeout) and then finds the import's subscription.
    if not app.config["DATABASE_URL"].startswith("sqlite"):
        pytest.skip("PostgreSQL: see the test before this one")
    signups, errors = [], []

    def sign_up():
        try:
            with app.app_context():
                signup_session = db.session()
                briefing = signup_session.scalar(sa.select(Newsletter))
                request = processing.Request(
                    email="raced@example.com",
                    name=None,
                    newsletter_ids=[briefing.id],
                    ip=None,
                    user_agent=None,
                    source="form",
                    form_text=None,
                    created_at=datetime.now(UTC),
                )
                processing.process(signup_session, [request])
                signup_session.commit()
        except Exception as exc:  # reported by the assertion below
            errors.append(exc)

    def sign_up_meanwhile(conn, cursor, statement, *args):
        if "INSERT INTO subscription" in statement and not signups:
            signups.append(threading.Thread(target=sign_up))
            signups[0].start()

    with app.app_context():
        sa.event.listen(db.engine(), "before_cursor_execute", sign_up_meanwhile)
        report = run_import(app, "email,status\nraced@example.com,confirmed\n")
    signups[0].join()

    assert errors == [] and (report.taken, report.already) == (1, 0)
    assert count(session, Subscription) == 1
    # The signup came after the import: a confirmed subscription stays confirmed.
    assert session.scalar(sa.select(Subscription.status)) == Status.CONFIRMED


def test_two_imports_of_the_same_addresses_at_once_both_finish_without_doubles(
    app, session, newsletter, monkeypatch
):
    # Several batches each, in opposite orders: without taking turns, each import would wait
    # in its second batch for a row the other added in its first.
    monkeypatch.setattr(imports, "BATCH", 50)
    emails = [f"reader{n}@example.com" for n in range(300)]
    files = ["email\n" + "\n".join(emails) + "\n", "email\n" + "\n".join(emails[::-1]) + "\n"]
    reports, errors = [], []

    def run(text):
        try:
            reports.append(run_import(app, text))
        except Exception as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(text,)) for text in files]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert sorted((r.taken, r.already) for r in reports) == [(0, 300), (300, 0)]
    assert count(session, Subscriber) == 300 and count(session, Subscription) == 300
    assert count(session, Token) == 300 and count(session, ConsentEvent) == 300


def test_a_repeated_address_is_refused_across_batches_with_its_first_line(
    app, session, newsletter, monkeypatch
):
    monkeypatch.setattr(imports, "BATCH", 2)
    text = (
        "email,name\n"
        "a@example.com,A\n"  # batch 1
        "b@example.com,B\n"
        "c@example.com,C\n"  # batch 2
        "A@Example.com,again in the next batch\n"
        "d@example.com,D\n"  # batch 3
        "e@example.com,E\n"
        "b@example.com,two batches later\n"  # batch 4
        "B@example.com,and again in that batch\n"
        "f@example.com,F\n"
        "f@example.com,in the batch after\n"
    )

    report = run_import(app, text)

    assert (report.taken, report.already, report.invalid) == (6, 0, 4)
    first_row_counts = "already; only its first row counts"
    assert refusals(report) == [
        (5, "A@Example.com", f"the address is on line 2 {first_row_counts}"),
        (8, "b@example.com", f"the address is on line 3 {first_row_counts}"),
        (9, "B@example.com", f"the address is on line 3 {first_row_counts}"),
        (11, "f@example.com", f"the address is on line 10 {first_row_counts}"),
    ]
    names = session.scalars(sa.select(Subscription.name).order_by(Subscription.id)).all()
    assert names == ["A", "B", "C", "D", "E", "F"]


def test_a_listed_address_repeated_in_the_file_is_reported_once_as_listed(
    app, session, newsletter, monkeypatch
):
    monkeypatch.setattr(imports, "BATCH", 2)
    add(session, "briefing", "known@example.com", status=Status.CONFIRMED)
    text = "email\nknown@example.com\nnew@example.com\nnewer@example.com\nknown@example.com\n"

    report = run_import(app, text, send_confirmation=True)

    assert refusals(report) == [
        (2, "known@example.com", "already on this list (confirmed)"),
        (5, "known@example.com", "the address is on line 2 already; only its first row counts"),
    ]
    assert (report.taken, report.already, report.mails_queued) == (2, 1, 2)
    assert count(session, OutboxMessage) == 2


def statements_into(statements: list) -> Callable:
    """Return a ``before_cursor_execute`` listener that appends each statement's text."""
    return lambda conn, cursor, statement, *args: statements.append(statement)


def _rows(first: int, n: int) -> str:
    return "email,name,status,optin_at,optin_ip\n" + "".join(
        f"reader{i}@example.com,Reader {i},confirmed,2024-05-01T09:30:00Z,2001:db8::{i:x}\n"
        for i in range(first, first + n)
    )


def test_statements_per_batch_do_not_grow_with_the_rows_of_a_batch(
    app, session, newsletter, copy, monkeypatch
):
    add(session, "briefing", "reader1@example.com", status=Status.CONFIRMED)
    add(session, "copy", "reader10001@example.com", status=Status.CONFIRMED)
    counted = []
    for slug, rows, first in (("briefing", 100, 0), ("copy", 800, 10_000)):
        monkeypatch.setattr(imports, "BATCH", rows)
        statements = []
        with app.app_context():
            listener = statements_into(statements)
            sa.event.listen(db.engine(), "before_cursor_execute", listener)
            report = run_import(app, _rows(first, 3 * rows), slug=slug)
            sa.event.remove(db.engine(), "before_cursor_execute", listener)
        assert (report.taken, report.already) == (3 * rows - 1, 1)
        counted.append(len(statements))

    assert counted[0] == counted[1], counted
    assert counted[0] <= 12 * 3 + 10, counted  # a dozen a batch at most, and a few per file


def test_memory_stays_flat_as_the_file_grows(app, session, newsletter, copy, monkeypatch):
    monkeypatch.setattr(imports, "BATCH", 250)

    def lines(first: int, n: int):
        # Made as they are read, so that the file itself takes no memory.
        yield "email,name,status,optin_at,optin_ip\n"
        for i in range(first, first + n):
            yield f"reader{i}@example.com,Reader {i},confirmed,2024-05-01T09:30:00Z,2001:db8::1\n"

    peaks = []
    with app.app_context():
        lists = {n.slug: n for n in db.session().scalars(sa.select(Newsletter))}
        imports.import_csv(db.session(), lists["briefing"], lines(100_000, 250))  # warm caches
        for first, rows in ((0, 250), (10_000, 2_000)):
            tracemalloc.start()
            try:
                report = imports.import_csv(db.session(), lists["copy"], lines(first, rows))
                peaks.append(tracemalloc.get_traced_memory()[1])
            finally:
                tracemalloc.stop()
            assert report.taken == rows
        db.session().commit()

    # Eight times the rows, in eight batches: the peak is that of one batch.
    assert peaks[1] < 1.3 * peaks[0], peaks


@hypothesis_settings(max_examples=300, deadline=None)
@given(
    number=st.integers(0, 2**128 - 1),
    form=st.sampled_from(["compressed", "exploded", "upper", "v4"]),
)
def test_an_ip_address_is_stored_as_ipaddress_writes_it(number, form):
    if form == "v4":
        text = str(ipaddress.IPv4Address(number % 2**32))
    else:
        address = ipaddress.IPv6Address(number)
        text = {"compressed": str(address), "exploded": address.exploded}.get(
            form, str(address).upper()
        )
    assert imports._ip("optin_ip", text) == str(ipaddress.ip_address(text))


@pytest.mark.parametrize(
    "text",
    [
        "01.2.3.4",
        "1.2.3.256",
        "\u0661.\u0662.\u0663.\u0664",  # Arabic-Indic digits
        "::ffff:1.2.3.4",
        "fe80::1%eth0",
        "1::2::3",
        "::1 ",
        "::1\x00",
        "\ud800::1",
        "\u0661::1",
    ],
)
def test_an_unusual_ip_address_gets_ipaddress_s_own_answer(text):
    try:
        expected = str(ipaddress.ip_address(text))
    except ValueError:
        with pytest.raises(imports._Unusable):
            imports._ip("optin_ip", text)
    else:
        assert imports._ip("optin_ip", text) == expected


@pytest.mark.parametrize(
    "text",
    ["2024-05-01T09:30:00Z", "2024-05-01T11:30:07.000012+02:00", "2024-05-01 09:30", "0001-01-01"],
)
def test_times_are_staged_as_the_column_type_stores_them(text):
    moment = datetime.fromisoformat(text)
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    stored, said = imports._time("optin_at", text, datetime.now(UTC))
    # SQLite keeps the text; PostgreSQL reads it into a timestamp.
    sqlite = pysqlite.dialect()
    assert stored == UTCDateTime().dialect_impl(sqlite).bind_processor(sqlite)(moment)
    postgresql = psycopg_dialect.dialect()
    naive = UTCDateTime().dialect_impl(postgresql).bind_processor(postgresql)(moment)
    assert datetime.fromisoformat(stored) == naive
    assert said == moment.isoformat().replace("+00:00", "Z")
    assert imports._stored_time(sqlite)(moment) == stored


def test_a_large_file_is_written_in_batches_not_a_query_per_row(
    app, session, newsletter, monkeypatch
):
    monkeypatch.setattr(imports, "BATCH", 500)
    text = "email,name\n" + "".join(f"reader{n}@example.com,Reader {n}\n" for n in range(1200))
    add(session, "briefing", "reader7@example.com", status=Status.CONFIRMED)
    statements = []
    steps = []

    with app.app_context():
        engine = db.engine()
        sa.event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
        session_ = db.session()
        newsletter_ = session_.scalar(sa.select(Newsletter))
        report = imports.import_csv(
            session_, newsletter_, io.StringIO(text, newline=""), progress=steps.append
        )
        session_.commit()

    assert (report.taken, report.already) == (1199, 1)
    assert count(session, Subscription) == 1200 and count(session, ConsentEvent) == 1199
    selects = [statement for statement in statements if statement.startswith("SELECT")]
    assert len(selects) <= 1 + 2 * 3, selects  # the newsletter, then two lookups per batch
    # A dozen set-based statements per batch at most, whatever its size (one of them reads
    # the added subscriptions' ids back, for the ledger's chained rows; one looks for erased
    # addresses).
    assert len(statements) < 48, len(statements)
    assert sum(steps) == 1201 and len(steps) == 3


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "The file is empty"),
        (b"\r\n\r\n", "The file is empty"),
        (b"address,name\nreader@example.com,Reader\n", "no “email” column (its columns: address"),
        (b"reader@example.com,Reader\n", "holds an address, not column names"),
        (b"email;name\nreader@example.com;Reader\n", "separated by semicolons, not commas"),
        ("email,name\nj\xf6rg@example.com,J\xf6rg\n".encode("latin-1"), "not UTF-8"),
        (b"email,email\nreader@example.com,reader@example.com\n", "appears twice"),
        (b",".join([b"email"] + [b"c%d" % n for n in range(200)]) + b"\n", "201 columns"),
    ],
)
def test_unusable_file_is_refused_whole_and_changes_nothing(
    app, session, newsletter, content, message
):
    with app.app_context():
        session_ = db.session()
        newsletter_ = session_.scalar(sa.select(Newsletter))
        text = io.TextIOWrapper(io.BytesIO(content), encoding="utf-8", newline="")
        with pytest.raises(imports.ImportRefused, match=re.escape(message)):
            imports.import_csv(session_, newsletter_, text)
        session_.rollback()
    assert count(session, Subscriber) == 0


def test_non_utf8_bytes_late_in_a_long_file_refuse_it_whole(app, session, newsletter):
    content = b"email\n" + b"".join(b"r%d@example.com\n" % n for n in range(2000)) + b"\xff\n"
    with app.app_context():
        session_ = db.session()
        newsletter_ = session_.scalar(sa.select(Newsletter))
        text = io.TextIOWrapper(io.BytesIO(content), encoding="utf-8", newline="")
        with pytest.raises(imports.ImportRefused, match="not UTF-8"):
            imports.import_csv(session_, newsletter_, text)
        session_.rollback()
    assert count(session, Subscriber) == 0


MIXED = (
    "email,status,confirmed_at\n"
    "confirmed@example.com,confirmed,2024-05-01T09:30:00Z\n"
    "pending@example.com,pending,\n"
    "unknown@example.com,,\n"
    "left@example.com,unsubscribed,\n"
)


def test_import_queues_no_mail_unless_asked(app, session, newsletter):
    report = run_import(app, MIXED)

    assert report.taken == 4 and report.mails_queued == 0
    assert count(session, OutboxMessage) == 0


def test_send_confirmation_mails_each_pending_row_once_through_the_signup(app, session, newsletter):
    report = run_import(app, MIXED, send_confirmation=True)

    assert (report.taken, report.mails_queued) == (4, 2)
    mails = session.scalars(sa.select(OutboxMessage.recipient).order_by("recipient")).all()
    assert mails == ["pending@example.com", "unknown@example.com"]
    statuses = dict(
        session.execute(sa.select(Subscriber.email, Subscription.status).join(Subscription)).all()
    )
    assert statuses == {
        "confirmed@example.com": Status.CONFIRMED,
        "pending@example.com": Status.PENDING,
        "unknown@example.com": Status.PENDING,
        "left@example.com": Status.UNSUBSCRIBED,
    }
    pending = session.scalar(
        sa.select(Subscription).join(Subscriber).where(Subscriber.email == "pending@example.com")
    )
    assert pending.source == Source.IMPORT and pending.optin_at is not None


def test_send_confirmation_obeys_the_signup_throttle(app, session, newsletter):
    # A signup to another newsletter a moment ago used up this address's daily budget.
    subscriber = Subscriber(
        email="busy@example.com",
        mail_window_start=datetime.now(UTC),
        mails_in_window=app.config["CONFIRM_MAILS_PER_DAY"],
    )
    session.add(subscriber)
    session.commit()

    report = run_import(app, "email\nbusy@example.com\n", send_confirmation=True)

    assert (report.taken, report.mails_queued) == (1, 0)
    assert count(session, OutboxMessage) == 0


def write(tmp_path, text: str | bytes):
    path = tmp_path / "list.csv"
    if isinstance(text, str):
        text = text.encode()
    path.write_bytes(text)
    return path


def test_cli_import_prints_the_report_and_succeeds_with_refused_rows(
    runner, session, newsletter, tmp_path
):
    add(session, "briefing", "known@example.com", status=Status.CONFIRMED)
    path = write(
        tmp_path,
        "email,name,colour\nnew@example.com,New,red\nnot-an-address,,\nknown@example.com,,\n",
    )

    result = runner.invoke(args=["import", "briefing", str(path)])

    assert result.exit_code == 0, result.output
    assert result.stdout == "taken 1, already on the list 1, refused 1\n"
    lines = result.stderr.splitlines()
    assert lines[0].startswith("line 3: not-an-address: ")
    assert lines[1] == "line 4: known@example.com: already on this list (confirmed)"
    assert lines[2] == "columns ignored: colour"
    assert count(session, Subscription) == 2


def test_cli_import_reads_stdin_and_can_send_confirmations(runner, session, newsletter):
    result = runner.invoke(
        args=["import", "briefing", "-", "--send-confirmation"],
        input=b"email\nreader@example.com\n",
    )

    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "taken 1, already on the list 0, refused 0, confirmation mails queued 1\n"
    )
    assert count(session, OutboxMessage) == 1


def test_cli_import_of_an_unusable_file_fails_and_imports_nothing(
    runner, session, newsletter, tmp_path
):
    path = write(tmp_path, b"email\nbefore@example.com\ncaf\xe9@example.com\n")

    result = runner.invoke(args=["import", "briefing", str(path)])

    assert result.exit_code == 1
    assert "list.csv: The file is not UTF-8 text." in result.stderr
    assert "Nothing was imported." in result.stderr
    assert count(session, Subscriber) == 0


def test_cli_import_into_an_unknown_newsletter_fails(runner, newsletter, tmp_path):
    result = runner.invoke(args=["import", "nope", str(write(tmp_path, "email\n"))])

    assert result.exit_code == 1
    assert "there is no newsletter 'nope'" in result.stderr


def test_cli_import_and_export_draw_a_progress_bar_only_for_a_terminal(
    runner, session, newsletter, tmp_path, monkeypatch
):
    path = write(tmp_path, "email\n" + "".join(f"r{n}@example.com\n" for n in range(1100)))
    bars = []
    original = cli._progress

    def recording(length, label, every=1):
        bars.append((length, label))
        return original(length, label, every)

    monkeypatch.setattr(cli, "_progress", recording)
    assert runner.invoke(args=["import", "briefing", str(path)]).exit_code == 0
    monkeypatch.setattr(cli, "_on_terminal", lambda: True)
    out = tmp_path / "out.csv"
    assert (
        runner.invoke(args=["export", "briefing", "--status", "all", "-o", str(out)]).exit_code == 0
    )
    path.write_text("email\nlast@example.com\n")
    result = runner.invoke(args=["import", "briefing", str(path)])

    assert result.exit_code == 0, result.output
    assert bars == [
        (None, "importing into briefing"),
        (1100, "exporting briefing"),
        (2, "importing into briefing"),
    ]
    assert len(out.read_text().splitlines()) == 1101


def test_cli_export_records_who_took_the_list(runner, session, newsletter):
    add(session, "briefing", "a@example.com", status=Status.CONFIRMED)
    add(session, "briefing", "b@example.com", status=Status.PENDING)

    result = runner.invoke(args=["export", "briefing", "--format", "jsonl"])

    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 1
    record = session.scalar(sa.select(ExportRecord))
    assert (record.via, record.editor_id, record.status, record.format, record.rows) == (
        "cli",
        None,
        "confirmed",
        "jsonl",
        1,
    )


@pytest.fixture
def editor_client(app, client, newsletter):
    """Return the test client logged in as an editor of 'briefing'."""
    with app.app_context():
        session = db.session()
        briefing = session.scalar(sa.select(Newsletter))
        editors.create(
            session, "editor@example.com", "long enough password", newsletters=[briefing]
        )
        session.commit()
    response = client.post(
        "/admin/login", data={"email": "editor@example.com", "password": "long enough password"}
    )
    assert response.status_code == 303
    return client


def upload(client, content: bytes, **fields):
    """Upload ``content``; once queued, run the job as the worker does and return its page."""
    response = client.post(
        "/admin/n/briefing/import",
        data={"file": (io.BytesIO(content), "list.csv"), **fields},
        content_type="multipart/form-data",
    )
    if response.status_code != 303:
        return response
    with client.application.app_context():
        import_jobs.run_round()
    return client.get(response.location)


@pytest.mark.settings(WTF_CSRF_ENABLED=False)
def test_editor_uploads_a_csv_and_sees_the_report(editor_client, session):
    add(session, "briefing", "known@example.com", status=Status.CONFIRMED)
    content = b"email,name\nnew@example.com,New\nnot-an-address,\nknown@example.com,\n"

    response = upload(editor_client, content, send_confirmation="y")

    page = response.get_data(as_text=True)
    assert response.status_code == 200, page
    assert "<b>1</b> rows taken" in page
    assert "<b>1</b> already on the list" in page
    assert "<b>1</b> refused" in page
    assert "1 confirmation mails queued" in page
    assert "<td>3</td><td>not-an-address</td>" in page
    assert "already on this list (confirmed)" in page
    assert count(session, OutboxMessage) == 1


@pytest.mark.settings(WTF_CSRF_ENABLED=False)
def test_editor_upload_of_an_unusable_file_shows_why(editor_client, session):
    response = upload(editor_client, b"\xff\xfee\x00m\x00a\x00i\x00l\x00\n\x00")

    assert response.status_code == 400
    assert "The file is not UTF-8 text." in response.get_data(as_text=True)
    assert count(session, Subscriber) == 0


@pytest.mark.settings(WTF_CSRF_ENABLED=False)
def test_editor_uploads_a_list_larger_than_the_limit_for_other_requests(
    app, editor_client, session
):
    rows = "".join(f"reader{i:05d}@example.com,Reader {i}\n" for i in range(5000))
    content = ("email,name\n" + rows).encode()
    assert len(content) > app.config["MAX_CONTENT_LENGTH"]

    response = upload(editor_client, content)

    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    assert count(session, Subscriber) == 5000


def erase(app, *addresses):
    """Erase each address as `newsletters erase` does, committed."""
    from newsletters import erasure
    from newsletters.ledger import Evidence

    with app.app_context():
        for address in addresses:
            erasure.erase(db.session(), address, Evidence(None, None, "cli"), "erased in a test")
        db.session().commit()


def test_an_erased_address_is_refused_with_why_and_nothing_is_stored_for_it(
    app, session, newsletter, monkeypatch
):
    monkeypatch.setattr(imports, "BATCH", 2)
    erase(app, "gone@example.com")
    text = (
        "email,name\n"
        "kept@example.com,Kept\n"
        "Gone@Example.com,Gone\n"  # batch 1, as written
        "gone@example.com,again in the same batch\n"
        "other@example.com,Other\n"  # batch 2
        "gone@example.com,a later batch\n"
    )

    report = run_import(app, text, send_confirmation=True)

    assert (report.taken, report.already, report.invalid) == (2, 0, 3)
    assert refusals(report) == [
        (3, "Gone@Example.com", imports.ERASED),
        (4, "gone@example.com", imports.ERASED),
        (6, "gone@example.com", imports.ERASED),
    ]
    assert session.scalars(sa.select(Subscriber.email).order_by(Subscriber.id)).all() == [
        "kept@example.com",
        "other@example.com",
    ]
    assert [m.recipient for m in session.scalars(sa.select(OutboxMessage))] == [
        "kept@example.com",
        "other@example.com",
    ]


def test_erased_addresses_are_looked_up_in_one_query_a_batch(app, session, newsletter, monkeypatch):
    monkeypatch.setattr(imports, "BATCH", 800)
    erase(app, "reader5@example.com", "reader900@example.com")
    statements = []
    with app.app_context():
        listener = statements_into(statements)
        sa.event.listen(db.engine(), "before_cursor_execute", listener)
        report = run_import(app, _rows(0, 1600))
        sa.event.remove(db.engine(), "before_cursor_execute", listener)

    assert report.taken == 1598
    assert [r.line for r in report.refused] == [7, 902]
    assert len([s for s in statements if "erased_address" in s]) == 2


def test_an_exported_list_with_the_consent_columns_imports_as_it_did_before(
    app, session, newsletter, copy
):
    add(
        session,
        "briefing",
        "embedded@example.com",
        status=Status.CONFIRMED,
        source=Source.EMBED,
        optin_at=at("2024-05-01T09:30:00"),
        confirmed_at=at("2024-05-01T09:41:07"),
        confirm_ip="2001:db8::1",
        origin="https://blog.example.net",
        text_digest="ab" * 32,
        confirmation_mailed_at=at("2024-05-01T09:30:01"),
    )
    exported = export_csv(app, "briefing")
    assert exported.startswith(HEADER + "\r\n")

    report = run_import(app, exported, slug="copy")

    assert (report.taken, report.refused, report.ignored_columns) == (1, [], [])
    [before] = rows_of(exported)
    [after] = rows_of(export_csv(app, "copy"))
    # The form text and the embedding page are the ledger's, not the file's: they stay behind.
    spoken_for = [c for c in COMPARED if c not in ("form_text_version", "source_origin")]
    assert [after[c] for c in spoken_for] == [before[c] for c in spoken_for]
    assert before["form_text_version"] == "ab" * 6
    assert before["source_origin"] == "https://blog.example.net"
    assert after["form_text_version"] == after["source_origin"] == ""
    assert after["confirmation_evidence"] == (
        "double opt-in link followed at 2024-05-01T09:41:07Z from 2001:db8::1"
    )
