"""The outbox and the worker: real SMTP on loopback, files, the console, failures and retries."""

import re
from datetime import timedelta
from email import message_from_bytes, message_from_string, policy
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from newsletters import db
from newsletters.db import utcnow
from newsletters.mail import outbox, transports, worker
from newsletters.models import Newsletter, OutboxMessage, OutboxState, Source, Subscription
from newsletters.subscriptions import services
from tests.conftest import newsletter_with

CONFIRM_LINK = re.compile(r"https://news\.example\.org/confirm/[A-Za-z0-9_-]{43}")


def sign_up(client, email="reader@example.com", **fields):
    response = client.post("/n/briefing/subscribe", data={"email": email, **fields})
    assert response.status_code == 303


def deliver(app, mail_url=None, report=None):
    """Run the worker once, through ``mail_url`` if given; return its counts by outcome."""
    if mail_url:
        app.config["MAIL_URL"] = mail_url
    with app.app_context():
        return worker.run(once=True, **({"report": report} if report else {}))


def outbox_rows(session) -> list[OutboxMessage]:
    session.expire_all()  # see what the worker did since the last look
    return session.scalars(sa.select(OutboxMessage).order_by(OutboxMessage.id)).all()


def unique_part(mail) -> str:
    """Return the part of a mail's Message-ID that its outbox row stores."""
    return mail["Message-ID"].strip("<>").partition("@")[0]


def make_due_now(session) -> None:
    session.execute(sa.update(OutboxMessage).values(next_attempt_at=utcnow()))


@pytest.mark.settings(MAIL_FROM="briefing@news.example.org")
def test_confirmation_mail_arrives_over_smtp_as_text_and_html(
    app, client, newsletter, smtp_server, session
):
    sign_up(client)
    before = utcnow().replace(microsecond=0)
    assert deliver(app, smtp_server.url) == {"sent": 1}

    [mail] = smtp_server.messages
    [envelope] = smtp_server.envelopes
    [row] = outbox_rows(session)
    assert envelope.mail_from == "briefing@news.example.org"
    assert envelope.rcpt_tos == ["reader@example.com"]
    # MAIL_FROM's address, named as the newsletter.
    assert mail["From"] == "Morning Briefing <briefing@news.example.org>"
    assert mail["To"] == "reader@example.com"
    assert re.fullmatch(r"[0-9a-f]{32}", row.message_id)
    assert mail["Message-ID"] == f"<{row.message_id}@news.example.org>"
    assert before <= parsedate_to_datetime(mail["Date"]) <= utcnow()
    assert mail["Subject"] == "Confirm your subscription to Morning Briefing"
    assert mail.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in mail.iter_parts()] == ["text/plain", "text/html"]
    text = mail.get_body(("plain",)).get_content()
    html = mail.get_body(("html",)).get_content()
    [link] = CONFIRM_LINK.findall(text)
    assert f'href="{link}"' in html

    assert row.state == OutboxState.SENT
    assert row.attempts == 1
    assert before <= row.sent_at <= utcnow()
    assert row.last_error is None and row.locked_until is None


def test_the_name_typed_at_signup_is_nowhere_in_the_mail(
    app, client, newsletter, smtp_server, session
):
    sign_up(client, name="Mallory Spam Text")
    assert deliver(app, smtp_server.url) == {"sent": 1}
    [mail] = smtp_server.messages
    [envelope] = smtp_server.envelopes
    # Look at the wire bytes and at every decoded part: an encoding must not hide it.
    seen = [envelope.content.decode("utf-8", "replace"), str(mail)]
    seen += [part.get_content() for part in mail.iter_parts()]
    seen += [str(value) for _, value in mail.items()]
    for text in seen:
        for word in ("Mallory", "Spam Text"):
            assert word not in text
    # The name is kept with the subscription; it just never goes into a mail.
    assert session.scalar(sa.select(Subscription.name)) == "Mallory Spam Text"


