"""The API keys page: an editor creates and revokes their keys; an admin sees and stops all."""

import hashlib
import re

import pytest
import sqlalchemy as sa

from newsletters import apikeys, db, editors
from newsletters.models import ApiKey

from .conftest import csrf_token, login

PAGE = "/admin/api-keys"


@pytest.fixture
def ed(client, newsletter, make_editor):
    """Log ``client`` in as ed@example.com, an editor of 'briefing'."""
    login(client, make_editor("ed@example.com", newsletter))
    return client


def add_key(app, email, name="crm") -> tuple[int, str]:
    """Create a key of ``email`` through the service; return its id and the key."""
    with app.app_context():
        session = db.session()
        api_key, key = apikeys.create(session, editors.find(session, email), name)
        session.commit()
        return api_key.id, key


def stored(session) -> list[ApiKey]:
    return list(
        session.scalars(
            sa.select(ApiKey).order_by(ApiKey.id).execution_options(populate_existing=True)
        )
    )


def works(app, key) -> bool:
    with app.app_context():
        return apikeys.authenticate(db.session(), key) is not None


def test_the_navigation_links_the_page(ed):
    assert f'href="{PAGE}"' in ed.get("/admin/").get_data(as_text=True)


def test_creating_a_key_shows_it_once_in_the_answer_and_stores_only_its_hash(app, ed, session):
    response = ed.post(
        PAGE, data={"name": "shop signups", "read_only": "y", "csrf_token": csrf_token(ed, PAGE)}
    )

    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    page = response.get_data(as_text=True)
    key = re.search(r"<pre><code>(nlk_[A-Za-z0-9_-]+)</code></pre>", page).group(1)
    assert "Copy it now: it is shown only this once." in page
    [row] = stored(session)
    assert row.digest == hashlib.sha256(key.encode()).hexdigest()
    assert (row.name, row.read_only, row.editor.email) == ("shop signups", True, "ed@example.com")
    assert works(app, key)
    # Not in the session cookie (no flash message carries it), and never shown again.
    cookie = ed.get_cookie("session")
    state = app.session_interface.get_signing_serializer(app).loads(cookie.value)
    assert key not in repr(state)
    again = ed.get(PAGE).get_data(as_text=True)
    assert key not in again and row.prefix in again and "shop signups" in again


def test_creating_without_a_csrf_token_is_refused_and_makes_no_key(ed, session):
    response = ed.post(PAGE, data={"name": "shop"})

    assert response.status_code == 400
    assert "security token" in response.get_data(as_text=True)
    assert stored(session) == []


@pytest.mark.parametrize(
    ("name", "message"),
    [("", "give the key a name"), ("x" * 101, "it may have 100 at most")],
)
def test_a_bad_name_is_shown_beside_the_field_and_makes_no_key(ed, session, name, message):
    response = ed.post(PAGE, data={"name": name, "csrf_token": csrf_token(ed, PAGE)})

    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert message in page and "nlk_" not in page
    assert stored(session) == []


def test_an_editor_revokes_their_key_after_a_confirmation(app, ed, session):
    key_id, key = add_key(app, "ed@example.com")

    confirm = ed.get(f"{PAGE}/{key_id}/revoke")
    assert confirm.status_code == 200
    assert re.search(
        rf'<form method="post" action="{PAGE}/{key_id}/revoke">\s*'
        r'<input type="hidden" name="csrf_token" value="[^"]+">',
        confirm.get_data(as_text=True),
    )
    assert works(app, key)

    refused = ed.post(f"{PAGE}/{key_id}/revoke")
    assert refused.status_code == 400 and works(app, key)

    response = ed.post(f"{PAGE}/{key_id}/revoke", data={"csrf_token": csrf_token(ed, PAGE)})

    assert response.status_code == 303 and response.headers["Location"] == PAGE
    assert not works(app, key)
    assert stored(session)[0].revoked_at is not None
    page = ed.get(PAGE).get_data(as_text=True)
    assert "Revoked the API key crm" in page and "revoked " in page
    assert f"{PAGE}/{key_id}/revoke" not in page


def test_an_editor_neither_sees_nor_revokes_another_editors_key(app, ed, make_editor, session):
    make_editor("other@example.com", "briefing")
    key_id, key = add_key(app, "other@example.com", name="theirs")

    page = ed.get(PAGE).get_data(as_text=True)
    token = csrf_token(ed, PAGE)

    assert "theirs" not in page and "No API keys yet." in page
    assert ed.get(f"{PAGE}/{key_id}/revoke").status_code == 403
    assert ed.post(f"{PAGE}/{key_id}/revoke", data={"csrf_token": token}).status_code == 403
    assert ed.post(f"{PAGE}/999/revoke", data={"csrf_token": token}).status_code == 404
    assert works(app, key) and stored(session)[0].revoked_at is None


def test_an_admin_sees_every_key_and_may_revoke_any(app, client, make_editor, session):
    make_editor("ed@example.com")
    ed_id, ed_key = add_key(app, "ed@example.com", name="ed's shop")
    login(client, make_editor("boss@example.com", is_admin=True))
    add_key(app, "boss@example.com", name="boss crm")

    page = client.get(PAGE).get_data(as_text=True)

    assert "ed&#39;s shop" in page and "boss crm" in page
    assert "ed@example.com" in page and "boss@example.com" in page
    response = client.post(f"{PAGE}/{ed_id}/revoke", data={"csrf_token": csrf_token(client, PAGE)})
    assert response.status_code == 303 and not works(app, ed_key)


def test_a_key_created_on_the_page_is_the_current_editors_even_for_an_admin(
    client, make_editor, session
):
    make_editor("ed@example.com")
    login(client, make_editor("boss@example.com", is_admin=True))

    client.post(PAGE, data={"name": "mine", "csrf_token": csrf_token(client, PAGE)})

    assert [k.editor.email for k in stored(session)] == ["boss@example.com"]
