"""Editors for the editors' area tests, and logging in the way a browser does (CSRF included)."""

import re

import pytest
import sqlalchemy as sa

from newsletters import db, editors
from newsletters.models import Newsletter

PASSWORD = "correct horse battery"


def csrf_token(client, path="/admin/login") -> str:
    """Return the CSRF token of the form on ``path``, as a browser would read it."""
    page = client.get(path).get_data(as_text=True)
    return re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)


def login(client, email, password=PASSWORD):
    response = client.post(
        "/admin/login",
        data={"email": email, "password": password, "csrf_token": csrf_token(client)},
    )
    assert response.status_code == 303, response.get_data(as_text=True)
    return response


@pytest.fixture
def make_editor(app):
    """Return a function that adds an editor of some newsletters (by slug), or an admin."""

    def make(email, *slugs, is_admin=False):
        with app.app_context():
            session = db.session()
            newsletters = session.scalars(
                sa.select(Newsletter).where(Newsletter.slug.in_(slugs))
            ).all()
            editors.create(session, email, PASSWORD, is_admin=is_admin, newsletters=newsletters)
            session.commit()
        return email

    return make


@pytest.fixture
def other_newsletter(session):
    session.add(Newsletter(slug="other", name="Other News"))
    session.commit()
    return "other"