@pytest.mark.settings(OUTBOX_BACKOFF_SECONDS=60, OUTBOX_BACKOFF_CAP_SECONDS=3600)
def test_a_temporary_failure_is_retried_later_with_a_doubling_delay(
    app, client, newsletter, smtp_server, session
):
    sign_up(client)
    smtp_server.rcpt_reply = "451 4.3.0 try again later"

    started = utcnow()
    assert deliver(app, smtp_server.url) == {"retry": 1}
    [row] = outbox_rows(session)
    assert row.state == OutboxState.PENDING
    assert row.attempts == 1
    assert row.last_error and "451" in row.last_error
    assert row.locked_until is None
    assert started + timedelta(seconds=60) <= row.next_attempt_at
    assert row.next_attempt_at <= utcnow() + timedelta(seconds=60)

    # Not due yet: a run now does not touch it, even with a working server.
    smtp_server.rcpt_reply = None
    assert deliver(app, smtp_server.url) == {}
    assert outbox_rows(session)[0].attempts == 1

    make_due_now(session)
    smtp_server.rcpt_reply = "451 4.3.0 try again later"
    started = utcnow()
    assert deliver(app, smtp_server.url) == {"retry": 1}
    [row] = outbox_rows(session)
    assert (row.state, row.attempts) == (OutboxState.PENDING, 2)
    assert started + timedelta(seconds=120) <= row.next_attempt_at
    assert row.next_attempt_at <= utcnow() + timedelta(seconds=120)

    make_due_now(session)
    smtp_server.rcpt_reply = None
    assert deliver(app, smtp_server.url) == {"sent": 1}
    [row] = outbox_rows(session)
    assert (row.state, row.attempts, row.last_error) == (OutboxState.SENT, 3, None)
    [mail] = smtp_server.messages
    assert unique_part(mail) == row.message_id


def test_an_unreachable_server_costs_the_mail_no_attempt(
    app, client, newsletter, closed_smtp_url, session
):
    sign_up(client)
    due = outbox_rows(session)[0].next_attempt_at
    for _ in range(3):
        assert deliver(app, closed_smtp_url) == {"transport error": 1}
    [row] = outbox_rows(session)
    # Nothing is wrong with the mail: it stays due, unleased and uncounted, for the next round.
    assert (row.state, row.attempts, row.locked_until) == (OutboxState.PENDING, 0, None)
    assert row.next_attempt_at == due
    assert row.last_error is None


@pytest.mark.settings(OUTBOX_BACKOFF_SECONDS=5, OUTBOX_BACKOFF_CAP_SECONDS=3600)
def test_backoff_doubles_from_the_base_up_to_the_cap(app):
    with app.app_context():
        delays = [outbox.backoff(n).total_seconds() for n in range(0, 13)]
        assert delays[:5] == [5, 5, 10, 20, 40]
        assert delays[10] == 2560
        assert delays[11:] == [3600, 3600]
        assert outbox.backoff(10_000) == timedelta(hours=1)


@pytest.mark.settings(OUTBOX_MAX_ATTEMPTS=2)
def test_a_mail_that_keeps_failing_is_given_up_as_dead_after_the_maximum_attempts(
    app, client, newsletter, smtp_server, session
):
    sign_up(client)
    smtp_server.rcpt_reply = "451 4.3.0 try again later"
    assert deliver(app, smtp_server.url) == {"retry": 1}
    make_due_now(session)
    assert deliver(app, smtp_server.url) == {"dead": 1}
    [row] = outbox_rows(session)
    assert (row.state, row.attempts) == (OutboxState.DEAD, 2)
    assert "451" in row.last_error
    # Dead is final until an operator says otherwise, however due it looks.
    smtp_server.rcpt_reply = None
    make_due_now(session)
    assert deliver(app, smtp_server.url) == {}
    assert smtp_server.messages == []


