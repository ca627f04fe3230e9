"""Confirmation and unsubscribe links: taken from the mail a reader gets, used as a reader would."""

import base64
import json
import re
import secrets
from datetime import timedelta
from email import message_from_bytes, policy
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from newsletters import exports
from newsletters.db import utcnow
from newsletters.mail import worker
from newsletters.models import (
    ConsentEvent,
    Newsletter,
    Status,
    Subscription,
    Token,
    TokenPurpose,
)

CONFIRM_LINK = re.compile(r"https://news\.example\.org/confirm/([A-Za-z0-9_-]+)")


def mailed_secrets(app) -> list[str]:
    """Run the worker with the file transport; return the confirm secrets of the new mails."""
    with app.app_context():
        worker.run(once=True)
    found = []
    for path in sorted(Path(urlsplit(app.config["MAIL_URL"]).path).glob("*.eml")):
        mail = message_from_bytes(path.read_bytes(), policy=policy.default)
        found += CONFIRM_LINK.findall(mail.get_body(("plain",)).get_content())
        path.unlink()  # read once, like an inbox
    return found


def sign_up(app, client, email="reader@example.com") -> str:
    """Sign ``email`` up to 'briefing' through the form; return the mailed confirm secret."""
    response = client.post("/n/briefing/subscribe", data={"email": email})
    assert response.status_code == 303
    [secret] = mailed_secrets(app)
    return secret


def unsubscribe_secret(app, session, email="reader@example.com") -> str:
    """Return the secret of ``email``'s unsubscribe link, as the export gives it out."""
    with app.app_context():
        newsletter = session.scalar(sa.select(Newsletter).where(Newsletter.slug == "briefing"))
        [row] = [r for r in exports.records(session, newsletter, "all") if r["email"] == email]
    prefix = "https://news.example.org/unsubscribe/"
    assert row["unsubscribe_url"].startswith(prefix)
    return row["unsubscribe_url"].removeprefix(prefix)


def subscription(session) -> Subscription:
    session.expire_all()  # see what the requests did since the last look
    return session.scalars(sa.select(Subscription)).one()


def events(session) -> list[tuple[Status, str | None]]:
    rows = session.scalars(sa.select(ConsentEvent).order_by(ConsentEvent.id))
    return [(e.status, e.source) for e in rows]


def token_uses(session) -> list:
    return session.scalars(sa.select(Token.used_at).order_by(Token.id)).all()


def test_the_mailed_link_starts_with_base_url_and_carries_at_least_128_bits(
    app, client, newsletter, session
):
    secret = sign_up(app, client)
    assert len(secret) >= 22  # 22 base64url characters hold 128 bits
    assert len(secret) == 43
    assert len(base64.urlsafe_b64decode(secret + "=")) == 32
    assert len(unsubscribe_secret(app, session)) == 43
    assert sign_up(app, client, "other@example.com") != secret


def test_opening_the_confirm_link_shows_a_button_and_changes_nothing(
    app, client, newsletter, session
):
    secret = sign_up(app, client)
    for _ in range(3):  # a mail scanner may fetch the link any number of times
        response = client.get(f"/confirm/{secret}")
        assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert f'<form method="post" action="/confirm/{secret}">' in page
    assert "Confirm subscription</button>" in page
    assert "reader@example.com" in page and "Morning Briefing" in page
    pending = subscription(session)
    assert pending.status == Status.PENDING
    assert pending.confirmed_at is None and pending.confirm_ip is None
    assert token_uses(session) == [None, None]
    assert events(session) == [(Status.PENDING, "plain")]


def test_posting_the_confirm_link_confirms_with_its_evidence(app, client, newsletter, session):
    secret = sign_up(app, client)
    before = utcnow()
    response = client.post(
        f"/confirm/{secret}",
        headers={"User-Agent": "Reader/2.0"},
        environ_base={"REMOTE_ADDR": "198.51.100.23"},
    )
    assert response.status_code == 200
    assert "Subscription confirmed" in response.get_data(as_text=True)
    confirmed = subscription(session)
    assert confirmed.status == Status.CONFIRMED
    assert before <= confirmed.confirmed_at <= utcnow()
    assert confirmed.confirm_ip == "198.51.100.23"
    event = session.scalars(
        sa.select(ConsentEvent).where(ConsentEvent.status == Status.CONFIRMED)
    ).one()
    token = session.scalars(sa.select(Token).where(Token.purpose == TokenPurpose.CONFIRM)).one()
    assert (event.ip, event.user_agent) == ("198.51.100.23", "Reader/2.0")
    assert token.used_at == confirmed.confirmed_at


