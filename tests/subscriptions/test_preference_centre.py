"""The preference centre end to end: ask for the link, open it, join, leave, download, erase.

Every link is taken from a mail the worker rendered, as a reader would find it.
"""

import json
import re
from datetime import timedelta
from email import message_from_bytes, policy
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from newsletters import db, erasure, exports
from newsletters.db import utcnow
from newsletters.mail import worker
from newsletters.models import (
    ConsentEvent,
    LinkRequest,
    Newsletter,
    OutboxMessage,
    Status,
    Subscriber,
    Subscription,
    Token,
    TokenPurpose,
)
from newsletters.subscriptions import preferences

READER = "reader@example.com"
SENT = "If this address is on any of our lists, we&#39;ve sent it a link."
PREFERENCES = re.compile(r"https://news\.example\.org(/preferences/[A-Za-z0-9_-]{20,})\s")
DATA = re.compile(r"https://news\.example\.org(/preferences/data/[A-Za-z0-9_-]+)")
CONFIRM = re.compile(r"https://news\.example\.org(/confirm/[A-Za-z0-9_-]+)")


def inbox(app) -> list:
    """Run the worker once (file transport); return the new mails, read once like an inbox."""
    with app.app_context():
        worker.run(once=True)
    mails = []
    for path in sorted(Path(urlsplit(app.config["MAIL_URL"]).path).glob("*.eml")):
        mails.append(message_from_bytes(path.read_bytes(), policy=policy.default))
        path.unlink()
    return mails


def text_of(mail) -> str:
    return mail.get_body(("plain",)).get_content()


def only_link(app, pattern: re.Pattern, to: str = READER) -> str:
    [mail] = inbox(app)
    assert mail["To"] == to
    [path] = pattern.findall(text_of(mail))
    return path


def statuses(session, email=READER) -> dict:
    session.expire_all()
    rows = session.execute(
        sa.select(Newsletter.slug, Subscription.status)
        .join(Subscription.newsletter)
        .join(Subscription.subscriber)
        .where(Subscriber.email == email)
    )
    return dict(rows.all())


def ids(session) -> dict:
    return dict(session.execute(sa.select(Newsletter.slug, Newsletter.id)).all())


@pytest.fixture
def lists(session):
    """Add three public newsletters and a private one."""
    session.add_all(
        [
            Newsletter(slug="alpha", name="Alpha"),
            Newsletter(slug="beta", name="Beta"),
            Newsletter(slug="gamma", name="Gamma"),
            Newsletter(slug="hidden", name="Hidden", is_public=False),
        ]
    )
    session.commit()


@pytest.fixture
def reader(app, client, lists):
    """Sign the reader up to alpha and beta at once; return the mailed confirmation path."""
    response = client.post("/subscribe", data={"email": READER, "newsletter": ["alpha", "beta"]})
    assert response.status_code == 303
    return only_link(app, CONFIRM)


def my_link(app, client, email=READER) -> str:
    """Ask for the link as a reader does; return the path of the mailed preference link."""
    response = client.post("/preferences", data={"email": email})
    assert response.status_code == 200
    assert SENT in response.get_data(as_text=True)
    return only_link(app, PREFERENCES, to=email)


def act(client, path, action, **fields):
    return client.post(path, data={"action": action, **fields})


def test_the_link_form_is_shown_and_changes_nothing(client, lists, session):
    page = client.get("/preferences")
    assert page.status_code == 200
    assert 'name="email"' in page.get_data(as_text=True)
    assert session.scalar(sa.select(sa.func.count()).select_from(LinkRequest)) == 0


def test_send_me_my_link_mails_a_link_that_opens_every_newsletter_of_the_address(
    app, client, reader, session
):
    path = my_link(app, client)
    page = client.get(path)
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert READER in text
    assert "Alpha" in text and "Beta" in text and "Gamma" in text  # Gamma: to join
    assert "Hidden" not in text  # private, and the reader is not on it
    token = session.scalars(sa.select(Token).where(Token.purpose == TokenPurpose.PREFERENCES)).one()
    hours = (token.expires_at - token.created_at).total_seconds() / 3600
    assert hours == pytest.approx(app.config["CONFIRM_TTL_HOURS"], abs=0.01)
    assert session.scalar(sa.select(sa.func.count()).select_from(LinkRequest)) == 0


