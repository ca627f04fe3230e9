"""API keys: the `apikey` commands, and the service that creates, checks and revokes keys."""

import hashlib
from datetime import timedelta

import pytest
import sqlalchemy as sa

from newsletters import apikeys, db, editors
from newsletters.db import utcnow
from newsletters.models import ApiKey, Editor, Newsletter

PASSWORD = "correct horse battery"


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
def ed(newsletter, make_editor):
    return make_editor("ed@example.com", newsletter)


def create_key(runner, email, *options) -> str:
    """Create a key with the command line; return the key it printed."""
    result = runner.invoke(args=["apikey", "create", email, *options])
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def authenticate(app, key) -> ApiKey | None:
    """Check ``key`` as an API request would, and commit as the request does."""
    with app.app_context():
        found = apikeys.authenticate(db.session(), key)
        db.session().commit()
        return found


def stored(session) -> list[ApiKey]:
    return list(
        session.scalars(
            sa.select(ApiKey).order_by(ApiKey.id).execution_options(populate_existing=True)
        )
    )


def test_create_prints_the_key_once_and_stores_only_its_hash(runner, ed, session):
    result = runner.invoke(args=["apikey", "create", ed, "--name", "shop signups"])

    assert result.exit_code == 0, result.output
    key = result.stdout.strip()
    assert result.stdout == key + "\n"
    assert key.startswith("nlk_") and len(key) >= 4 + 43  # 256 bits in base64url
    assert "copy it now, it is not shown again" in result.stderr
    assert key not in result.stderr
    [row] = stored(session)
    assert row.digest == hashlib.sha256(key.encode()).hexdigest()
    assert row.prefix == key[:12] and row.name == "shop signups" and not row.read_only
    # Nothing in the table, nor in the listing, holds the key itself.
    values = session.execute(sa.select(ApiKey.__table__)).one()
    assert not any(key in str(value) for value in values)
    listed = runner.invoke(args=["apikey", "list"])
    assert key not in listed.output and row.prefix in listed.output


def test_two_keys_differ_and_the_default_name_says_where_it_came_from(runner, ed, session):
    first, second = create_key(runner, ed), create_key(runner, ed)

    assert first != second
    assert [k.name.startswith("command line, ") for k in stored(session)] == [True, True]


def test_the_key_authenticates_as_its_editor_and_nothing_else_does(app, runner, ed):
    key = create_key(runner, ed, "--read-only")

    found = authenticate(app, key)

    assert found is not None and found.editor.email == ed and found.read_only
    assert authenticate(app, key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert authenticate(app, "nlk_" + "x" * 43) is None
    assert authenticate(app, key[4:]) is None
    assert authenticate(app, "") is None
    assert authenticate(app, key + "x" * 1000) is None


def test_a_revoked_key_fails_at_once(app, runner, ed, session):
    key = create_key(runner, ed)
    assert authenticate(app, key) is not None
    [row] = stored(session)

    result = runner.invoke(args=["apikey", "revoke", str(row.id)])

    assert result.exit_code == 0, result.output
    assert f"revoked API key {row.id} ({row.prefix}…" in result.output
    assert authenticate(app, key) is None
    assert stored(session)[0].revoked_at is not None
    assert "\trevoked " in runner.invoke(args=["apikey", "list", ed]).output


def test_a_disabled_editors_key_fails_at_once_and_they_get_no_new_one(app, runner, ed, session):
    key = create_key(runner, ed)
    assert authenticate(app, key) is not None

    assert runner.invoke(args=["editor", "disable", ed]).exit_code == 0

    assert authenticate(app, key) is None
    refused = runner.invoke(args=["apikey", "create", ed])
    assert refused.exit_code == 1
    assert f"the account of {ed} is disabled" in refused.stderr
    assert len(stored(session)) == 1
    # Enabling the account gives the key back: it was stopped, not revoked.
    assert runner.invoke(args=["editor", "enable", ed]).exit_code == 0
    assert authenticate(app, key) is not None


def test_last_used_is_written_on_use_at_most_once_a_minute(app, runner, ed, session):
    key = create_key(runner, ed)
    assert stored(session)[0].last_used_at is None

    before = utcnow()
    authenticate(app, key)
    first = stored(session)[0].last_used_at
    assert first is not None and first >= before - timedelta(seconds=1)

    authenticate(app, key)
    assert stored(session)[0].last_used_at == first

    # A use more than a minute after the last one is written again.
    earlier = utcnow() - timedelta(minutes=2)
    session.execute(sa.update(ApiKey).values(last_used_at=earlier))
    session.commit()
    authenticate(app, key)
    assert stored(session)[0].last_used_at > earlier + timedelta(minutes=1)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("   ", "give the key a name"),
        ("x" * 101, "it may have 100 at most"),
        ("shop\nsignups", "control character"),
        ("shop\x00", "control character"),
    ],
)
def test_a_bad_name_is_refused_with_the_rule_and_no_key_is_made(runner, ed, session, name, message):
    result = runner.invoke(args=["apikey", "create", ed, "--name", name])

    assert result.exit_code == 1, result.output
    assert message in result.stderr
    assert result.stdout == ""
    assert stored(session) == []


