"""A batch's mails, built from one prototype per set of newsletters, are the mails built alone."""

import re
from datetime import UTC, datetime
from email import message_from_bytes, policy

import pytest
import sqlalchemy as sa

from newsletters import db
from newsletters.mail import messages
from newsletters.models import OutboxMessage
from newsletters.subscriptions import processing
from tests.conftest import newsletter_with

BOUNDARY = re.compile(rb"={15}\d+==")
LONG_ASCII = "Our weekly letter, " + "with news from the whole region and beyond, " * 30
LONG_CYRILLIC = "Щотижневий лист " * 80


def queue(app, session, newsletters: list[dict], *emails: str) -> list[OutboxMessage]:
    """Add ``newsletters``, sign each of ``emails`` up to all of them, process; return the rows."""
    added = [newsletter_with(**fields) for fields in newsletters]
    session.add_all(added)
    session.commit()
    evidence = processing.Evidence(ip=None, user_agent=None, source="form")
    with app.app_context():
        for email in emails:
            request = processing.Request.of([n.id for n in added], email, None, evidence)
            processing.accept(db.session(), request)
        processing.process_due(db.session())
        db.session().commit()
    return session.scalars(sa.select(OutboxMessage).order_by(OutboxMessage.id)).all()


def built_alone(renderer: messages.Renderer, row: OutboxMessage, mail: messages.Mail) -> bytes:
    """Build the mail of ``row`` from scratch with the values ``mail`` went out with."""
    headers = message_from_bytes(mail.data, policy=policy.default)
    composed = messages.compose(
        [renderer.newsletters[n] for n in renderer.newsletter_ids(row)],
        renderer.sender,
        mail.links["confirm"].rpartition("/")[2],
        renderer.language(row, [renderer.newsletters[n] for n in renderer.newsletter_ids(row)]),
        recipient=mail.recipient,
        date=headers["Date"],
        message_id=mail.message_id,
    )
    return messages.wire(composed, utf8=mail.smtputf8)


CASES = {
    "plain": ([{"slug": "a", "name": "Morning Briefing"}], "https://news.example.org"),
    "non-ascii texts": (
        [
            {
                "slug": "b",
                "name": "Bücher & Co",
                "sender_name": "Die Bücherei",
                "confirm_subject": "Bitte bestätigen: Bücher & Co",
            }
        ],
        "https://news.example.org",
    ),
    # The text part's link line is longer than 78: quoted-printable breaks it, in the secret.
    "long base url": (
        [{"slug": "c", "name": "C"}],
        "https://newsletters.example-publisher.org/a/rather/long/prefix",
    ),
    "long editor's text": (
        [{"slug": "d", "name": "D", "confirm_body": LONG_ASCII}],
        "https://news.example.org",
    ),
    # Long lines in another script: base64, where no secret can be put in; built from scratch.
    "long cyrillic text": (
        [{"slug": "e", "name": "E", "confirm_body": LONG_CYRILLIC}],
        "https://news.example.org",
    ),
    "several newsletters": (
        [{"slug": "f", "name": "First"}, {"slug": "g", "name": "Grüße"}],
        "https://news.example.org",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_mail_of_a_batch_is_byte_for_byte_the_mail_built_alone(app, session, case):
    newsletters, base_url = CASES[case]
    app.config["BASE_URL"] = base_url
    app.config["MAIL_FROM"] = "News Desk <news@mail.example.org>"
    long_local = "a-rather-long-address-of-someone-who-reads-" + "x" * 30
    rows = queue(
        app,
        session,
        newsletters,
        "reader@example.com",
        "o'brien+news@example.com",
        f"{long_local}@example.com",  # a To header too long to keep as it is
        "reader@bücher.example",
        "jörg@bücher.example",  # needs SMTPUTF8: written as UTF-8
    )
    session.execute(
        sa.update(OutboxMessage)
        .where(OutboxMessage.id == rows[1].id)
        .values(message_id="<0123abcd@old.example>")  # a whole Message-ID, as older rows hold
    )
    session.commit()
    with app.app_context():
        worker_rows = db.session().scalars(sa.select(OutboxMessage).order_by(OutboxMessage.id))
        worker_rows = worker_rows.all()
        renderer = messages.Renderer(db.session(), worker_rows)
        for row in worker_rows:
            mail = renderer.render(row)
            alone = built_alone(renderer, row, mail)
            assert BOUNDARY.sub(b"B", mail.data) == BOUNDARY.sub(b"B", alone), row.recipient
            parsed = message_from_bytes(mail.data, policy=policy.default)
            secret = mail.links["confirm"].rpartition("/")[2]
            assert mail.links["confirm"] in parsed.get_body(("plain",)).get_content()
            assert secret in parsed.get_body(("html",)).get_content()
        # One prototype per set of newsletters, and the fast path for the ordinary mails.
        [prototype] = renderer.prototypes.values()
        assert (prototype.segments is None) == (case == "long cyrillic text")
        if case in ("long base url", "plain"):
            # The HTML part's long lines are quoted-printable, broken inside the secret.
            broken = [s for s in prototype.segments if isinstance(s, tuple) and s[1]]
            assert broken and {name for name, _ in broken} == {"secret"}


def test_each_mail_carries_its_own_link_recipient_and_message_id(app, session):
    rows = queue(app, session, [{"slug": "a", "name": "A"}], "a@example.com", "b@example.com")
    with app.app_context():
        renderer = messages.Renderer(db.session(), rows)
        first, second = (renderer.render(row) for row in rows)
    assert first.links["confirm"] != second.links["confirm"]
    for mail, row in ((first, rows[0]), (second, rows[1])):
        parsed = message_from_bytes(mail.data, policy=policy.default)
        assert parsed["To"] == row.recipient == mail.recipient
        assert parsed["Message-ID"] == f"<{row.message_id}@localhost>"
        assert mail.links["confirm"] in parsed.get_body(("plain",)).get_content()
        assert datetime.now(UTC).year == parsed["Date"].datetime.year
