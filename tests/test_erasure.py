"""Erasure: by an admin, by `newsletters erase`, by the service; then only the person's own
confirmed signup brings the address back, never an import or an API call."""

import email
import email.policy
import json
import re
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from newsletters import apikeys, db, editors, erasure, imports, tokens
from newsletters.db import Base
from newsletters.ledger import Evidence
from newsletters.models import (
    ConsentEvent,
    ErasedAddress,
    IdempotentRequest,
    LinkRequest,
    Newsletter,
    OutboxMessage,
    SignupRequest,
    Status,
    Subscriber,
    Subscription,
    Suppression,
    Token,
    TokenPurpose,
)
from newsletters.webhooks import delivery
from newsletters.webhooks import services as webhooks
from tests.admin.conftest import PASSWORD, csrf_token, login

ADDRESS = "erase.me@example.com"
SIGNUPS = "/api/v1/newsletters/{}/subscriptions"


@pytest.fixture
def other(session, newsletter):
    session.add(Newsletter(slug="other", name="Other News"))
    session.commit()
    return "other"


@pytest.fixture
def key(app, newsletter, other):
    """Return an API key of an editor of both newsletters."""
    with app.app_context():
        session = db.session()
        both = session.scalars(sa.select(Newsletter)).all()
        editor = editors.create(session, "api@example.org", PASSWORD, newsletters=both)
        _, secret = apikeys.create(session, editor, "crm")
        session.commit()
    return secret


def api_signup(client, key, slug="briefing", address=ADDRESS, **headers):
    return client.post(
        SIGNUPS.format(slug),
        headers={"Authorization": f"Bearer {key}"} | headers,
        json={"email": address},
    )


def confirm_secret(app, session, address=ADDRESS) -> str:
    token = session.scalar(
        sa.select(Token)
        .join(Subscriber)
        .where(Subscriber.email == address, Token.purpose == TokenPurpose.CONFIRM)
        .order_by(Token.id.desc())
    )
    with app.app_context():
        return tokens.secret_for(token)


def add_webhook(app) -> int:
    """Add a webhook of 'briefing' (it hears of the changes from now on); return its id."""
    with app.app_context():
        briefing = db.session().scalar(sa.select(Newsletter).where(Newsletter.slug == "briefing"))
        webhook, _ = webhooks.add(db.session(), briefing, "http://127.0.0.1:9/hook")
        db.session().commit()
        return webhook.id


def queue_webhook_deliveries(app, session, webhook_id) -> None:
    """Queue the webhook's deliveries of the changes so far, as the worker does."""
    with app.app_context():
        # On PostgreSQL the change feed waits for every older transaction on the server.
        deadline = time.monotonic() + 10
        while not delivery.fan_out(db.session())[0] and time.monotonic() < deadline:
            db.session().commit()
            time.sleep(0.05)
        db.session().commit()
    queued = session.scalars(
        sa.select(OutboxMessage).where(OutboxMessage.webhook_id == webhook_id)
    ).all()
    assert queued and all(ADDRESS in json.dumps(m.payload) for m in queued)


@pytest.fixture
def person(app, client, session, newsletter, other, key):
    """Leave ADDRESS's traces everywhere the app keeps them; return its subscription ids."""
    webhook_id = add_webhook(app)
    client.post(
        "/subscribe",
        data={"email": ADDRESS, "name": "Erin Rased", "newsletter": ["briefing", "other"]},
        headers={"User-Agent": "PersonalBrowser/1.0"},
        environ_base={"REMOTE_ADDR": "203.0.113.7"},
    )
    response = client.post(
        f"/confirm/{confirm_secret(app, session)}", environ_base={"REMOTE_ADDR": "198.51.100.9"}
    )
    assert response.status_code == 200
    # A second signup leaves a confirmation mail queued; a retried API call leaves its answer.
    client.post("/n/briefing/subscribe", data={"email": ADDRESS})
    assert api_signup(client, key, "other", **{"Idempotency-Key": "order-1"}).status_code == 202
    queue_webhook_deliveries(app, session, webhook_id)
    briefing = session.scalar(sa.select(Newsletter.id).where(Newsletter.slug == "briefing"))
    session.add_all(
        [
            SignupRequest(
                email=ADDRESS, newsletter_ids=[briefing], source="form", ip="203.0.113.7"
            ),
            LinkRequest(email=ADDRESS, ip="203.0.113.7"),
            Suppression(email=ADDRESS, newsletter_id=briefing, reason="550 mailbox full"),
        ]
    )
    session.commit()
    ids = session.scalars(sa.select(Subscription.id).order_by(Subscription.id)).all()
    assert len(ids) == 2
    assert session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage)) > 0
    return ids