def test_a_reused_confirm_link_says_already_subscribed_and_changes_nothing(
    app, client, newsletter, session
):
    secret = sign_up(app, client)
    assert client.post(f"/confirm/{secret}").status_code == 200
    confirmed_at = subscription(session).confirmed_at
    for answer in (client.post(f"/confirm/{secret}"), client.get(f"/confirm/{secret}")):
        assert answer.status_code == 200
        page = answer.get_data(as_text=True)
        assert "You are already subscribed to Morning Briefing." in page
        assert "This link cannot be used" not in page
    as_json = client.post(f"/confirm/{secret}", headers={"Accept": "application/json"})
    assert as_json.json == {
        "status": "confirmed",
        "message": "You are already subscribed to Morning Briefing.",
    }
    assert subscription(session).confirmed_at == confirmed_at
    assert [status for status, _ in events(session)] == [Status.PENDING, Status.CONFIRMED]


def test_a_used_confirm_link_of_a_subscription_that_is_pending_again_answers_410(
    app, client, newsletter, session
):
    secret = sign_up(app, client)
    client.post(f"/confirm/{secret}")
    session.execute(sa.update(Subscription).values(status=Status.PENDING))
    answer = client.post(f"/confirm/{secret}")
    assert answer.status_code == 410
    page = answer.get_data(as_text=True)
    assert "This confirmation link has already been used." in page
    assert 'href="/n/briefing">Sign up again to Morning Briefing</a>' in page


@pytest.mark.settings(CONFIRM_TTL_HOURS=1)
def test_confirm_links_expire_after_the_configured_hours(app, client, newsletter, session):
    before = utcnow()
    sign_up(app, client)
    expiries = dict(session.execute(sa.select(Token.purpose, Token.expires_at)).all())
    assert before + timedelta(hours=1) <= expiries[TokenPurpose.CONFIRM]
    assert expiries[TokenPurpose.CONFIRM] <= utcnow() + timedelta(hours=1)
    assert expiries[TokenPurpose.UNSUBSCRIBE] is None


def test_an_expired_confirm_link_answers_410_and_confirms_nothing(app, client, newsletter, session):
    secret = sign_up(app, client)
    session.execute(
        sa.update(Token)
        .where(Token.purpose == TokenPurpose.CONFIRM)
        .values(expires_at=utcnow() - timedelta(seconds=1))
    )
    for answer in (client.get(f"/confirm/{secret}"), client.post(f"/confirm/{secret}")):
        assert answer.status_code == 410
        page = answer.get_data(as_text=True)
        assert "This confirmation link has expired." in page
        assert 'href="/n/briefing">Sign up again to Morning Briefing</a>' in page
    assert subscription(session).status == Status.PENDING
    assert token_uses(session) == [None, None]
    assert events(session) == [(Status.PENDING, "plain")]


def forgeries(secret: str) -> list[str]:
    return [
        secrets.token_urlsafe(32),  # the right shape, made up
        secret[:-1],  # cut short when copied
        secret[:22],
        secret + "A",
        "A" * 500,
        "%00" + secret,
        "%C3%A9" * 20,
    ]


def test_forged_truncated_and_oversized_links_answer_404_and_change_nothing(
    app, client, newsletter, session
):
    secret = sign_up(app, client)
    unsubscribe = unsubscribe_secret(app, session)
    for forged in forgeries(secret) + forgeries(unsubscribe):
        for method in (client.get, client.post):
            confirm = method(f"/confirm/{forged}")
            assert confirm.status_code == 404, forged
            assert "This confirmation link is not valid." in confirm.get_data(as_text=True)
            leave = method(f"/unsubscribe/{forged}", data={"List-Unsubscribe": "One-Click"})
            assert leave.status_code == 404, forged
            assert "This unsubscribe link is not valid." in leave.get_data(as_text=True)
    assert subscription(session).status == Status.PENDING
    assert events(session) == [(Status.PENDING, "plain")]


def test_a_link_works_only_for_its_own_purpose(app, client, newsletter, session):
    confirm = sign_up(app, client)
    unsubscribe = unsubscribe_secret(app, session)
    for method in (client.get, client.post):
        assert method(f"/confirm/{unsubscribe}").status_code == 404
        assert method(f"/unsubscribe/{confirm}").status_code == 404
    assert subscription(session).status == Status.PENDING
    assert token_uses(session) == [None, None]


def test_opening_the_unsubscribe_link_shows_a_button_and_changes_nothing(
    app, client, newsletter, session
):
    client.post(f"/confirm/{sign_up(app, client)}")
    secret = unsubscribe_secret(app, session)
    response = client.get(f"/unsubscribe/{secret}")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert f'<form method="post" action="/unsubscribe/{secret}">' in page
    assert "Unsubscribe</button>" in page
    assert subscription(session).status == Status.CONFIRMED
    assert subscription(session).unsubscribed_at is None


