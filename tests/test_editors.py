"""Editors' accounts as a service and on the command line: disable, enable, remove, reassign."""

import threading

import pytest
import sqlalchemy as sa

from newsletters import db, editors
from newsletters.models import Editor, ExportRecord, Newsletter

PASSWORD = "correct horse battery"


@pytest.fixture
def people(app, session, newsletter):
    """Add two admins, an editor of 'briefing' and a newsletter 'other'; return their ids."""
    session.add(Newsletter(slug="other", name="Other News"))
    session.commit()
    with app.app_context():
        s = db.session()
        briefing = s.scalar(sa.select(Newsletter).where(Newsletter.slug == "briefing"))
        made = {
            "boss": editors.create(s, "boss@example.com", PASSWORD, is_admin=True),
            "deputy": editors.create(s, "deputy@example.com", PASSWORD, is_admin=True),
            "ed": editors.create(s, "ed@example.com", PASSWORD, newsletters=[briefing]),
        }
        s.commit()
        return {name: editor.id for name, editor in made.items()}


def editor(session, email) -> Editor:
    return session.scalar(
        sa.select(Editor).where(Editor.email == email).execution_options(populate_existing=True)
    )


def test_a_disabled_editor_cannot_authenticate_and_enabling_lets_them_back(app, people):
    with app.app_context():
        s = db.session()
        ed = s.get(Editor, people["ed"])
        version = ed.session_version
        editors.disable(s, ed)
        s.commit()
        assert not ed.is_active and ed.session_version == version + 1
        assert editors.authenticate(s, "ed@example.com", PASSWORD) is None

        editors.enable(s, ed)
        s.commit()
        assert editors.authenticate(s, "ed@example.com", PASSWORD) is ed
        # Sessions from before the disable stay ended.
        assert ed.session_version == version + 1


def test_the_last_active_admin_cannot_be_disabled_removed_or_demoted(app, people):
    with app.app_context():
        s = db.session()
        boss, deputy = s.get(Editor, people["boss"]), s.get(Editor, people["deputy"])
        editors.disable(s, deputy)
        s.commit()
        for change in (
            lambda: editors.disable(s, boss),
            lambda: editors.remove(s, boss),
            lambda: editors.set_admin(s, boss, False),
        ):
            with pytest.raises(editors.AccountError, match="boss@example.com is the last active"):
                change()
        s.rollback()
        assert boss.is_admin and boss.is_active
        # A disabled admin may go; an editor may go too.
        editors.remove(s, deputy)
        editors.remove(s, s.get(Editor, people["ed"]))
        s.commit()
        assert [e.email for e in editors.listing(s)] == ["boss@example.com"]


def test_an_admin_cannot_disable_remove_or_demote_themselves(app, people):
    with app.app_context():
        s = db.session()
        boss = s.get(Editor, people["boss"])
        for change, words in (
            (editors.disable, "disable your own account"),
            (editors.remove, "remove your own account"),
            (lambda s, e, by: editors.set_admin(s, e, False, by=by), "your own admin rights"),
        ):
            with pytest.raises(editors.AccountError, match=words):
                change(s, boss, by=boss)
        # Another admin may.
        editors.set_admin(s, boss, False, by=s.get(Editor, people["deputy"]))
        s.commit()
        assert not boss.is_admin


def test_reassigning_replaces_the_newsletters_an_editor_edits(app, people):
    with app.app_context():
        s = db.session()
        ed = s.get(Editor, people["ed"])
        other = s.scalar(sa.select(Newsletter).where(Newsletter.slug == "other"))
        editors.set_newsletters(s, ed, [other])
        s.commit()
    with app.app_context():
        ed = db.session().get(Editor, people["ed"])
        assert [n.slug for n in ed.newsletters] == ["other"]


def test_removing_an_editor_keeps_their_exports_in_the_log(app, people, session):
    session.add(
        ExportRecord(
            newsletter_id=session.scalar(
                sa.select(Newsletter.id).where(Newsletter.slug == "briefing")
            ),
            editor_id=people["ed"],
            via="admin",
            status="confirmed",
            format="csv",
            rows=3,
        )
    )
    session.commit()
    with app.app_context():
        s = db.session()
        editors.remove(s, s.get(Editor, people["ed"]))
        s.commit()
    [record] = session.scalars(sa.select(ExportRecord)).all()
    assert (record.rows, record.editor_id) == (3, None)