def everything(session) -> str:
    """Return every row of every table as text, to search for what should be gone."""
    session.expire_all()
    return "\n".join(
        json.dumps([list(row) for row in session.execute(table.select())], default=str)
        for table in Base.metadata.sorted_tables
    )


def assert_erased_everywhere(runner, session, subscription_ids, source):
    """Check that nothing personal of ADDRESS is left, and that its ledger still holds."""
    assert ADDRESS not in everything(session)
    for model in (Subscriber, Subscription, SignupRequest, LinkRequest, Suppression):
        assert session.scalars(sa.select(model)).all() == [], model
    assert session.scalars(sa.select(Token)).all() == []
    assert session.scalars(sa.select(IdempotentRequest)).all() == []
    deliveries = session.scalars(
        sa.select(OutboxMessage).where(OutboxMessage.webhook_id.is_not(None))
    ).all()
    assert deliveries, "the receiver still hears of the changes"
    assert all(json.loads(d.payload)["email"] is None for d in deliveries)
    assert (
        session.scalars(sa.select(OutboxMessage).where(OutboxMessage.webhook_id.is_(None))).all()
        == []
    )
    events = session.scalars(sa.select(ConsentEvent).order_by(ConsentEvent.id)).all()
    assert {e.subscription_id for e in events} == set(subscription_ids)
    assert all(e.ip is None and e.user_agent is None for e in events)
    erased = [e for e in events if e.action == "erased"]
    assert sorted(e.subscription_id for e in erased) == sorted(subscription_ids)
    assert all(e.source == source and e.status == Status.UNSUBSCRIBED for e in erased)
    # That consent existed, when, and that it was confirmed, is still on the record.
    assert {"signed_up", "confirmed"} <= {e.action for e in events}
    assert session.scalar(sa.select(sa.func.count()).select_from(ErasedAddress)) == 1
    verified = runner.invoke(args=["consent", "verify"])
    assert verified.exit_code == 0, verified.output
    assert "no break" in verified.output


def confirmation_link_mailed(app, runner, address=ADDRESS) -> str:
    """Send the outbox as the worker does and return the confirmation link mailed last."""
    result = runner.invoke(args=["worker", "--once"])
    assert "sent" in result.output, result.output
    folder = Path(urlsplit(app.config["MAIL_URL"]).path)
    links = []
    for path in sorted(folder.glob("*.eml"), key=lambda p: p.stat().st_mtime_ns):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        if address in message["To"]:
            text = message.get_body(("plain",)).get_content()
            links += re.findall(r"https://news\.example\.org/confirm/[\w-]+", text)
    assert links, "no confirmation mail"
    return links[-1]


def import_text(runner, slug, address=ADDRESS):
    return runner.invoke(
        args=["import", slug, "-"], input=f"email,status\r\n{address},confirmed\r\n"
    )


def assert_only_its_owner_brings_it_back(app, client, runner, session, key):
    """Import and API signup are refused; the person's own confirmed signup lifts that."""
    imported = import_text(runner, "briefing")
    assert imported.exit_code == 0, imported.output
    assert f"line 2: {ADDRESS}: {imports.ERASED}" in imported.output
    assert "taken 0" in imported.output
    refused = api_signup(client, key)
    assert refused.status_code == 409
    assert refused.get_json()["error"] == "erased"
    assert "erased at its owner's request" in refused.get_json()["message"]
    assert session.scalars(sa.select(Subscriber)).all() == []
    assert session.scalars(sa.select(SignupRequest)).all() == []

    # The person signs up again through the form: accepted, pending, still kept from imports.
    response = client.post("/n/briefing/subscribe", data={"email": ADDRESS})
    assert response.status_code == 303
    assert session.scalar(sa.select(Subscription.status)) == Status.PENDING
    assert api_signup(client, key).status_code == 409

    link = confirmation_link_mailed(app, runner)
    confirmed = client.post(urlsplit(link).path, environ_base={"REMOTE_ADDR": "192.0.2.44"})
    assert confirmed.status_code == 200
    session.expire_all()
    assert session.scalar(sa.select(Subscription.status)) == Status.CONFIRMED
    assert session.scalars(sa.select(ErasedAddress)).all() == []
    with app.app_context():
        assert not erasure.is_erased(db.session(), ADDRESS)

    # Fresh consent given: the address is an ordinary one again.
    assert "taken 1" in import_text(runner, "other").output
    assert api_signup(client, key).status_code == 202