def test_posting_the_unsubscribe_link_unsubscribes_and_shows_a_page(
    app, client, newsletter, session
):
    client.post(f"/confirm/{sign_up(app, client)}")
    response = client.post(
        f"/unsubscribe/{unsubscribe_secret(app, session)}",
        environ_base={"REMOTE_ADDR": "192.0.2.9"},
    )
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "You are unsubscribed" in page and "Morning Briefing" in page
    left = subscription(session)
    assert left.status == Status.UNSUBSCRIBED
    assert left.unsubscribed_at is not None
    assert events(session)[-1] == (Status.UNSUBSCRIBED, "link")


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", None])
def test_one_click_unsubscribe_answers_200_without_a_redirect(
    app, client, newsletter, session, content_type
):
    client.post(f"/confirm/{sign_up(app, client)}")
    secret = unsubscribe_secret(app, session)
    if content_type:  # RFC 8058's body, exactly as a mailbox provider posts it
        response = client.post(
            f"/unsubscribe/{secret}", data="List-Unsubscribe=One-Click", content_type=content_type
        )
    else:  # RFC 8058 also allows multipart/form-data
        response = client.post(
            f"/unsubscribe/{secret}",
            data={"List-Unsubscribe": "One-Click"},
            content_type="multipart/form-data",
        )
    assert response.status_code == 200
    assert "Location" not in response.headers
    assert subscription(session).status == Status.UNSUBSCRIBED
    assert events(session)[-1] == (Status.UNSUBSCRIBED, "one-click")


def test_unsubscribing_twice_is_harmless(app, client, newsletter, session):
    client.post(f"/confirm/{sign_up(app, client)}")
    secret = unsubscribe_secret(app, session)
    assert client.post(f"/unsubscribe/{secret}").status_code == 200
    first = subscription(session).unsubscribed_at
    again = client.post(f"/unsubscribe/{secret}", data={"List-Unsubscribe": "One-Click"})
    assert again.status_code == 200
    assert client.post(f"/unsubscribe/{secret}").status_code == 200
    assert subscription(session).unsubscribed_at == first
    assert [status for status, _ in events(session)].count(Status.UNSUBSCRIBED) == 1


def test_signing_up_again_after_leaving_needs_a_new_confirmation(app, client, newsletter, session):
    first = sign_up(app, client)
    assert client.post(f"/confirm/{first}").status_code == 200
    unsubscribe = unsubscribe_secret(app, session)
    client.post(f"/unsubscribe/{unsubscribe}")
    # Past the ten-minute throttle, the new signup earns a new mail.
    session.execute(
        sa.update(Subscription).values(confirmation_mailed_at=utcnow() - timedelta(minutes=11))
    )

    second = sign_up(app, client)
    assert second != first
    again = subscription(session)
    assert again.status == Status.PENDING
    # The earlier confirmation is history (in the consent events), not this signup's evidence.
    assert again.confirmed_at is None and again.confirm_ip is None
    assert client.post(f"/confirm/{first}").status_code == 410
    assert subscription(session).status == Status.PENDING

    assert client.post(f"/confirm/{second}").status_code == 200
    assert subscription(session).status == Status.CONFIRMED
    # The unsubscribe link never expires and is the same one as before.
    assert unsubscribe_secret(app, session) == unsubscribe
    assert [status for status, _ in events(session)] == [
        Status.PENDING,
        Status.CONFIRMED,
        Status.UNSUBSCRIBED,
        Status.PENDING,
        Status.CONFIRMED,
    ]


def test_an_unused_confirm_link_confirms_nothing_after_the_reader_left(
    app, client, newsletter, session
):
    secret = sign_up(app, client)
    client.post(f"/unsubscribe/{unsubscribe_secret(app, session)}")
    for answer in (client.get(f"/confirm/{secret}"), client.post(f"/confirm/{secret}")):
        assert answer.status_code == 410
        assert "Sign up again" in answer.get_data(as_text=True)
    assert subscription(session).status == Status.UNSUBSCRIBED
    assert subscription(session).confirmed_at is None


def test_link_secrets_are_nowhere_in_the_database(app, client, newsletter, session):
    confirm = sign_up(app, client)
    unsubscribe = unsubscribe_secret(app, session)
    client.post(f"/confirm/{confirm}")
    secret_forms = []
    for secret in (confirm, unsubscribe):
        raw = base64.urlsafe_b64decode(secret + "=")
        secret_forms += [secret, raw.hex(), base64.b64encode(raw).decode().rstrip("=")]

    connection = session.connection()
    tables = sa.MetaData()
    tables.reflect(bind=connection)
    dump = {
        table.name: [
            json.dumps(list(row), default=str) for row in connection.execute(table.select())
        ]
        for table in tables.sorted_tables
    }
    assert len(dump["outbox_message"]) == 1 and "token_id" in dump["outbox_message"][0]
    assert len(dump["token"]) == 2
    everything = "\n".join(line for rows in dump.values() for line in rows)
    for form in secret_forms:
        assert form not in everything