def test_an_unknown_address_gets_the_same_answer_and_no_mail(app, client, reader, session):
    known = client.post("/preferences", data={"email": READER}).get_data(as_text=True)
    unknown = client.post("/preferences", data={"email": "stranger@example.com"})
    assert unknown.status_code == 200
    assert unknown.get_data(as_text=True) == known
    assert [m["To"] for m in inbox(app)] == [READER]
    assert (
        session.scalar(sa.select(Subscriber).where(Subscriber.email == "stranger@example.com"))
        is None
    )


@pytest.mark.settings(SIGNUP_PROCESSING="worker")
def test_a_link_request_stores_one_row_and_the_worker_mails_the_link(app, client, lists, session):
    client.post("/n/alpha/subscribe", data={"email": READER})
    for email in (READER, "stranger@example.com", READER):
        assert client.post("/preferences", data={"email": email}).status_code == 200
    assert session.scalar(sa.select(sa.func.count()).select_from(LinkRequest)) == 3
    assert session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage)) == 0
    mails = inbox(app)
    # The confirmation, and one preference link however often the address asked in a round.
    assert sorted(m["Subject"] for m in mails) == [
        "Confirm your subscription to Alpha",
        "Your link to manage your subscriptions",
    ]
    assert session.scalar(sa.select(sa.func.count()).select_from(LinkRequest)) == 0


def test_a_bad_address_is_refused_with_the_form_again_and_nothing_stored(client, lists, session):
    page = client.post("/preferences", data={"email": "not an address"})
    assert page.status_code == 400
    text = page.get_data(as_text=True)
    assert 'role="alert"' in text and "not an address" in text
    assert session.scalar(sa.select(sa.func.count()).select_from(LinkRequest)) == 0


@pytest.mark.settings(CONFIRM_MAILS_PER_DAY=2)
def test_link_mails_count_against_the_daily_mail_budget(app, client, reader, session):
    # The confirmation mail spent one of the two.
    for _ in range(3):
        client.post("/preferences", data={"email": READER})
    assert len(inbox(app)) == 1


@pytest.mark.settings(RATELIMIT_ENABLED=True, SIGNUP_RATE_LIMIT="2 per minute")
def test_link_requests_spend_the_signup_budget_of_the_network(client, lists):
    assert client.post("/n/alpha/subscribe", data={"email": READER}).status_code == 303
    assert client.post("/preferences", data={"email": READER}).status_code == 200
    refused = client.post("/preferences", data={"email": READER})
    assert refused.status_code == 429
    assert client.get("/preferences").status_code == 200  # showing the form costs nothing


def test_the_confirmation_mails_own_link_opens_the_preference_centre_before_and_after(
    app, client, reader, session
):
    path = reader.replace("/confirm/", "/preferences/")
    assert client.get(path).status_code == 200
    client.post(reader)
    assert client.get(path).status_code == 200
    session.execute(sa.update(Token).values(expires_at=utcnow() - timedelta(seconds=1)))
    session.commit()
    expired = client.get(path)
    assert expired.status_code == 410
    text = expired.get_data(as_text=True)
    assert "expired" in text and 'href="/preferences"' in text


def test_an_expired_preference_link_is_refused_with_an_offer_of_a_new_one(
    app, client, reader, session
):
    path = my_link(app, client)
    session.execute(
        sa.update(Token)
        .where(Token.purpose == TokenPurpose.PREFERENCES)
        .values(expires_at=utcnow() - timedelta(seconds=1))
    )
    session.commit()
    assert client.get(path).status_code == 410
    assert act(client, path, "leave_all").status_code == 410
    assert set(statuses(session).values()) == {Status.PENDING}


