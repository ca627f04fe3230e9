"""A mail server that is down, refuses our login, or refuses an address for good."""

import logging
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa

from newsletters.db import utcnow
from newsletters.mail import worker
from newsletters.models import (
    Newsletter,
    OutboxMessage,
    OutboxState,
    Subscription,
    Suppression,
    TransportStatus,
)

from .conftest import PASSWORD


def sign_up(client, email, slug="briefing", **headers):
    return client.post(f"/n/{slug}/subscribe", data={"email": email}, headers=headers)


def deliver(app, mail_url):
    app.config["MAIL_URL"] = mail_url
    with app.app_context():
        return worker.run(once=True)


def outbox_rows(session) -> list[OutboxMessage]:
    session.expire_all()
    return session.scalars(sa.select(OutboxMessage).order_by(OutboxMessage.id)).all()


def test_signups_go_on_while_the_mail_server_is_down_and_the_backlog_drains_once_it_is_back(
    app, client, newsletter, stoppable_smtp_server, session
):
    sink = stoppable_smtp_server.sink
    stoppable_smtp_server.stop()
    addresses = [f"reader{n}@example.com" for n in range(20)]
    started = time.monotonic()
    for address in addresses:
        response = sign_up(client, address)
        assert response.status_code == 303
        assert response.headers["Location"].endswith("/n/briefing/thanks")
    # The signups only wrote rows: nothing waited for the missing server.
    assert time.monotonic() - started < 20

    assert deliver(app, sink.url) == {"transport error": 1}
    assert deliver(app, sink.url) == {"transport error": 1}
    rows = outbox_rows(session)
    assert len(rows) == 20
    assert {(row.state, row.attempts, row.locked_until) for row in rows} == {
        (OutboxState.PENDING, 0, None)
    }

    stoppable_smtp_server.start()
    session.execute(sa.update(OutboxMessage).values(next_attempt_at=utcnow()))
    assert deliver(app, sink.url) == {"sent": 20}
    assert sorted(mail["To"] for mail in sink.messages) == sorted(addresses)
    assert len({mail["Message-ID"] for mail in sink.messages}) == 20
    assert {row.state for row in outbox_rows(session)} == {OutboxState.SENT}
    status = session.scalar(sa.select(TransportStatus))
    assert status.failures == 0 and status.recovered_at is not None


@pytest.mark.settings(OUTBOX_BACKOFF_SECONDS=5)
def test_the_worker_waits_longer_each_time_the_server_cannot_be_used_up_to_a_minute(app):
    with app.app_context():
        pauses = [worker._transport_pause(n) for n in range(1, 8)]
    assert pauses == [5, 10, 20, 40, 60, 60, 60]


@pytest.mark.settings(OUTBOX_MAX_ATTEMPTS=1)
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
def test_a_refused_login_is_the_servers_fault_not_the_mails(
    app, client, newsletter, auth_smtp_server, runner, session, caplog
):
    for address in ("a@example.com", "b@example.com"):
        assert sign_up(client, address).status_code == 303
    wrong = f"smtp://newsletters:wrong@{auth_smtp_server.host}:{auth_smtp_server.port}"
    with caplog.at_level(logging.ERROR, logger="newsletters.mail.worker"):
        for _ in range(3):
            assert deliver(app, wrong) == {"transport error": 1}
    [record, *_] = caplog.records
    assert record.levelno == logging.ERROR
    assert "535" in record.getMessage() and "login refused" in record.getMessage()

    # Three rounds with a budget of one attempt: none was spent, none was given up.
    rows = outbox_rows(session)
    assert {(row.state, row.attempts, row.last_error) for row in rows} == {
        (OutboxState.PENDING, 0, None)
    }
    status = runner.invoke(args=["outbox", "status"]).output
    assert "pending\t2\n" in status
    [line] = [line for line in status.splitlines() if line.startswith("last transport error")]
    assert f"smtp://{auth_smtp_server.host}:{auth_smtp_server.port}" in line
    assert "login refused as 'newsletters'" in line and "535" in line
    assert "3 failures in a row" in line
    assert "wrong" not in line  # the password never goes into the record

    right = f"smtp://newsletters:{PASSWORD}@{auth_smtp_server.host}:{auth_smtp_server.port}"
    assert deliver(app, right) == {"sent": 2}
    assert len(auth_smtp_server.messages) == 2
    assert "recovered" in runner.invoke(args=["outbox", "status"]).output


def test_a_refused_sender_is_the_servers_fault_not_the_mails(
    app, client, newsletter, smtp_server, session
):
    assert sign_up(client, "a@example.com").status_code == 303
    smtp_server.mail_reply = "553 5.7.1 sender not allowed to relay"
    assert deliver(app, smtp_server.url) == {"transport error": 1}
    [row] = outbox_rows(session)
    assert (row.state, row.attempts) == (OutboxState.PENDING, 0)
    assert "553" in session.scalar(sa.select(TransportStatus.last_error))