def login_as_admin(app, client) -> str:
    with app.app_context():
        editors.create(db.session(), "admin@example.org", PASSWORD, is_admin=True)
        db.session().commit()
    login(client, "admin@example.org")
    return "admin@example.org"


def test_an_admin_erases_a_person_everywhere_and_only_their_own_signup_brings_them_back(
    app, client, runner, session, person, key
):
    login_as_admin(app, client)
    page = f"/admin/n/briefing/subscribers/{person[0]}"
    assert "Erase this person" in client.get(page).get_data(as_text=True)

    response = client.post(
        f"{page}/erase",
        data={"csrf_token": csrf_token(client, page), "confirm": "erase"},
        headers={"User-Agent": "AdminBrowser/1.0"},
    )

    assert response.status_code == 303
    assert response.headers["Location"] == "/admin/n/briefing/subscribers"
    listing = client.get("/admin/n/briefing/subscribers").get_data(as_text=True)
    assert f"Erased subscriber {person[0]} everywhere" in listing
    assert client.get(page).status_code == 404
    assert_erased_everywhere(runner, session, person, source="admin")
    [detail] = {
        e.detail
        for e in session.scalars(sa.select(ConsentEvent).where(ConsentEvent.action == "erased"))
    }
    assert detail == "erased at the person's request, by admin admin@example.org"
    assert_only_its_owner_brings_it_back(app, client, runner, session, key)


def test_erasing_without_ticking_the_confirmation_is_refused_and_changes_nothing(
    app, client, runner, session, person
):
    login_as_admin(app, client)
    page = f"/admin/n/briefing/subscribers/{person[0]}"
    before = everything(session)

    response = client.post(f"{page}/erase", data={"csrf_token": csrf_token(client, page)})

    assert response.status_code == 400
    assert "Nothing was erased: tick the box" in response.get_data(as_text=True)
    assert everything(session) == before


def test_an_editor_who_is_not_an_admin_may_not_erase(app, client, session, person):
    with app.app_context():
        briefing = db.session().scalar(sa.select(Newsletter).where(Newsletter.slug == "briefing"))
        editors.create(db.session(), "editor@example.org", PASSWORD, newsletters=[briefing])
        db.session().commit()
    login(client, "editor@example.org")
    page = f"/admin/n/briefing/subscribers/{person[0]}"
    assert "Erase this person" not in client.get(page).get_data(as_text=True)
    before = everything(session)

    response = client.post(
        f"{page}/erase", data={"csrf_token": csrf_token(client, page), "confirm": "erase"}
    )

    assert response.status_code == 403
    assert everything(session) == before


def test_the_erase_command_erases_a_person_everywhere_and_imports_cannot_bring_them_back(
    app, client, runner, session, person, key
):
    result = runner.invoke(args=["erase", "  Erase.Me@Example.com ", "--yes"])

    assert result.exit_code == 0, result.output
    assert f"erased {ADDRESS}; its hash is on the suppression list" in result.output
    assert_erased_everywhere(runner, session, person, source="cli")
    assert_only_its_owner_brings_it_back(app, client, runner, session, key)


def test_the_erase_command_asks_first_and_a_no_changes_nothing(runner, session, person):
    before = everything(session)

    result = runner.invoke(args=["erase", ADDRESS], input="n\n")

    assert result.exit_code == 1
    assert "Erase erase.me@example.com everywhere?" in result.output
    assert everything(session) == before


def test_the_erasure_service_as_the_preference_centre_calls_it(app, runner, session, person):
    with app.app_context():
        found = erasure.erase(
            db.session(),
            ADDRESS,
            Evidence(ip="203.0.113.7", user_agent="PersonalBrowser/1.0", source="preferences"),
            "erased at the person's request, from the preference centre",
        )
        db.session().commit()

    assert found is True
    assert_erased_everywhere(runner, session, person, source="preferences")


def test_an_address_erased_before_it_was_ever_listed_is_still_kept_out(
    app, client, runner, session, newsletter, other, key
):
    result = runner.invoke(args=["erase", ADDRESS, "--yes"])
    assert f"{ADDRESS} was not on any list" in result.output

    assert_only_its_owner_brings_it_back(app, client, runner, session, key)