def test_the_service_refuses_an_empty_name(app, ed):
    with app.app_context():
        session = db.session()
        editor = editors.find(session, ed)
        with pytest.raises(apikeys.ApiKeyError, match="give the key a name"):
            apikeys.create(session, editor, "  ")
        api_key, _ = apikeys.create(session, editor, " " + "x" * 100 + " ")
        assert api_key.name == "x" * 100


def test_an_unknown_editor_or_key_is_a_clear_error(runner, ed, session):
    created = runner.invoke(args=["apikey", "create", "nobody@example.com"])
    listed = runner.invoke(args=["apikey", "list", "nobody@example.com"])
    revoked = runner.invoke(args=["apikey", "revoke", "99"])

    assert created.exit_code == listed.exit_code == revoked.exit_code == 1
    assert "there is no editor 'nobody@example.com'" in created.stderr
    assert "there is no editor 'nobody@example.com'" in listed.stderr
    assert "there is no API key number 99" in revoked.stderr
    assert stored(session) == []


def test_list_shows_every_key_or_one_editors(runner, ed, make_editor):
    boss = make_editor("boss@example.com", is_admin=True)
    create_key(runner, ed, "--name", "shop", "--read-only")
    create_key(runner, boss, "--name", "crm")

    everybody = runner.invoke(args=["apikey", "list"]).output.splitlines()
    mine = runner.invoke(args=["apikey", "list", ed]).output.splitlines()

    assert [line.split("\t")[2:5] for line in everybody] == [
        ["crm", boss, "read-write"],
        ["shop", ed, "read-only"],
    ]
    assert [line.split("\t")[2] for line in mine] == ["shop"]
    assert mine[0].split("\t")[5].startswith("created ")
    assert mine[0].split("\t")[6:] == ["never used", "active"]


def test_an_admins_key_reaches_every_newsletter_an_editors_only_theirs(
    app, runner, ed, make_editor, session
):
    session.add(Newsletter(slug="other", name="Other News"))
    session.commit()
    boss = make_editor("boss@example.com", is_admin=True)
    ed_key, boss_key = create_key(runner, ed), create_key(runner, boss)

    with app.app_context():
        s = db.session()
        briefing, other = (
            s.scalar(sa.select(Newsletter).where(Newsletter.slug == slug))
            for slug in ("briefing", "other")
        )
        mine, admins = apikeys.authenticate(s, ed_key), apikeys.authenticate(s, boss_key)
        assert apikeys.may_use(mine, briefing) and not apikeys.may_use(mine, other)
        assert apikeys.may_use(admins, briefing) and apikeys.may_use(admins, other)
        assert [n.slug for n in apikeys.newsletters_of(s, mine)] == ["briefing"]
        assert [n.slug for n in apikeys.newsletters_of(s, admins)] == ["briefing", "other"]
        apikeys.revoke(s, mine)
        assert not apikeys.may_use(mine, briefing) and apikeys.newsletters_of(s, mine) == []


def test_removing_an_editor_removes_their_keys(app, runner, ed, session):
    key = create_key(runner, ed)

    removed = runner.invoke(args=["editor", "remove", ed, "--yes"])

    assert removed.exit_code == 0, removed.output
    assert stored(session) == [] and authenticate(app, key) is None
    assert session.scalar(sa.select(sa.func.count()).select_from(Editor)) == 0
