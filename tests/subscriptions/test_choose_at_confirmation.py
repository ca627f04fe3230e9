"""Choose at confirmation: one signup to several newsletters, and the reader unticks some."""

import re
from email import message_from_bytes, policy
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from newsletters.mail import worker
from newsletters.models import ConsentEvent, Newsletter, Status, Subscription, Token, TokenPurpose

READER = "reader@example.com"
CONFIRM = re.compile(r"https://news\.example\.org(/confirm/[A-Za-z0-9_-]+)")


def confirm_path(app) -> str:
    """Run the worker once (file transport); return the path of the one confirmation link."""
    with app.app_context():
        worker.run(once=True)
    [path] = Path(urlsplit(app.config["MAIL_URL"]).path).glob("*.eml")
    mail = message_from_bytes(path.read_bytes(), policy=policy.default)
    path.unlink()
    return CONFIRM.search(mail.get_body(("plain",)).get_content()).group(1)


def statuses(session) -> dict:
    session.expire_all()
    rows = session.execute(
        sa.select(Newsletter.slug, Subscription.status).join(Subscription.newsletter)
    )
    return dict(rows.all())


def ids(session) -> dict:
    return dict(session.execute(sa.select(Newsletter.slug, Newsletter.id)).all())


@pytest.fixture
def several(app, client, session):
    """Sign the reader up to three newsletters with one form; return the confirmation path."""
    session.add_all([Newsletter(slug=s, name=s.title()) for s in ("alpha", "beta", "gamma")])
    session.commit()
    response = client.post(
        "/subscribe", data={"email": READER, "newsletter": ["alpha", "beta", "gamma"]}
    )
    assert response.status_code == 303
    return confirm_path(app)


def test_the_page_of_a_signup_to_several_shows_a_ticked_box_for_each(client, several, session):
    page = client.get(several)
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    n = ids(session)
    for slug in ("alpha", "beta", "gamma"):
        assert f'name="newsletter" value="{n[slug]}" checked' in text
    assert 'name="choosing" value="1"' in text
    assert set(statuses(session).values()) == {Status.PENDING}


def test_only_the_ticked_newsletters_are_confirmed_and_the_others_declined(
    client, several, session
):
    n = ids(session)
    response = client.post(several, data={"choosing": "1", "newsletter": [n["alpha"], n["gamma"]]})
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert "Alpha" in text and "Gamma" in text and "Beta" not in text
    assert statuses(session) == {
        "alpha": Status.CONFIRMED,
        "beta": Status.UNSUBSCRIBED,
        "gamma": Status.CONFIRMED,
    }
    events = session.execute(
        sa.select(ConsentEvent.newsletter_id, ConsentEvent.action)
        .where(ConsentEvent.action != "signed_up")
        .order_by(ConsentEvent.newsletter_id)
    ).all()
    assert events == [
        (n["alpha"], "confirmed"),
        (n["beta"], "declined"),
        (n["gamma"], "confirmed"),
    ]


def test_none_ticked_is_refused_with_the_page_again_and_nothing_changes(client, several, session):
    refused = client.post(several, data={"choosing": "1"})
    assert refused.status_code == 400
    text = refused.get_data(as_text=True)
    assert "Tick at least one newsletter" in text
    assert 'name="choosing" value="1"' in text
    assert set(statuses(session).values()) == {Status.PENDING}
    assert (
        session.scalar(sa.select(Token.used_at).where(Token.purpose == TokenPurpose.CONFIRM))
        is None
    )
    # The link still works.
    n = ids(session)
    assert (
        client.post(several, data={"choosing": "1", "newsletter": [n["beta"]]}).status_code == 200
    )
    assert statuses(session)["beta"] == Status.CONFIRMED


def test_a_ticked_value_that_is_not_a_newsletter_id_is_refused(client, several, session):
    response = client.post(several, data={"choosing": "1", "newsletter": ["alpha"]})
    assert response.status_code == 400
    assert set(statuses(session).values()) == {Status.PENDING}


def test_a_form_without_the_marker_confirms_every_newsletter_as_before(client, several, session):
    assert client.post(several).status_code == 200
    assert set(statuses(session).values()) == {Status.CONFIRMED}


def test_a_signup_to_one_newsletter_shows_a_plain_button(app, client, session):
    session.add(Newsletter(slug="alpha", name="Alpha"))
    session.commit()
    client.post("/n/alpha/subscribe", data={"email": READER})
    path = confirm_path(app)
    page = client.get(path).get_data(as_text=True)
    assert 'name="newsletter"' not in page and "choosing" not in page
    assert client.post(path).status_code == 200
    assert statuses(session) == {"alpha": Status.CONFIRMED}


def test_the_confirmed_page_links_to_the_preference_centre(client, several):
    page = client.post(several).get_data(as_text=True)
    assert f'href="{several.replace("/confirm/", "/preferences/")}"' in page