def test_saving_joins_the_ticked_leaves_the_unticked_and_records_each(app, client, reader, session):
    path = my_link(app, client)
    n = ids(session)
    response = act(client, path, "save", newsletter=[n["beta"], n["gamma"]])
    assert response.status_code == 200
    assert statuses(session) == {
        "alpha": Status.UNSUBSCRIBED,
        "beta": Status.CONFIRMED,  # was pending: the link proves the inbox
        "gamma": Status.CONFIRMED,  # new: joined here, no confirmation mail
    }
    assert inbox(app) == []
    events = session.execute(
        sa.select(Newsletter.slug, ConsentEvent.action, ConsentEvent.status, ConsentEvent.source)
        .join(Newsletter, Newsletter.id == ConsentEvent.newsletter_id)
        .where(ConsentEvent.source == "preferences")
        .order_by(ConsentEvent.id)
    ).all()
    assert events == [
        ("alpha", "unsubscribed", "unsubscribed", "preferences"),
        ("beta", "joined", "confirmed", "preferences"),
        ("gamma", "joined", "confirmed", "preferences"),
    ]
    gamma = session.scalar(sa.select(Subscription).where(Subscription.newsletter_id == n["gamma"]))
    assert gamma.confirmed_at is not None and gamma.optin_at is not None
    assert gamma.source == "preferences"
    assert gamma.unsubscribe_token_id is not None
    # Ticking alpha again brings it back; saving the same choices changes nothing.
    act(client, path, "save", newsletter=[n["alpha"], n["beta"], n["gamma"]])
    assert statuses(session) == dict.fromkeys(("alpha", "beta", "gamma"), Status.CONFIRMED)
    again = act(client, path, "save", newsletter=[n["alpha"], n["beta"], n["gamma"]])
    assert "Nothing to change" in again.get_data(as_text=True)
    assert session.scalar(sa.select(sa.func.count()).select_from(ConsentEvent)) == 6


def test_a_newsletter_that_cannot_be_joined_from_here_is_refused_and_nothing_changes(
    app, client, reader, session
):
    path = my_link(app, client)
    n = ids(session)
    for chosen in ([n["beta"], n["hidden"]], ["beta"], [str(n["beta"]) + "\x00"]):
        response = act(client, path, "save", newsletter=chosen)
        assert response.status_code == 400
        assert "Reload the page" in response.get_data(as_text=True)
    assert act(client, path, "dance").status_code == 400
    assert client.post(path, data={}).status_code == 400
    assert statuses(session) == {"alpha": Status.PENDING, "beta": Status.PENDING}


def test_leave_all_unsubscribes_from_every_newsletter(app, client, reader, session):
    path = my_link(app, client)
    response = act(client, path, "leave_all")
    assert response.status_code == 200
    assert "unsubscribed from every newsletter" in response.get_data(as_text=True)
    assert statuses(session) == {"alpha": Status.UNSUBSCRIBED, "beta": Status.UNSUBSCRIBED}
    # The confirmation link cannot bring them back: the reader left after it was sent.
    assert client.post(reader).status_code == 410


def test_the_mailed_data_link_downloads_every_subscription_and_ledger_row(
    app, client, reader, session
):
    client.post(reader)  # confirmed
    path = my_link(app, client)
    response = act(client, path, "send_data")
    assert response.status_code == 200
    assert "We&#39;ve sent a link to download your data" in response.get_data(as_text=True)
    data_path = only_link(app, DATA)
    download = client.get(data_path)
    assert download.status_code == 200
    assert download.mimetype == "application/json"
    assert download.headers["Content-Disposition"].startswith("attachment")
    assert download.headers["Cache-Control"] == "no-store"
    data = json.loads(download.get_data())
    assert data["email"] == READER
    assert {(s["newsletter"], s["status"]) for s in data["subscriptions"]} == {
        ("alpha", "confirmed"),
        ("beta", "confirmed"),
    }
    assert all(s["optin_ip"] == "127.0.0.1" for s in data["subscriptions"])
    history = [(h["newsletter"], h["action"]) for h in data["consent_history"]]
    assert sorted(history) == [
        ("alpha", "confirmed"),
        ("alpha", "signed_up"),
        ("beta", "confirmed"),
        ("beta", "signed_up"),
    ]
    assert all(h["hash"] and h["ip"] == "127.0.0.1" for h in data["consent_history"])
    # Reading changes nothing; a preference link is no download link; an old one expires.
    assert client.get(data_path).status_code == 200
    assert client.get(path.replace("/preferences/", "/preferences/data/")).status_code == 404
    session.execute(
        sa.update(Token)
        .where(Token.purpose == TokenPurpose.DATA)
        .values(expires_at=utcnow() - timedelta(seconds=1))
    )
    session.commit()
    assert client.get(data_path).status_code == 410


