"""API keys for the API's tests: an editor of some newsletters (or an admin) and their key."""

import pytest
import sqlalchemy as sa

from newsletters import apikeys, db, editors, tokens
from newsletters.models import Editor, Newsletter, Subscriber, Token, TokenPurpose

PASSWORD = "correct horse battery"


@pytest.fixture
def make_key(app):
    """Return a function that makes an API key of an editor (added if new) of some newsletters."""

    def make(email, *slugs, is_admin=False, read_only=False, name="tests"):
        with app.app_context():
            session = db.session()
            editor = session.scalar(sa.select(Editor).where(Editor.email == email))
            if editor is None:
                newsletters = session.scalars(
                    sa.select(Newsletter).where(Newsletter.slug.in_(slugs))
                ).all()
                editor = editors.create(
                    session, email, PASSWORD, is_admin=is_admin, newsletters=newsletters
                )
            _, key = apikeys.create(session, editor, name, read_only=read_only)
            session.commit()
        return key

    return make


@pytest.fixture
def key(make_key, newsletter):
    """Return a read-write key of an editor of 'briefing'."""
    return make_key("editor@example.org", newsletter)


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def sign_up(client, key, email, slug="briefing", **fields):
    """Sign ``email`` up through the API; return the response, asserting it was accepted."""
    response = client.post(
        f"/api/v1/newsletters/{slug}/subscriptions",
        headers=bearer(key),
        json={"email": email} | fields,
    )
    assert response.status_code == 202, response.get_data(as_text=True)
    return response


def confirm(app, client, session, email):
    """Confirm ``email``'s signup through its confirmation link, as its mail's reader would."""
    token = session.scalar(
        sa.select(Token)
        .join(Subscriber)
        .where(Subscriber.email == email, Token.purpose == TokenPurpose.CONFIRM)
        .order_by(Token.id.desc())
    )
    with app.app_context():
        secret = tokens.secret_for(token)
    assert client.post(f"/confirm/{secret}").status_code == 200


def count(session, model) -> int:
    return session.scalar(sa.select(sa.func.count()).select_from(model))