def test_a_permanent_refusal_fails_the_mail_for_good(app, client, newsletter, smtp_server, session):
    sign_up(client)
    smtp_server.rcpt_reply = "550 5.1.1 no such user"
    assert deliver(app, smtp_server.url) == {"failed": 1}
    [row] = outbox_rows(session)
    assert row.state == OutboxState.FAILED
    assert "550" in row.last_error and "no such user" in row.last_error
    assert smtp_server.messages == []

    # Even once the server would accept it, and the row looks due, it is not sent again.
    smtp_server.rcpt_reply = None
    make_due_now(session)
    assert deliver(app, smtp_server.url) == {}
    assert smtp_server.messages == []
    assert outbox_rows(session)[0].attempts == 1


def test_a_temporary_refusal_is_retried(app, client, newsletter, smtp_server, session):
    sign_up(client)
    smtp_server.rcpt_reply = "451 4.7.1 greylisted, try again later"
    assert deliver(app, smtp_server.url) == {"retry": 1}
    assert "451" in outbox_rows(session)[0].last_error
    smtp_server.rcpt_reply = None
    make_due_now(session)
    assert deliver(app, smtp_server.url) == {"sent": 1}
    assert len(smtp_server.messages) == 1


def test_a_rolled_back_signup_leaves_no_outbox_row(app, newsletter, smtp_server, session):
    with app.app_context():
        request_session = db.session()
        briefing = request_session.scalar(sa.select(Newsletter))
        result = services.signup(
            request_session,
            [briefing],
            "reader@example.com",
            None,
            services.Evidence(ip="192.0.2.1", user_agent=None, source=Source.FORM),
        )
        assert result.mail_queued
        queued = sa.select(sa.func.count()).select_from(OutboxMessage)
        assert request_session.scalar(queued) == 1
        request_session.rollback()
    assert outbox_rows(session) == []
    assert session.scalars(sa.select(Subscription)).all() == []
    assert deliver(app, smtp_server.url) == {}
    assert smtp_server.messages == []


def test_the_file_transport_writes_one_eml_per_mail(app, client, newsletter, session):
    addresses = ["a@example.com", "b@example.com", "c@example.com"]
    for address in addresses:
        sign_up(client, address)
    assert deliver(app) == {"sent": 3}
    folder = Path(urlsplit(app.config["MAIL_URL"]).path)
    files = sorted(folder.glob("*.eml"))
    assert len(files) == 3
    by_id = {row.message_id: row for row in outbox_rows(session)}
    for path in files:
        mail = message_from_bytes(path.read_bytes(), policy=policy.default)
        row = by_id.pop(unique_part(mail))
        assert path.name == row.message_id + ".eml"
        assert mail["To"] == row.recipient
        assert CONFIRM_LINK.search(mail.get_body(("plain",)).get_content())
    assert by_id == {}


def test_a_relative_file_url_writes_below_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert transports.from_url("file://mail").folder == Path("mail")
    assert transports.from_url("file://mail/out").folder == Path("mail/out")
    assert transports.from_url("file:///var/mail").folder == Path("/var/mail")
    assert transports.from_url("file://localhost/var/mail").folder == Path("/var/mail")


def test_an_unwritable_mail_folder_is_a_temporary_failure(
    app, client, newsletter, tmp_path, session
):
    sign_up(client)
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the mail folder should be")
    assert deliver(app, f"file://{blocked}") == {"retry": 1}
    [row] = outbox_rows(session)
    assert row.state == OutboxState.PENDING
    assert "not-a-folder" in row.last_error


@pytest.mark.settings(MAIL_URL="console:")
def test_the_console_transport_prints_the_mail(app, client, newsletter, capsys, session):
    sign_up(client)
    capsys.readouterr()
    assert deliver(app) == {"sent": 1}
    printed = capsys.readouterr().out
    [row] = outbox_rows(session)
    assert f"Message-ID: <{row.message_id}@localhost>" in printed
    assert "To: reader@example.com" in printed
    assert CONFIRM_LINK.search(printed)


