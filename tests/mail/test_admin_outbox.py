"""The admins' outbox page: dead and failed mails with their errors, and a retry button."""

import re

import pytest
import sqlalchemy as sa

from newsletters import db, editors
from newsletters.mail import worker
from newsletters.models import OutboxMessage, OutboxState
from tests.admin.conftest import PASSWORD, login


def sign_up(client, email):
    assert client.post("/n/briefing/subscribe", data={"email": email}).status_code == 303


def deliver(app, mail_url):
    app.config["MAIL_URL"] = mail_url
    with app.app_context():
        return worker.run(once=True)


def add_editor(app, email, *, is_admin):
    with app.app_context():
        editors.create(db.session(), email, PASSWORD, is_admin=is_admin, newsletters=[])
        db.session().commit()
    return email


def page_token(page: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def state_of(session, recipient) -> OutboxState:
    session.expire_all()
    return session.scalar(
        sa.select(OutboxMessage.state).where(OutboxMessage.recipient == recipient)
    )


@pytest.fixture
def given_up(app, client, newsletter, smtp_server, session):
    """Leave a dead mail and a failed one, as the worker would."""
    app.config["OUTBOX_MAX_ATTEMPTS"] = 1
    sign_up(client, "dead@example.com")
    smtp_server.rcpt_reply = "451 4.3.0 greylisted <b>now</b>"
    assert deliver(app, smtp_server.url) == {"dead": 1}
    sign_up(client, "refused@example.com")
    smtp_server.rcpt_reply = "550 5.1.1 no such user"
    assert deliver(app, smtp_server.url) == {"failed": 1}
    smtp_server.rcpt_reply = None
    session.expire_all()
    return {row.recipient: row.id for row in session.scalars(sa.select(OutboxMessage))}


def test_an_admin_sees_dead_and_failed_mails_with_their_last_errors(app, client, given_up):
    login(client, add_editor(app, "admin@example.com", is_admin=True))
    response = client.get("/admin/outbox")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "dead@example.com" in page and "refused@example.com" in page
    assert "recipient refused: 550" in page and "5.1.1 no such user" in page
    # An error text is the server's: shown as text, never as markup.
    assert "&lt;b&gt;now&lt;/b&gt;" in page and "<b>now</b>" not in page
    assert page.count('name="id"') == 2
    assert 'href="/admin/outbox"' in page  # in the admins' navigation


def test_an_admin_retries_one_mail_and_it_goes_out(app, client, given_up, smtp_server, session):
    login(client, add_editor(app, "admin@example.com", is_admin=True))
    token = page_token(client.get("/admin/outbox").get_data(as_text=True))
    response = client.post(
        "/admin/outbox/retry", data={"id": given_up["refused@example.com"], "csrf_token": token}
    )
    assert response.status_code == 303
    assert response.headers["Location"] == "/admin/outbox"
    assert "Queued again: 1 mails." in client.get("/admin/outbox").get_data(as_text=True)
    assert state_of(session, "refused@example.com") == OutboxState.PENDING
    assert state_of(session, "dead@example.com") == OutboxState.DEAD
    assert deliver(app, smtp_server.url) == {"sent": 1}


def test_an_admin_retries_every_dead_mail_at_once(app, client, given_up, session):
    login(client, add_editor(app, "admin@example.com", is_admin=True))
    token = page_token(client.get("/admin/outbox").get_data(as_text=True))
    response = client.post("/admin/outbox/retry", data={"all_dead": "1", "csrf_token": token})
    assert response.status_code == 303
    assert state_of(session, "dead@example.com") == OutboxState.PENDING
    assert state_of(session, "refused@example.com") == OutboxState.FAILED


def test_a_retry_without_the_forms_token_changes_nothing(app, client, given_up, session):
    login(client, add_editor(app, "admin@example.com", is_admin=True))
    response = client.post("/admin/outbox/retry", data={"all_dead": "1"})
    assert response.status_code == 400
    assert "security token" in response.get_data(as_text=True)
    assert state_of(session, "dead@example.com") == OutboxState.DEAD


def test_a_retry_of_a_mail_that_is_not_given_up_is_refused_clearly(app, client, given_up, session):
    login(client, add_editor(app, "admin@example.com", is_admin=True))
    token = page_token(client.get("/admin/outbox").get_data(as_text=True))
    assert client.post("/admin/outbox/retry", data={"csrf_token": token}).status_code == 400
    bad = client.post("/admin/outbox/retry", data={"id": "x1", "csrf_token": token})
    assert bad.status_code == 400
    gone = client.post("/admin/outbox/retry", data={"id": "999999", "csrf_token": token})
    assert gone.status_code == 404 and "not dead or failed" in gone.get_data(as_text=True)


def test_an_editor_who_is_not_an_admin_may_neither_see_nor_retry(app, client, given_up, session):
    login(client, add_editor(app, "editor@example.com", is_admin=False))
    assert client.get("/admin/outbox").status_code == 403
    token = page_token(client.get("/admin/").get_data(as_text=True))
    response = client.post("/admin/outbox/retry", data={"all_dead": "1", "csrf_token": token})
    assert response.status_code == 403
    assert state_of(session, "dead@example.com") == OutboxState.DEAD
    assert 'href="/admin/outbox"' not in client.get("/admin/").get_data(as_text=True)