def test_an_address_refused_for_good_gets_no_more_mail_from_that_newsletter(
    app, client, newsletter, smtp_server, session
):
    session.add(Newsletter(slug="other", name="Other News"))
    session.commit()
    app.config["CONFIRM_THROTTLE_MINUTES"] = 0  # only the suppression may hold a mail back
    assert sign_up(client, "gone@example.com").status_code == 303
    smtp_server.rcpt_reply = "550 5.1.1 no such user"
    assert deliver(app, smtp_server.url) == {"failed": 1}
    [row] = outbox_rows(session)
    assert row.state == OutboxState.FAILED and "550" in row.last_error
    [suppression] = session.scalars(sa.select(Suppression)).all()
    briefing_id = session.scalar(sa.select(Newsletter.id).where(Newsletter.slug == "briefing"))
    assert (suppression.email, suppression.newsletter_id) == ("gone@example.com", briefing_id)
    assert "550" in suppression.reason and suppression.at <= utcnow()

    # The reader sees the same answer as anybody else; only no mail is queued.
    json = {"Accept": "application/json"}
    again = sign_up(client, "gone@example.com", **json)
    fresh = sign_up(client, "new@example.com", **json)
    assert (again.status_code, again.get_json()) == (fresh.status_code, fresh.get_json())
    assert [row.recipient for row in outbox_rows(session)] == [
        "gone@example.com",
        "new@example.com",
    ]
    subscription = session.scalar(
        sa.select(Subscription).where(Subscription.newsletter_id == briefing_id)
    )
    assert subscription.status == "pending"  # the signup itself is recorded

    # Another newsletter's list is its own: the address may still be asked there.
    assert sign_up(client, "gone@example.com", slug="other").status_code == 303
    assert [row.recipient for row in outbox_rows(session)][-1] == "gone@example.com"


def test_a_mail_queued_before_its_address_was_refused_is_not_sent(
    app, client, newsletter, smtp_server, session
):
    app.config["CONFIRM_THROTTLE_MINUTES"] = 0
    assert sign_up(client, "gone@example.com").status_code == 303
    assert sign_up(client, "gone@example.com").status_code == 303
    assert len(outbox_rows(session)) == 2
    smtp_server.rcpt_reply = "550 5.1.1 no such user"
    assert deliver(app, smtp_server.url) == {"failed": 2}
    # The server heard of the address once: asking it again would only hurt our reputation.
    assert len(smtp_server.envelopes) == 0
    first, second = outbox_rows(session)
    assert "550" in first.last_error
    assert "suppressed" in second.last_error


def test_a_temporary_refusal_suppresses_nothing(app, client, newsletter, smtp_server, session):
    assert sign_up(client, "busy@example.com").status_code == 303
    smtp_server.rcpt_reply = "452 4.2.2 mailbox full"
    assert deliver(app, smtp_server.url) == {"retry": 1}
    assert session.scalars(sa.select(Suppression)).all() == []


@pytest.mark.settings(OUTBOX_MAX_AGE_HOURS=1)
def test_a_mail_left_waiting_longer_than_the_maximum_age_is_dead_not_sent(
    app, client, newsletter, smtp_server, session
):
    assert sign_up(client, "late@example.com").status_code == 303
    assert sign_up(client, "fresh@example.com").status_code == 303
    session.execute(
        sa.update(OutboxMessage)
        .where(OutboxMessage.recipient == "late@example.com")
        .values(queued_at=utcnow() - timedelta(hours=2), last_error="451 try later")
    )
    assert deliver(app, smtp_server.url) == {"dead": 1, "sent": 1}
    assert [mail["To"] for mail in smtp_server.messages] == ["fresh@example.com"]
    late = {row.recipient: row for row in outbox_rows(session)}["late@example.com"]
    assert late.state == OutboxState.DEAD
    assert late.last_error == "expired: queued more than 1 hours ago; last error: 451 try later"


# (reply, whether it refuses the address itself): one rule, at RCPT TO and after the message.
REFUSALS = [
    ("550 5.1.1 no such user", True),
    ("554 5.1.1 <gone@example.com>: recipient address rejected", True),
    ("551 5.1.6 user has moved", True),
    ("553 5.1.3 bad destination mailbox address syntax", True),
    ("550 5.2.1 mailbox disabled", True),
    ("550 mailbox unavailable", True),
    ("554 5.7.1 message rejected as spam", False),
    ("550 5.7.1 relay access denied", False),
    ("552 5.2.2 mailbox full", False),
    ("552 5.3.4 message too big", False),
    ("554 transaction failed", False),
]


@pytest.mark.parametrize("stage", ["rcpt", "data"])
@pytest.mark.parametrize(("reply", "suppresses"), REFUSALS, ids=[r for r, _ in REFUSALS])
def test_a_permanent_refusal_suppresses_the_address_only_if_it_is_about_the_address(
    app, client, newsletter, smtp_server, session, stage, reply, suppresses
):
    assert sign_up(client, "gone@example.com").status_code == 303
    setattr(smtp_server, f"{stage}_reply", reply)
    assert deliver(app, smtp_server.url) == {"failed": 1}
    [row] = outbox_rows(session)
    assert row.state == OutboxState.FAILED
    assert reply.split()[0] in row.last_error and reply.split()[-1] in row.last_error
    assert smtp_server.messages == []
    suppressed = session.scalars(sa.select(Suppression.email)).all()
    assert suppressed == (["gone@example.com"] if suppresses else [])


def test_an_address_refused_after_the_message_gets_no_more_mail_from_that_newsletter(
    app, client, newsletter, smtp_server, session
):
    app.config["CONFIRM_THROTTLE_MINUTES"] = 0
    assert sign_up(client, "gone@example.com").status_code == 303
    assert sign_up(client, "gone@example.com").status_code == 303
    # A relay that checks addresses only once it has the message.
    smtp_server.data_reply = "550 5.1.1 <gone@example.com>: user unknown"
    assert deliver(app, smtp_server.url) == {"failed": 2}
    first, second = outbox_rows(session)
    assert first.last_error.startswith("message refused: 550")
    assert "suppressed" in second.last_error
    [suppression] = session.scalars(sa.select(Suppression)).all()
    assert "user unknown" in suppression.reason
    assert sign_up(client, "gone@example.com").status_code == 303
    assert len(outbox_rows(session)) == 2  # no mail queued for a suppressed address