def test_two_admins_disabling_each_other_at_once_leave_one_active(app, people, session):
    editors_session_ready = threading.Event()
    outcome = {}

    def disable_deputy():
        with app.app_context():
            s = db.session()
            editors_session_ready.set()
            try:
                editors.disable(s, s.get(Editor, people["deputy"]))
                s.commit()
                outcome["deputy"] = "disabled"
            except editors.AccountError as exc:
                s.rollback()
                outcome["deputy"] = str(exc)

    with app.app_context():
        s = db.session()
        editors.disable(s, s.get(Editor, people["boss"]))
        # The other admin's request arrives while this one is not yet committed.
        thread = threading.Thread(target=disable_deputy)
        thread.start()
        editors_session_ready.wait(5)
        thread.join(0.5)
        assert thread.is_alive(), "the second disable did not wait for the first"
        s.commit()
    thread.join(30)

    assert "deputy@example.com is the last active admin" in outcome["deputy"]
    active = session.scalars(
        sa.select(Editor.email).where(Editor.is_admin, Editor.disabled_at.is_(None))
    ).all()
    assert active == ["deputy@example.com"]


def test_editor_list_shows_each_editor_s_role_newsletters_and_state(runner, people):
    assert runner.invoke(args=["editor", "disable", "deputy@example.com"]).exit_code == 0

    result = runner.invoke(args=["editor", "list"])

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "boss@example.com\tadmin (every newsletter)\tactive"
    assert lines[1].startswith("deputy@example.com\tadmin (every newsletter)\tdisabled since ")
    assert lines[2] == "ed@example.com\teditor of briefing\tactive"


def test_editor_disable_and_enable_from_the_command_line(runner, people, session):
    result = runner.invoke(args=["editor", "disable", "Ed@Example.com"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ed@example.com: disabled since ")
    assert editor(session, "ed@example.com").disabled_at is not None

    result = runner.invoke(args=["editor", "enable", "ed@example.com"])
    assert (result.exit_code, result.output) == (0, "ed@example.com: active\n")
    assert editor(session, "ed@example.com").is_active


def test_editor_remove_asks_first_and_removes_with_yes(runner, people, session):
    refused = runner.invoke(args=["editor", "remove", "ed@example.com"], input="n\n")
    assert refused.exit_code == 1 and "Aborted" in refused.output
    assert editor(session, "ed@example.com") is not None

    result = runner.invoke(args=["editor", "remove", "ed@example.com", "--yes"])

    assert (result.exit_code, result.output) == (0, "removed ed@example.com\n")
    assert editor(session, "ed@example.com") is None


def test_editor_set_promotes_demotes_and_reassigns(runner, people, session):
    result = runner.invoke(
        args=[
            "editor",
            "set",
            "ed@example.com",
            "--newsletter",
            "other",
            "--newsletter",
            "briefing",
            "--newsletter",
            "other",
        ]
    )
    assert (result.exit_code, result.output) == (0, "ed@example.com: editor of briefing, other\n")

    result = runner.invoke(args=["editor", "set", "ed@example.com", "--admin"])
    assert (result.exit_code, result.output) == (0, "ed@example.com: admin (every newsletter)\n")

    result = runner.invoke(
        args=["editor", "set", "ed@example.com", "--no-admin", "--no-newsletters"]
    )
    assert (result.exit_code, result.output) == (0, "ed@example.com: editor of no newsletter\n")
    ed = editor(session, "ed@example.com")
    assert not ed.is_admin and ed.newsletters == []


def test_editor_commands_refuse_the_last_admin_and_unknown_addresses_clearly(
    runner, people, session
):
    assert runner.invoke(args=["editor", "remove", "deputy@example.com", "--yes"]).exit_code == 0
    for args in (
        ["editor", "disable", "boss@example.com"],
        ["editor", "remove", "boss@example.com", "--yes"],
        ["editor", "set", "boss@example.com", "--no-admin"],
    ):
        result = runner.invoke(args=args)
        assert result.exit_code == 1, args
        assert (
            "Error: boss@example.com is the last active admin: make another editor an admin "
            "before you " in result.output
        )
    assert editor(session, "boss@example.com").is_admin

    unknown = runner.invoke(args=["editor", "disable", "nobody@example.com"])
    assert unknown.exit_code == 1
    assert "there is no editor 'nobody@example.com' (see 'newsletters editor list')" in (
        unknown.output
    )
    nothing = runner.invoke(args=["editor", "set", "ed@example.com"])
    assert nothing.exit_code == 2 and "say what to change" in nothing.output
    unknown_newsletter = runner.invoke(
        args=["editor", "set", "ed@example.com", "--newsletter", "nope"]
    )
    assert unknown_newsletter.exit_code == 1 and "there is no newsletter 'nope'" in (
        unknown_newsletter.output
    )
