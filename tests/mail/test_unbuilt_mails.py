"""A mail that can never be built is parked at once, and editors are told why."""

import pytest
import sqlalchemy as sa

from newsletters import db, editors
from newsletters.db import utcnow
from newsletters.mail import outbox, worker
from newsletters.models import Newsletter, OutboxMessage, OutboxState, Suppression
from tests.admin.conftest import PASSWORD, login

BROKEN_NAME = "Morning\r\nBcc: victim@example.com"


def sign_up(client, email, slug="briefing"):
    assert client.post(f"/n/{slug}/subscribe", data={"email": email}).status_code == 303


def deliver(app, mail_url):
    app.config["MAIL_URL"] = mail_url
    with app.app_context():
        return worker.run(once=True)


def outbox_rows(session) -> list[OutboxMessage]:
    session.expire_all()
    return session.scalars(sa.select(OutboxMessage).order_by(OutboxMessage.id)).all()


def add_editor(app, email, *slugs, is_admin=False):
    with app.app_context():
        session = db.session()
        newsletters = session.scalars(sa.select(Newsletter).where(Newsletter.slug.in_(slugs)))
        editors.create(session, email, PASSWORD, is_admin=is_admin, newsletters=list(newsletters))
        session.commit()
    return email


@pytest.fixture
def broken(session, newsletter):
    """Write a name with a line break straight into the database, as older versions let in."""
    session.execute(
        sa.update(Newsletter).where(Newsletter.slug == newsletter).values(name=BROKEN_NAME)
    )
    session.commit()
    return newsletter


def test_a_line_break_already_in_a_newsletters_name_parks_its_mails_at_once(
    app, client, broken, smtp_server, session
):
    session.add(Newsletter(slug="other", name="Other News"))
    session.commit()
    sign_up(client, "a@example.com")
    sign_up(client, "b@example.com", slug="other")
    lines = []
    app.config["MAIL_URL"] = smtp_server.url
    with app.app_context():
        assert worker.run(once=True, report=lines.append) == {"failed": 1, "sent": 1}
    assert [mail["To"] for mail in smtp_server.messages] == ["b@example.com"]
    parked, _sent = outbox_rows(session)
    assert (parked.state, parked.attempts) == (OutboxState.FAILED, 1)
    assert parked.last_error == (
        "could not be built: the name of the newsletter 'briefing' holds a line break or "
        "another control character; correct it in the newsletter's settings"
    )
    assert any("cannot be built, not sent" in line for line in lines)
    # Refused by nobody: the address is not suppressed.
    assert session.scalars(sa.select(Suppression)).all() == []
    # Not tried again however due it looks, and never given up as dead either.
    session.execute(sa.update(OutboxMessage).values(next_attempt_at=utcnow()))
    assert deliver(app, smtp_server.url) == {}
    assert outbox_rows(session)[0].attempts == 1


def test_any_value_error_while_building_parks_the_mail_with_its_reason(
    app, client, newsletter, smtp_server, session, monkeypatch
):
    def bad_data(session, message):
        raise ValueError("invalid arguments; address parts cannot contain CR or LF")

    sign_up(client, "a@example.com")
    monkeypatch.setattr(worker, "render", bad_data)
    assert deliver(app, smtp_server.url) == {"failed": 1}
    [row] = outbox_rows(session)
    assert row.state == OutboxState.FAILED
    assert row.last_error == (
        "could not be built: ValueError: invalid arguments; address parts cannot contain CR or LF"
    )


def test_the_dashboard_tells_the_newsletters_editors_why_its_mails_were_not_sent(
    app, client, broken, smtp_server, session
):
    for address in ("a@example.com", "b@example.com"):
        sign_up(client, address)
    assert deliver(app, smtp_server.url) == {"failed": 2}
    login(client, add_editor(app, "editor@example.com", "briefing"))
    page = client.get("/admin/n/briefing/").get_data(as_text=True)
    assert (
        "2 confirmation mails could not be built: the name of the newsletter &#39;briefing&#39; "
        "holds a line break or another control character" in page
    )
    assert 'href="/admin/n/briefing/settings"' in page

    session.add(Newsletter(slug="other", name="Other News"))
    session.commit()
    login(client, add_editor(app, "admin@example.com", is_admin=True))
    assert "could not be built" not in client.get("/admin/n/other/").get_data(as_text=True)


def test_the_outbox_page_shows_which_newsletters_mails_could_not_be_built_and_why(
    app, client, broken, smtp_server, session
):
    sign_up(client, "a@example.com")
    assert deliver(app, smtp_server.url) == {"failed": 1}
    login(client, add_editor(app, "admin@example.com", is_admin=True))
    page = client.get("/admin/outbox").get_data(as_text=True)
    assert "Mails that could not be built" in page
    assert '<a href="/admin/n/briefing/settings">briefing</a>' in page
    assert "1 mail, the latest queued" in page
    assert "the name of the newsletter &#39;briefing&#39; holds a line break" in page


def test_once_the_name_is_corrected_a_retried_mail_goes_out(
    app, client, runner, broken, smtp_server, session
):
    sign_up(client, "a@example.com")
    assert deliver(app, smtp_server.url) == {"failed": 1}
    with app.app_context():
        assert outbox.unbuilt(db.session())[0].mails == 1
    session.execute(sa.update(Newsletter).values(name="Morning Briefing"))
    session.commit()
    [row] = outbox_rows(session)
    assert runner.invoke(args=["outbox", "retry", "--id", str(row.id), "--failed"]).exit_code == 0
    assert deliver(app, smtp_server.url) == {"sent": 1}
    [mail] = smtp_server.messages
    assert mail["Subject"] == "Confirm your subscription to Morning Briefing"
    with app.app_context():
        assert outbox.unbuilt(db.session()) == []