def test_the_download_keeps_the_ledger_of_a_subscription_an_editor_deleted(
    app, client, reader, session
):
    path = my_link(app, client)
    alpha = ids(session)["alpha"]
    with app.app_context():
        subscriber = session.scalar(sa.select(Subscriber).where(Subscriber.email == READER))
        data = preferences.data_of(session, subscriber)
    assert len(data["consent_history"]) == 2
    # An editor deletes alpha: the subscription goes, its ledger stays and is still shown.
    from newsletters import db, editors
    from newsletters.ledger import Evidence
    from newsletters.subscriptions import services

    with app.app_context():
        s = db.session()
        editor = editors.create(s, "editor@example.com", "correct horse battery")
        sub = s.scalar(sa.select(Subscription).where(Subscription.newsletter_id == alpha))
        services.delete(s, sub, editor, Evidence(ip=None, user_agent=None, source="admin"))
        s.commit()
    act(client, path, "send_data")
    data = json.loads(client.get(only_link(app, DATA)).get_data())
    assert [s["newsletter"] for s in data["subscriptions"]] == ["beta"]
    assert sorted((h["newsletter"], h["action"]) for h in data["consent_history"]) == [
        ("alpha", "deleted"),
        ("alpha", "signed_up"),
        ("beta", "signed_up"),
    ]


def test_erasure_needs_its_box_ticked_then_removes_the_address_and_keeps_the_ledger(
    app, client, reader, session
):
    path = my_link(app, client)
    refused = act(client, path, "erase")
    assert refused.status_code == 400
    assert "Tick the box" in refused.get_data(as_text=True)
    assert statuses(session) == {"alpha": Status.PENDING, "beta": Status.PENDING}

    erased = act(client, path, "erase", confirm_erase="yes")
    assert erased.status_code == 200
    assert "Your data is erased" in erased.get_data(as_text=True)
    assert session.scalar(sa.select(Subscriber).where(Subscriber.email == READER)) is None
    assert session.scalars(sa.select(Subscription)).all() == []
    rows = session.execute(
        sa.select(
            ConsentEvent.action, ConsentEvent.ip, ConsentEvent.user_agent, ConsentEvent.detail
        )
    ).all()
    assert sorted(r.action for r in rows) == ["erased", "erased", "signed_up", "signed_up"]
    assert all(r.ip is None and r.user_agent is None for r in rows)
    assert {r.detail for r in rows if r.action == "erased"} == {preferences.ERASE_DETAIL}
    with app.app_context():
        assert erasure.is_erased(session, READER)
    # Every link of the address stops working.
    assert client.get(path).status_code == 404
    assert client.get(reader).status_code == 404


@pytest.mark.settings(CONFIRM_MAILS_PER_DAY=3)
def test_data_mails_count_against_the_daily_mail_budget(app, client, reader, session):
    path = my_link(app, client)  # the confirmation and the link spent two of the three
    assert act(client, path, "send_data").status_code == 200
    refused = act(client, path, "send_data")
    assert refused.status_code == 429
    assert "Ask for your data again tomorrow" in refused.get_data(as_text=True)
    assert len(inbox(app)) == 1
    assert (
        session.scalar(
            sa.select(sa.func.count()).select_from(Token).where(Token.purpose == TokenPurpose.DATA)
        )
        == 1
    )


def test_an_unsubscribe_link_cannot_erase_but_mails_a_link_that_can(app, client, reader, session):
    """Unsubscribe links travel in exports and forwarded mails: erasing needs a fresh mail."""
    with app.app_context():
        newsletter = db.session().scalar(sa.select(Newsletter).where(Newsletter.slug == "alpha"))
        [row] = list(exports.records(db.session(), newsletter, "all"))
    path = urlsplit(row["unsubscribe_url"]).path.replace("/unsubscribe/", "/preferences/")
    page = client.get(path).get_data(as_text=True)
    assert "Mail me a link" in page and 'value="erase"' not in page

    refused = act(client, path, "erase", confirm_erase="yes")
    assert refused.status_code == 403
    assert "open the link we mail you" in refused.get_data(as_text=True)
    assert statuses(session) == {"alpha": Status.PENDING, "beta": Status.PENDING}

    sent = act(client, path, "send_link")
    assert sent.status_code == 200
    mailed = only_link(app, PREFERENCES)
    assert 'value="erase"' in client.get(mailed).get_data(as_text=True)
    assert act(client, mailed, "erase", confirm_erase="yes").status_code == 200
    assert session.scalar(sa.select(Subscriber).where(Subscriber.email == READER)) is None
