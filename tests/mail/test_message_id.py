"""Every mail's Message-ID is at the sender's domain, and the same each time the mail is sent."""

import re

import pytest
import sqlalchemy as sa

from newsletters import create_app
from newsletters.config import ConfigError
from newsletters.mail import worker
from newsletters.models import OutboxMessage, OutboxState
from tests.conftest import set_texts


def sign_up(client, email="reader@example.com"):
    assert client.post("/n/briefing/subscribe", data={"email": email}).status_code == 303


def deliver(app, mail_url):
    app.config["MAIL_URL"] = mail_url
    with app.app_context():
        return worker.run(once=True)


def only_row(session) -> OutboxMessage:
    session.expire_all()
    [row] = session.scalars(sa.select(OutboxMessage)).all()
    return row


def test_the_message_id_is_at_the_domain_of_mail_from_as_the_sending_worker_has_it(
    app, client, newsletter, smtp_server, session
):
    # Queued by a web process left with the default sender; sent by a worker set up properly.
    sign_up(client)
    app.config["MAIL_FROM"] = "News Desk <news@mail.example.org>"
    assert deliver(app, smtp_server.url) == {"sent": 1}
    [mail] = smtp_server.messages
    row = only_row(session)
    assert mail["Message-ID"] == f"<{row.message_id}@mail.example.org>"
    assert re.fullmatch(r"<[0-9a-f]{32}@mail\.example\.org>", mail["Message-ID"])
    # The address of MAIL_FROM; the name is the newsletter's (tests/mail/test_mail_design.py).
    assert mail["From"] == "Morning Briefing <news@mail.example.org>"
    assert smtp_server.envelopes[0].mail_from == "news@mail.example.org"


def test_a_newsletters_sender_name_replaces_the_name_in_mail_from(
    app, client, newsletter, smtp_server, session
):
    set_texts(session, sender_name="The Briefing Desk")
    sign_up(client)
    app.config["MAIL_FROM"] = "News Desk <news@mail.example.org>"
    assert deliver(app, smtp_server.url) == {"sent": 1}
    [mail] = smtp_server.messages
    assert mail["From"] == "The Briefing Desk <news@mail.example.org>"
    assert mail["Message-ID"].endswith("@mail.example.org>")


def test_a_mail_sent_again_after_a_crash_carries_the_same_message_id(
    app, client, newsletter, smtp_server, session
):
    sign_up(client)
    assert deliver(app, smtp_server.url) == {"sent": 1}
    # As if the worker had died after the server took the mail, before it could mark it.
    session.execute(sa.update(OutboxMessage).values(state=OutboxState.PENDING, sent_at=None))
    assert deliver(app, smtp_server.url) == {"sent": 1}
    first, second = smtp_server.messages
    assert (
        first["Message-ID"] == second["Message-ID"] == f"<{only_row(session).message_id}@localhost>"
    )


def test_a_mail_queued_with_a_whole_message_id_keeps_it(
    app, client, newsletter, smtp_server, session
):
    # Rows queued before the domain was added at send time hold the whole Message-ID.
    sign_up(client)
    session.execute(sa.update(OutboxMessage).values(message_id="<0123abcd@old.example>"))
    app.config["MAIL_FROM"] = "news@mail.example.org"
    assert deliver(app, smtp_server.url) == {"sent": 1}
    assert smtp_server.messages[0]["Message-ID"] == "<0123abcd@old.example>"


@pytest.mark.parametrize("mail_from", ["", "newsletters", "a@example.org, b@example.org"])
def test_a_mail_from_that_is_not_one_address_stops_the_start_with_its_name(mail_from):
    with pytest.raises(ConfigError, match="NEWSLETTERS_MAIL_FROM must be one address"):
        create_app({"MAIL_FROM": mail_from, "SECRET_KEY": "x", "DATABASE_URL": "sqlite://"})
