"""Rotating SECRET_KEY: every link already mailed, queued or exported keeps working."""

import pytest
import sqlalchemy as sa

from newsletters import create_app, db, editors, exports
from newsletters.mail import worker
from newsletters.models import Newsletter, Status, Subscriber, Subscription
from tests.admin.conftest import PASSWORD, login
from tests.subscriptions.test_links import mailed_secrets

OLD_KEY, NEW_KEY = "test-secret", "a-brand-new-secret"
UNSUBSCRIBE = "https://news.example.org/unsubscribe/"


@pytest.fixture
def rotated(settings):
    """Return an app that reads the same database with a new key, the old one as fallback."""
    app = create_app(settings | {"SECRET_KEY": NEW_KEY, "SECRET_KEY_FALLBACKS": [OLD_KEY]})
    yield app
    with app.app_context():
        db.engine().dispose()


def export_links(app, session) -> dict[str, str]:
    with app.app_context():
        newsletter = session.scalar(sa.select(Newsletter).where(Newsletter.slug == "briefing"))
        return {
            r["email"]: r["unsubscribe_url"] for r in exports.records(session, newsletter, "all")
        }


def status_of(session, email: str) -> Status:
    session.expire_all()
    return session.scalar(
        sa.select(Subscription.status).join(Subscriber).where(Subscriber.email == email)
    )


def test_links_mailed_queued_and_exported_before_a_rotation_work_after_it(
    app, client, newsletter, session, rotated
):
    assert client.post("/n/briefing/subscribe", data={"email": "mailed@example.com"}).status_code
    [mailed] = mailed_secrets(app)
    # Queued under the old key, sent only after the rotation.
    client.post("/n/briefing/subscribe", data={"email": "queued@example.com"})
    exported_before = export_links(app, session)

    after = rotated.test_client()
    assert after.get(f"/confirm/{mailed}").status_code == 200
    assert after.post(f"/confirm/{mailed}").status_code == 200
    assert status_of(session, "mailed@example.com") == Status.CONFIRMED

    [queued] = mailed_secrets(rotated)
    assert after.post(f"/confirm/{queued}").status_code == 200
    assert status_of(session, "queued@example.com") == Status.CONFIRMED

    exported_after = export_links(rotated, session)
    assert exported_after == exported_before  # the same links, derived with the old key
    for url in exported_after.values():
        secret = url.removeprefix(UNSUBSCRIBE)
        assert after.get(f"/unsubscribe/{secret}").status_code == 200
    secret = exported_after["mailed@example.com"].removeprefix(UNSUBSCRIBE)
    assert after.post(f"/unsubscribe/{secret}").status_code == 200
    assert status_of(session, "mailed@example.com") == Status.UNSUBSCRIBED


def test_links_made_after_a_rotation_use_the_new_key_and_work_without_the_old_one(
    settings, newsletter, session, rotated
):
    client = rotated.test_client()
    client.post("/n/briefing/subscribe", data={"email": "new@example.com"})
    [secret] = mailed_secrets(rotated)
    only_new = create_app(settings | {"SECRET_KEY": NEW_KEY})
    try:
        assert only_new.test_client().post(f"/confirm/{secret}").status_code == 200
        [url] = export_links(only_new, session).values()
        assert url.startswith(UNSUBSCRIBE) and len(url) > len(UNSUBSCRIBE)
    finally:
        with only_new.app_context():
            db.engine().dispose()


def test_dropping_the_old_key_blanks_its_exported_links_and_parks_its_queued_mails(
    app, client, newsletter, session, settings
):
    client.post("/n/briefing/subscribe", data={"email": "queued@example.com"})
    forgotten = create_app(settings | {"SECRET_KEY": NEW_KEY})
    try:
        assert export_links(forgotten, session) == {"queued@example.com": ""}
        with forgotten.app_context():
            outcome = worker.run(once=True)
        assert outcome["failed"] == 1  # not sent with a link that cannot work, nor retried
    finally:
        with forgotten.app_context():
            db.engine().dispose()


def test_an_editors_session_survives_a_rotation(app, rotated, newsletter):
    with app.app_context():
        editors.create(db.session(), "admin@example.com", PASSWORD, is_admin=True)
        db.session().commit()
    before = app.test_client()
    login(before, "admin@example.com")
    cookie = before.get_cookie("session")
    assert cookie is not None
    after = rotated.test_client()
    after.set_cookie("session", cookie.value, domain=cookie.domain)
    assert after.get("/admin/").status_code == 200


@pytest.mark.parametrize("fallbacks", ['"old"', "[1]", '[""]'])
def test_fallback_keys_must_be_a_json_list_of_keys(settings, monkeypatch, fallbacks):
    from newsletters.config import ConfigError

    monkeypatch.setenv("NEWSLETTERS_SECRET_KEY_FALLBACKS", fallbacks)
    with pytest.raises(ConfigError, match="SECRET_KEY_FALLBACKS"):
        create_app(settings)