def test_several_mails_go_over_one_smtp_connection(app, client, newsletter, smtp_server):
    for n in range(5):
        sign_up(client, f"reader{n}@example.com")
    assert deliver(app, smtp_server.url) == {"sent": 5}
    assert len(smtp_server.messages) == 5
    assert smtp_server.connections == 1
    assert sorted(m["To"] for m in smtp_server.messages) == [
        f"reader{n}@example.com" for n in range(5)
    ]


def test_confirm_links_are_reported_for_local_transports_only(app, client, newsletter, smtp_server):
    sign_up(client, "a@example.com")
    lines = []
    assert deliver(app, report=lines.append) == {"sent": 1}
    assert CONFIRM_LINK.search("\n".join(lines))

    sign_up(client, "b@example.com")
    lines.clear()
    assert deliver(app, smtp_server.url, report=lines.append) == {"sent": 1}
    assert "b@example.com" in "\n".join(lines)
    # A production log must not hold working links: they are secrets.
    assert not CONFIRM_LINK.search("\n".join(lines))


def test_worker_once_exits_0_when_everything_was_sent(app, runner, client, newsletter, session):
    sign_up(client)
    result = runner.invoke(args=["worker", "--once"])
    assert result.exit_code == 0, result.output
    assert "'sent': 1" in result.output
    assert outbox_rows(session)[0].state == OutboxState.SENT
    again = runner.invoke(args=["worker", "--once"])
    assert again.exit_code == 0
    assert "nothing due" in again.output


def test_worker_once_exits_non_zero_when_a_mail_is_left_for_retry(
    app, runner, client, newsletter, closed_smtp_url
):
    sign_up(client)
    app.config["MAIL_URL"] = closed_smtp_url
    result = runner.invoke(args=["worker", "--once"])
    assert result.exit_code == 1
    assert "will retry" in result.output
    assert "transport error" in result.output


def test_an_idna_domain_goes_out_in_ascii_even_without_smtputf8(
    app, client, newsletter, ascii_smtp_server
):
    sign_up(client, "reader@bücher.example")
    assert deliver(app, ascii_smtp_server.url) == {"sent": 1}
    [envelope] = ascii_smtp_server.envelopes
    assert envelope.rcpt_tos == ["reader@xn--bcher-kva.example"]
    assert not envelope.smtp_utf8
    assert ascii_smtp_server.messages[0]["To"] == "reader@xn--bcher-kva.example"


def test_a_domain_with_sharp_s_keeps_its_own_idna_2008_form(
    app, client, newsletter, ascii_smtp_server
):
    # IDNA 2003 (Python's "idna" codec) would map straße.de to strasse.de: another domain.
    sign_up(client, "reader@straße.de")
    assert deliver(app, ascii_smtp_server.url) == {"sent": 1}
    [envelope] = ascii_smtp_server.envelopes
    assert envelope.rcpt_tos == ["reader@xn--strae-oqa.de"]
    assert ascii_smtp_server.messages[0]["To"] == "reader@xn--strae-oqa.de"


def test_an_internationalised_address_goes_out_with_smtputf8(
    app, client, newsletter, smtp_server, session
):
    sign_up(client, "jörg@bücher.example")
    assert deliver(app, smtp_server.url) == {"sent": 1}
    [envelope] = smtp_server.envelopes
    assert envelope.smtp_utf8
    assert envelope.rcpt_tos == ["jörg@xn--bcher-kva.example"]
    # RFC 6532: the header is raw UTF-8 (Python's byte parser would not decode it).
    mail = message_from_string(envelope.content.decode("utf-8"), policy=policy.default)
    assert mail["To"].addresses[0].username == "jörg"
    assert mail["To"].addresses[0].domain == "xn--bcher-kva.example"
    assert CONFIRM_LINK.search(mail.get_body(("plain",)).get_content())
    [row] = outbox_rows(session)
    assert row.state == OutboxState.SENT


