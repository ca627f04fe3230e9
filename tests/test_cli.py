"""The `newsletters` command line: schema, newsletters, purge, the outbox, the console script."""

import csv
import io
import os
import re
import subprocess
import sysconfig
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from newsletters import apikeys, create_app, db, editors, migrations, tokens
from newsletters.db import utcnow
from newsletters.models import (
    Base,
    IdempotentRequest,
    Newsletter,
    Status,
    Subscriber,
    Subscription,
    Token,
    TokenPurpose,
)

HEAD = ScriptDirectory.from_config(migrations.alembic_config()).get_current_head()
SCRIPT = Path(sysconfig.get_path("scripts")) / "newsletters"


@pytest.fixture
def empty_app(tmp_path):
    """Return an app on a new, empty SQLite file: no schema at all."""
    app = create_app(
        {
            "TESTING": True,
            "DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}",
            "SECRET_KEY": "test-secret",
            "MAIL_URL": f"file://{tmp_path / 'mail'}",
        }
    )
    yield app
    with app.app_context():
        db.engine().dispose()


def table_names(app) -> set[str]:
    with app.app_context():
        names = sa.inspect(db.engine()).get_table_names()
        return {name for name in names if not name.startswith(UNMODELLED_TABLES)}


# Made by a migration on purpose, beyond what the models can say: PostgreSQL's prefix search
# on addresses needs an index in the C collation (migration 0004).
UNMODELLED_INDEXES = {
    "ix_subscriber_email_c",
    "ix_subscriber_email_trgm",
    "ix_subscription_name_trgm",
}
# ... and the subscriber search's FTS5 table on SQLite, with its own tables (migration 0017).
UNMODELLED_TABLES = "subscription_search"


def schema_differences(app) -> list:
    """Return what separates the migrated database from the models (nothing, when in step)."""
    with app.app_context(), db.engine().connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    return [
        d
        for d in differences
        if not (d[0] == "remove_index" and d[1].name in UNMODELLED_INDEXES)
        and not (d[0] == "remove_table" and d[1].name.startswith(UNMODELLED_TABLES))
    ]


def test_db_upgrade_creates_the_schema_on_an_empty_database(empty_app):
    assert table_names(empty_app) == set()
    result = empty_app.test_cli_runner().invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert f"database at {HEAD}" in result.output
    assert table_names(empty_app) == set(Base.metadata.tables) | {"alembic_version"}
    assert schema_differences(empty_app) == []


def test_db_upgrade_twice_changes_nothing_the_second_time(empty_app):
    runner = empty_app.test_cli_runner()
    assert runner.invoke(args=["db", "upgrade"]).exit_code == 0
    runner.invoke(args=["newsletter", "create", "briefing", "--name", "Morning Briefing"])
    again = runner.invoke(args=["db", "upgrade"])
    assert again.exit_code == 0, again.output
    assert f"database at {HEAD}" in again.output
    assert "briefing\tMorning Briefing" in runner.invoke(args=["newsletter", "list"]).output


def test_migrated_schema_matches_the_models(app):
    # On each database the suite runs on: the migrations build what the models describe.
    assert schema_differences(app) == []


def test_db_upgrade_on_an_up_to_date_database_keeps_its_data(runner, newsletter, session):
    result = runner.invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert f"database at {HEAD}" in result.output
    assert session.scalars(sa.select(Newsletter.slug)).all() == ["briefing"]


def newsletters_in(session) -> list[tuple[str, str]]:
    return session.execute(sa.select(Newsletter.slug, Newsletter.name)).all()


def test_newsletter_create_then_list_shows_it(runner, session):
    created = runner.invoke(
        args=["newsletter", "create", "briefing", "--name", " Morning Briefing "]
    )
    assert created.exit_code == 0, created.output
    assert "created briefing: https://news.example.org/n/briefing" in created.output
    assert newsletters_in(session) == [("briefing", "Morning Briefing")]

    listed = runner.invoke(args=["newsletter", "list"])
    assert listed.exit_code == 0, listed.output
    assert listed.output == "briefing\tMorning Briefing\t0 confirmed\n"


def test_newsletter_list_counts_confirmed_subscriptions_only(runner, client, newsletter, session):
    for email in ("one@example.com", "two@example.com"):
        client.post("/n/briefing/subscribe", data={"email": email})
    session.execute(
        sa.update(Subscription)
        .where(
            Subscription.subscriber_id
            == sa.select(Subscriber.id).filter_by(email="one@example.com").scalar_subquery()
        )
        .values(status=Status.CONFIRMED, confirmed_at=utcnow())
    )
    assert runner.invoke(args=["newsletter", "list"]).output == (
        "briefing\tMorning Briefing\t1 confirmed\n"
    )


