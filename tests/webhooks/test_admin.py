"""Webhooks in the editors' area: only a newsletter's editors, the secret shown once, resend."""

import re

import pytest
import sqlalchemy as sa

from newsletters.models import OutboxState, Webhook
from tests.admin.conftest import csrf_token, login
from tests.webhooks.conftest import deliver, deliveries, webhook
from tests.webhooks.test_delivery import signups

PAGE = "/admin/n/briefing/webhooks"


@pytest.fixture
def editor(client, newsletter, make_editor):
    login(client, make_editor("editor@example.com", "briefing"))
    return client


def add_through_form(client, url) -> tuple[int, str]:
    response = client.post(PAGE, data={"url": url, "csrf_token": csrf_token(client, PAGE)})
    page = response.get_data(as_text=True)
    return response.status_code, page


def test_an_editor_adds_a_webhook_and_sees_its_secret_in_that_answer_only(
    editor, session, receiver
):
    status, page = add_through_form(editor, receiver.url)
    assert status == 200
    [stored] = session.scalars(sa.select(Webhook)).all()
    assert f"<code>{stored.secret}</code>" in page
    assert "shown only this once" in page
    # Not in a flash message (the session cookie), nor on the next page.
    cookie = editor.get_cookie("session")
    assert cookie is None or stored.secret not in cookie.value
    later = editor.get(PAGE).get_data(as_text=True)
    assert stored.secret not in later
    assert receiver.url in later


def test_a_refused_url_is_a_400_with_the_reason_next_to_the_field(editor, session):
    status, page = add_through_form(editor, "file:///etc/passwd")
    assert status == 400
    assert "only http:// and https:// URLs are allowed" in page
    assert session.scalar(sa.select(sa.func.count()).select_from(Webhook)) == 0


def test_adding_without_the_csrf_token_is_refused(editor, session, receiver):
    response = editor.post(PAGE, data={"url": receiver.url})
    assert response.status_code == 400
    assert session.scalar(sa.select(sa.func.count()).select_from(Webhook)) == 0


def test_an_editor_of_another_newsletter_gets_403_on_every_webhook_page(
    app,
    client,
    hooked,
    other_newsletter,
    make_editor,
    session,
):
    signups(app, "reader@example.com")
    deliver(app)
    [row] = deliveries(session, hooked)
    login(client, make_editor("other@example.com", "other"))
    token = csrf_token(client, "/admin/account/password")
    base = f"{PAGE}/{hooked}"
    for method, path in [
        ("GET", PAGE),
        ("POST", PAGE),
        ("GET", base),
        ("POST", f"{base}/remove"),
        ("POST", f"{base}/resume"),
        ("POST", f"{base}/deliveries/{row.id}/resend"),
    ]:
        response = client.open(path, method=method, data={"csrf_token": token, "url": "x"})
        assert response.status_code == 403, (method, path)
    # Their own newsletter's pages do not reach briefing's webhook either.
    response = client.get(f"/admin/n/other/webhooks/{hooked}")
    assert response.status_code == 404
    assert webhook(session, hooked) is not None
    assert deliveries(session, hooked)[0].state == OutboxState.SENT


def test_the_delivery_log_shows_each_delivery_and_resend_sends_it_again(
    app, editor, hooked, receiver, session
):
    signups(app, "one@example.com", "two@example.com")
    deliver(app)
    first, second = deliveries(session, hooked)
    page = editor.get(f"{PAGE}/{hooked}").get_data(as_text=True)
    assert first.message_id in page and second.message_id in page
    assert page.count(">sent<") == 2

    token = csrf_token(editor, PAGE)
    response = editor.post(
        f"{PAGE}/{hooked}/deliveries/{first.id}/resend", data={"csrf_token": token}
    )
    assert response.status_code == 303
    assert deliveries(session, hooked)[0].state == OutboxState.PENDING
    deliver(app)
    assert [e["email"] for e in receiver.accepted] == [
        "one@example.com",
        "two@example.com",
        "one@example.com",
    ]
    assert all(r["verified"] for r in receiver.requests)
    missing = editor.post(f"{PAGE}/{hooked}/deliveries/999999/resend", data={"csrf_token": token})
    assert missing.status_code == 404


def test_a_paused_webhook_is_shown_and_resumed_and_can_be_removed(
    app, editor, hooked, receiver, session
):
    session.execute(
        sa.update(Webhook).values(paused_at=sa.func.current_timestamp(), paused_reason="HTTP 500")
    )
    page = editor.get(PAGE).get_data(as_text=True)
    assert "paused" in page and "HTTP 500" in page
    token = csrf_token(editor, PAGE)
    response = editor.post(f"{PAGE}/{hooked}/resume", data={"csrf_token": token})
    assert response.status_code == 303
    assert webhook(session, hooked).paused_at is None
    response = editor.post(f"{PAGE}/{hooked}/remove", data={"csrf_token": token})
    assert response.status_code == 303
    assert webhook(session, hooked) is None


def test_the_dashboard_links_to_the_webhooks(editor):
    page = editor.get("/admin/n/briefing/").get_data(as_text=True)
    assert re.search(rf'href="{PAGE}"', page)