def test_an_internationalised_address_fails_for_good_without_smtputf8(
    app, client, newsletter, ascii_smtp_server, session
):
    sign_up(client, "jörg@bücher.example")
    assert deliver(app, ascii_smtp_server.url) == {"failed": 1}
    [row] = outbox_rows(session)
    assert row.state == OutboxState.FAILED
    assert "SMTPUTF8" in row.last_error
    assert ascii_smtp_server.messages == []


def test_a_claimed_row_carries_its_counted_attempt_even_if_the_session_held_it(
    app, client, newsletter
):
    sign_up(client)
    with app.app_context():
        worker_session = db.session()
        [held] = worker_session.scalars(sa.select(OutboxMessage)).all()
        assert held.attempts == 0
        [claimed] = outbox.claim_due(worker_session)
        assert claimed is held
        assert claimed.attempts == 1
        assert claimed.locked_until is not None
        worker_session.commit()
        # Leased: a second worker finds nothing to take.
        assert outbox.claim_due(worker_session) == []


def test_parallel_workers_take_different_rows(app, client, newsletter):
    for n in range(2):
        sign_up(client, f"reader{n}@example.com")
    with app.app_context():
        first = db.session()
        mine = [message.id for message in outbox.claim_due(first, limit=1)]
        if db.engine().dialect.name == "sqlite":
            first.commit()  # SQLite serialises writers: the second would wait for this commit
        # On PostgreSQL the first lease is not committed yet: SKIP LOCKED passes it by.
        with Session(db.engine()) as second:
            theirs = [message.id for message in outbox.claim_due(second, limit=1)]
            second.commit()
        first.commit()
    assert len(mine) == len(theirs) == 1
    assert mine != theirs


def test_a_mail_whose_token_is_gone_fails_without_stopping_the_others(
    app, client, newsletter, smtp_server, session
):
    sign_up(client, "gone@example.com")
    sign_up(client, "kept@example.com")
    session.execute(
        sa.update(OutboxMessage)
        .where(OutboxMessage.recipient == "gone@example.com")
        .values(payload={"token_id": 999_999})
    )
    assert deliver(app, smtp_server.url) == {"failed": 1, "sent": 1}
    assert [m["To"] for m in smtp_server.messages] == ["kept@example.com"]
    states = {row.recipient: row.state for row in outbox_rows(session)}
    assert states == {"gone@example.com": OutboxState.FAILED, "kept@example.com": OutboxState.SENT}


def test_a_newsletter_subject_that_cannot_be_a_header_parks_only_its_own_mail_at_once(
    app, client, newsletter, smtp_server, session
):
    # Saved before the catalogue refused line breaks: the worker still meets such rows.
    session.add(
        newsletter_with(slug="bad", name="Bad", confirm_subject="Hi\nBcc: victim@example.com")
    )
    session.commit()
    assert client.post("/n/bad/subscribe", data={"email": "a@example.com"}).status_code == 303
    sign_up(client, "b@example.com")
    assert deliver(app, smtp_server.url) == {"failed": 1, "sent": 1}
    [mail] = smtp_server.messages
    assert mail["To"] == "b@example.com"
    assert [e.rcpt_tos for e in smtp_server.envelopes] == [["b@example.com"]]
    held = {row.recipient: row for row in outbox_rows(session)}["a@example.com"]
    assert (held.state, held.attempts) == (OutboxState.FAILED, 1)
    assert held.last_error.startswith(outbox.UNBUILT)
    assert "subject of the confirmation mail of the newsletter 'bad'" in held.last_error
    # Not tried again, however due it looks: every attempt would fail the same way.
    make_due_now(session)
    assert deliver(app, smtp_server.url) == {}
    assert outbox_rows(session)[0].attempts == 1