@pytest.mark.parametrize(
    "slug", ["Bad Slug!", "Briefing", "-briefing", "brief/ing", "briefing\n", "b" * 65]
)
def test_bad_slug_is_refused_with_the_rule_and_nothing_is_created(runner, session, slug):
    result = runner.invoke(args=["newsletter", "create", "--name", "Morning Briefing", "--", slug])
    assert result.exit_code != 0
    assert "Use lower-case letters, digits and hyphens" in result.output
    assert "Traceback" not in result.output
    assert newsletters_in(session) == []


@pytest.mark.parametrize("name", ["", "   ", "n" * 201])
def test_empty_or_overlong_name_is_refused_and_nothing_is_created(runner, session, name):
    result = runner.invoke(args=["newsletter", "create", "briefing", "--name", name])
    assert result.exit_code != 0
    assert "Name: give 1 to 200 characters." in result.output
    assert newsletters_in(session) == []


def test_duplicate_slug_is_refused_and_the_first_newsletter_is_kept(runner, session):
    runner.invoke(args=["newsletter", "create", "briefing", "--name", "Morning Briefing"])
    result = runner.invoke(args=["newsletter", "create", "briefing", "--name", "Other"])
    assert result.exit_code != 0
    assert "The slug 'briefing' is taken" in result.output
    assert newsletters_in(session) == [("briefing", "Morning Briefing")]


def sign_up(client, email):
    response = client.post("/n/briefing/subscribe", data={"email": email})
    assert response.status_code == 303


def subscription_of(session, email) -> Subscription | None:
    session.expire_all()
    return session.scalar(sa.select(Subscription).join(Subscriber).where(Subscriber.email == email))


def confirm_token_of(session, email) -> Token | None:
    session.expire_all()
    return session.scalar(
        sa.select(Token)
        .join(Subscriber)
        .where(Subscriber.email == email, Token.purpose == TokenPurpose.CONFIRM)
    )


def age(session, email, hours, ttl_hours=72):
    """Make ``email``'s signup ``hours`` old, its confirmation link with it."""
    then = utcnow() - timedelta(hours=hours)
    subscription, token = subscription_of(session, email), confirm_token_of(session, email)
    subscription.optin_at = then
    token.created_at = then
    token.expires_at = then + timedelta(hours=ttl_hours)
    session.commit()


def test_purge_removes_old_pending_signups_and_expired_tokens_and_keeps_the_rest(
    app, client, runner, newsletter, session
):
    for email in ("old@example.com", "fresh@example.com", "kept@example.com"):
        sign_up(client, email)
    with app.app_context():
        kept_link = tokens.secret_for(confirm_token_of(session, "kept@example.com"))
    assert client.post(f"/confirm/{kept_link}").status_code == 200
    age(session, "old@example.com", hours=73)
    age(session, "kept@example.com", hours=200)

    result = runner.invoke(args=["purge"])
    assert result.exit_code == 0, result.output
    assert (
        result.output
        == "purged 1 pending signups, 2 expired tokens and 0 API answers kept for retries\n"
    )

    assert subscription_of(session, "old@example.com") is None
    assert confirm_token_of(session, "old@example.com") is None
    assert subscription_of(session, "fresh@example.com").status == Status.PENDING
    assert confirm_token_of(session, "fresh@example.com") is not None
    kept = subscription_of(session, "kept@example.com")
    assert kept.status == Status.CONFIRMED
    assert confirm_token_of(session, "kept@example.com") is None
    # Unsubscribe links never expire: the confirmed reader can still leave.
    assert kept.unsubscribe_token_id is not None
    [row] = csv.DictReader(io.StringIO(runner.invoke(args=["export", "briefing"]).stdout))
    assert row["email"] == "kept@example.com"
    response = client.post(
        urlsplit(row["unsubscribe_url"]).path, data={"List-Unsubscribe": "One-Click"}
    )
    assert response.status_code == 200


def test_purge_leaves_a_fresh_signup_confirmable(app, client, runner, newsletter, session):
    sign_up(client, "fresh@example.com")
    with app.app_context():
        link = tokens.secret_for(confirm_token_of(session, "fresh@example.com"))
    runner.invoke(args=["purge"])
    assert client.post(f"/confirm/{link}").status_code == 200
    assert subscription_of(session, "fresh@example.com").status == Status.CONFIRMED


