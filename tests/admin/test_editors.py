"""Admins manage editors in the browser: disable, enable, remove, promote, demote, reassign."""

import logging
import re

import pytest
import sqlalchemy as sa

from newsletters.models import Editor, Newsletter

from .conftest import PASSWORD, csrf_token, login


@pytest.fixture
def boss(client, newsletter, other_newsletter, make_editor):
    """Log ``client`` in as the admin boss@example.com, beside an editor of 'briefing'."""
    make_editor("ed@example.com", "briefing")
    login(client, make_editor("boss@example.com", is_admin=True))
    return client


def editor_id(session, email) -> int:
    return session.scalar(sa.select(Editor.id).where(Editor.email == email))


def fresh(session, email) -> Editor | None:
    return session.scalar(
        sa.select(Editor).where(Editor.email == email).execution_options(populate_existing=True)
    )


def post(client, path, data=None):
    token = csrf_token(client, "/admin/editors")
    return client.post(path, data={"csrf_token": token} | (data or {}))


def test_the_editors_page_gives_each_other_editor_controls_with_csrf_tokens(boss, session):
    ed = editor_id(session, "ed@example.com")

    page = boss.get("/admin/editors").get_data(as_text=True)

    for action in ("access", "disable"):
        form = re.search(
            rf'<form[^>]*method="post" action="/admin/editors/{ed}/{action}".*?</form>', page, re.S
        )
        assert form and re.search(r'csrf_token"[^>]* value="[^"]+"', form.group(0)), action
    assert f'href="/admin/editors/{ed}/remove"' in page
    # No button to lock oneself out.
    me = editor_id(session, "boss@example.com")
    assert f"/admin/editors/{me}/disable" not in page and f"/admin/editors/{me}/remove" not in page


def test_disabling_an_editor_ends_their_session_at_once_and_refuses_their_login(
    app, boss, session, caplog
):
    ed_browser = app.test_client()
    login(ed_browser, "ed@example.com")
    assert ed_browser.get("/admin/").status_code == 200

    response = post(boss, f"/admin/editors/{editor_id(session, 'ed@example.com')}/disable")

    assert response.status_code == 303 and response.headers["Location"] == "/admin/editors"
    page = boss.get("/admin/editors").get_data(as_text=True)
    assert "Disabled ed@example.com: they cannot log in, and their sessions have ended." in page
    assert "disabled since" in page
    assert ed_browser.get("/admin/").status_code == 302
    # The login says what a wrong password says: a stranger learns nothing from it. The log
    # tells the operator why.
    caplog.set_level(logging.INFO, logger="newsletters.editors")
    refused = ed_browser.post(
        "/admin/login",
        data={
            "email": "ed@example.com",
            "password": PASSWORD,
            "csrf_token": csrf_token(ed_browser),
        },
    )
    assert refused.status_code == 400
    assert "Wrong email or password." in refused.get_data(as_text=True)
    assert "login refused: the account of ed@example.com is disabled" in caplog.messages


def test_an_enabled_editor_logs_in_again(app, boss, session):
    ed = editor_id(session, "ed@example.com")
    post(boss, f"/admin/editors/{ed}/disable")

    response = post(boss, f"/admin/editors/{ed}/enable")

    assert response.status_code == 303
    assert "Enabled ed@example.com" in boss.get("/admin/editors").get_data(as_text=True)
    login(app.test_client(), "ed@example.com")


def test_an_admin_removes_an_editor_after_a_confirmation_page(app, boss, session):
    ed_browser = app.test_client()
    login(ed_browser, "ed@example.com")
    ed = editor_id(session, "ed@example.com")

    question = boss.get(f"/admin/editors/{ed}/remove").get_data(as_text=True)
    assert "Remove ed@example.com?" in question
    assert fresh(session, "ed@example.com") is not None
    response = post(boss, f"/admin/editors/{ed}/remove")

    assert response.status_code == 303
    assert "Removed ed@example.com." in boss.get("/admin/editors").get_data(as_text=True)
    assert fresh(session, "ed@example.com") is None
    assert ed_browser.get("/admin/").status_code == 302
    assert post(boss, f"/admin/editors/{ed}/remove").status_code == 404


def test_an_admin_reassigns_promotes_and_demotes_an_editor(app, boss, session):
    ed_browser = app.test_client()
    login(ed_browser, "ed@example.com")
    ed = editor_id(session, "ed@example.com")
    other = session.scalar(sa.select(Newsletter.id).where(Newsletter.slug == "other"))
    prefix = f"editor-{ed}-"

    moved = post(boss, f"/admin/editors/{ed}/access", {prefix + "newsletters": [str(other)]})

    assert moved.status_code == 303
    assert ed_browser.get("/admin/n/other/subscribers").status_code == 200
    assert ed_browser.get("/admin/n/briefing/subscribers").status_code == 403
    assert ed_browser.get("/admin/editors").status_code == 403

    promoted = post(boss, f"/admin/editors/{ed}/access", {prefix + "is_admin": "y"})
    assert promoted.status_code == 303
    assert ed_browser.get("/admin/editors").status_code == 200
    assert ed_browser.get("/admin/n/briefing/subscribers").status_code == 200

    demoted = post(boss, f"/admin/editors/{ed}/access", {})
    assert demoted.status_code == 303
    assert ed_browser.get("/admin/editors").status_code == 403
    assert fresh(session, "ed@example.com").newsletters == []


def test_an_admin_cannot_disable_remove_or_demote_themselves_in_the_browser(app, boss, session):
    me = editor_id(session, "boss@example.com")
    for path, data, words in (
        (f"/admin/editors/{me}/access", {}, "You cannot take away your own admin rights"),
        (f"/admin/editors/{me}/disable", None, "You cannot disable your own account"),
        (f"/admin/editors/{me}/remove", None, "You cannot remove your own account"),
    ):
        response = post(boss, path, data)
        assert response.status_code == 409, path
        assert words in response.get_data(as_text=True)
    assert fresh(session, "boss@example.com").is_admin
    assert fresh(session, "boss@example.com").is_active


def test_editor_controls_refuse_a_post_without_the_csrf_token(boss, session):
    ed = editor_id(session, "ed@example.com")
    for action in ("disable", "remove", "access"):
        assert boss.post(f"/admin/editors/{ed}/{action}").status_code == 400
    assert fresh(session, "ed@example.com").is_active


def test_editor_controls_refuse_an_unknown_newsletter(boss, session):
    ed = editor_id(session, "ed@example.com")

    response = post(boss, f"/admin/editors/{ed}/access", {f"editor-{ed}-newsletters": ["999"]})

    assert response.status_code == 400
    assert "Nothing was changed for ed@example.com" in response.get_data(as_text=True)
    assert [n.slug for n in fresh(session, "ed@example.com").newsletters] == ["briefing"]