@pytest.mark.settings(CONFIRM_TTL_HOURS=5)
def test_purge_follows_confirm_ttl_hours(client, runner, newsletter, session):
    sign_up(client, "six@example.com")
    sign_up(client, "four@example.com")
    age(session, "six@example.com", hours=6, ttl_hours=5)
    age(session, "four@example.com", hours=4, ttl_hours=5)
    result = runner.invoke(args=["purge"])
    assert result.exit_code == 0, result.output
    assert (
        result.output
        == "purged 1 pending signups, 1 expired tokens and 0 API answers kept for retries\n"
    )
    assert subscription_of(session, "six@example.com") is None
    assert subscription_of(session, "four@example.com").status == Status.PENDING


def test_outbox_status_prints_the_count_of_each_state(client, runner, newsletter):
    empty = runner.invoke(args=["outbox", "status"])
    assert empty.exit_code == 0, empty.output
    assert empty.output == "oldest due\t-\n"

    for email in ("one@example.com", "two@example.com"):
        sign_up(client, email)
    waiting = runner.invoke(args=["outbox", "status"]).output.splitlines()
    assert waiting[0] == "pending\t2"
    assert re.fullmatch(r"oldest due\t\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+\+00:00", waiting[1])

    assert runner.invoke(args=["worker", "--once"]).exit_code == 0
    sent = runner.invoke(args=["outbox", "status"]).output
    assert sent == "sent\t2\noldest due\t-\n"


def run_script(tmp_path, *args, **environment):
    """Run the installed ``newsletters`` console script on a SQLite file in ``tmp_path``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTERS_")}
    env |= {
        "NEWSLETTERS_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "NEWSLETTERS_MAIL_URL": f"file://{tmp_path / 'mail'}",
        "NEWSLETTERS_SECRET_KEY": "test-secret",
    } | environment
    return subprocess.run(
        [str(SCRIPT), *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )


def test_console_script_is_installed_and_lists_the_commands(tmp_path):
    assert SCRIPT.is_file() and os.access(SCRIPT, os.X_OK)
    result = run_script(tmp_path, "--help")
    assert result.returncode == 0, result.stderr
    commands = set(re.findall(r"^  ([a-z]+) ", result.stdout.split("Commands:")[1], re.M))
    assert {"db", "newsletter", "export", "import", "editor", "worker", "purge", "outbox"} <= (
        commands
    )


def test_console_script_migrates_adds_a_newsletter_and_exports(tmp_path):
    assert run_script(tmp_path, "db", "upgrade").returncode == 0
    created = run_script(tmp_path, "newsletter", "create", "briefing", "--name", "Briefing")
    assert created.returncode == 0, created.stderr
    listed = run_script(tmp_path, "newsletter", "list")
    assert listed.stdout == "briefing\tBriefing\t0 confirmed\n"
    exported = run_script(tmp_path, "export", "briefing")
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout.startswith("email,name,status,")


def test_console_script_reports_a_missing_production_setting_in_one_line(tmp_path):
    result = run_script(
        tmp_path, "db", "upgrade", NEWSLETTERS_ENV="production", NEWSLETTERS_SECRET_KEY=""
    )
    assert result.returncode == 1
    assert result.stderr == (
        "Error: NEWSLETTERS_SECRET_KEY must be set when NEWSLETTERS_ENV=production\n"
    )
    assert not (tmp_path / "cli.db").exists()


def test_purge_removes_api_retry_answers_older_than_their_keeping_time(app, runner, session):
    with app.app_context():
        editor = editors.create(db.session(), "api@example.org", "a long password", is_admin=True)
        api_key, _ = apikeys.create(db.session(), editor, "crm")
        db.session().commit()
        key_id = api_key.id
    hours = app.config["API_IDEMPOTENCY_HOURS"]
    for name, age in (("old", hours + 1), ("fresh", hours - 1)):
        session.add(
            IdempotentRequest(
                api_key_id=key_id,
                key=name,
                request_digest="0" * 64,
                status_code=202,
                body={},
                created_at=utcnow() - timedelta(hours=age),
            )
        )
    session.commit()
    result = runner.invoke(args=["purge"])
    assert "1 API answers kept for retries" in result.output
    assert session.scalars(sa.select(IdempotentRequest.key)).all() == ["fresh"]
