"""Settings: NEWSLETTERS_* from the environment, production's required ones, links from BASE_URL."""

import csv
import io
import os
import re
import stat
from email import message_from_bytes, policy
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from newsletters import create_app, db
from newsletters.config import ConfigError, _development_secret
from newsletters.models import Status, Subscription

# No connection is made at start-up: a production app may name a Redis that is not there.
REDIS_URL = "redis://127.0.0.1:6379"


@pytest.fixture
def environment(monkeypatch, tmp_path):
    """Clear every NEWSLETTERS_* variable, point the database at ``tmp_path``; return setenv."""
    for name in list(os.environ):
        if name.startswith("NEWSLETTERS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("NEWSLETTERS_DATABASE_URL", f"sqlite:///{tmp_path / 'config.db'}")
    monkeypatch.setenv("NEWSLETTERS_MAIL_URL", f"file://{tmp_path / 'mail'}")
    return monkeypatch.setenv


@pytest.fixture
def started():
    """Return a function that builds an app and disposes of its engine after the test."""
    apps = []

    def start(test_config=None):
        apps.append(create_app(test_config))
        return apps[-1]

    yield start
    for app in apps:
        with app.app_context():
            db.engine().dispose()


def test_production_without_secret_key_stops_with_an_error_naming_it(environment):
    environment("NEWSLETTERS_ENV", "production")
    environment("NEWSLETTERS_BASE_URL", "https://news.example.org")
    with pytest.raises(ConfigError) as error:
        create_app()
    assert "NEWSLETTERS_SECRET_KEY" in str(error.value)
    assert "\n" not in str(error.value)


def test_production_without_base_url_stops_with_an_error_naming_it(environment):
    environment("NEWSLETTERS_ENV", "production")
    environment("NEWSLETTERS_SECRET_KEY", "a-long-random-secret")
    with pytest.raises(ConfigError) as error:
        create_app()
    assert "NEWSLETTERS_BASE_URL" in str(error.value)


def test_production_with_both_set_starts_with_secure_session_cookies(environment, started):
    environment("NEWSLETTERS_ENV", "production")
    environment("NEWSLETTERS_RATELIMIT_STORAGE_URL", REDIS_URL)
    environment("NEWSLETTERS_SECRET_KEY", "a-long-random-secret")
    environment("NEWSLETTERS_BASE_URL", "https://news.example.org/")
    app = started()
    assert app.config["SECRET_KEY"] == "a-long-random-secret"
    assert app.config["BASE_URL"] == "https://news.example.org"
    assert app.config["SESSION_COOKIE_SECURE"] is True


def test_production_may_turn_secure_cookies_off_explicitly(environment, started):
    # Behind a proxy that speaks plain HTTP to a browser on the same host, for instance.
    environment("NEWSLETTERS_ENV", "production")
    environment("NEWSLETTERS_SECRET_KEY", "a-long-random-secret")
    environment("NEWSLETTERS_BASE_URL", "https://news.example.org")
    environment("NEWSLETTERS_RATELIMIT_STORAGE_URL", REDIS_URL)
    environment("NEWSLETTERS_SESSION_COOKIE_SECURE", "false")
    assert started().config["SESSION_COOKIE_SECURE"] is False


def production(environment) -> None:
    """Set what a production start needs, apart from the rate-limit storage."""
    environment("NEWSLETTERS_ENV", "production")
    environment("NEWSLETTERS_SECRET_KEY", "a-long-random-secret")
    environment("NEWSLETTERS_BASE_URL", "https://news.example.org")


def test_production_with_per_process_rate_limits_stops_with_an_error_naming_the_setting(
    environment,
):
    production(environment)  # RATELIMIT_STORAGE_URL left at memory://
    with pytest.raises(ConfigError) as error:
        create_app()
    assert str(error.value).startswith("NEWSLETTERS_RATELIMIT_STORAGE_URL must name a store")
    assert "NEWSLETTERS_RATELIMIT_PER_PROCESS=true" in str(error.value)
    assert "\n" not in str(error.value)


def test_production_may_count_rate_limits_per_process_when_it_says_so(environment, started):
    # A deployment of one process: its memory is the only count there is.
    production(environment)
    environment("NEWSLETTERS_RATELIMIT_PER_PROCESS", "true")
    app = started()
    assert app.config["RATELIMIT_STORAGE_URL"] == "memory://"
    assert app.test_client().get("/healthz").json["rate_limits"] == "memory"


def test_production_with_rate_limits_off_needs_no_shared_store(environment, started):
    production(environment)
    environment("NEWSLETTERS_RATELIMIT_ENABLED", "false")
    assert started().config["RATELIMIT_STORAGE_URL"] == "memory://"


def test_production_starts_with_redis_rate_limits_even_while_redis_is_away(environment, started):
    production(environment)
    environment("NEWSLETTERS_RATELIMIT_STORAGE_URL", "redis://127.0.0.1:1")  # nothing listens
    assert started().config["RATELIMIT_STORAGE_URL"] == "redis://127.0.0.1:1"


def test_the_per_process_opt_out_must_be_true_or_false(environment):
    production(environment)
    environment("NEWSLETTERS_RATELIMIT_PER_PROCESS", "yes")
    with pytest.raises(ConfigError, match="NEWSLETTERS_RATELIMIT_PER_PROCESS must be true or"):
        create_app()


def test_development_cookies_work_over_plain_http(environment, started):
    environment("NEWSLETTERS_SECRET_KEY", "dev")
    assert started().config["SESSION_COOKIE_SECURE"] is False


def test_environment_sets_settings_by_their_name(environment, started):
    environment("NEWSLETTERS_CONFIRM_TTL_HOURS", "5")
    environment("NEWSLETTERS_MAIL_FROM", "briefing@news.example.org")
    environment("NEWSLETTERS_SECRET_KEY", "dev")
    app = started()
    assert app.config["CONFIRM_TTL_HOURS"] == 5
    assert app.config["MAIL_FROM"] == "briefing@news.example.org"


def test_an_all_digit_secret_key_stays_text(environment, started):
    environment("NEWSLETTERS_SECRET_KEY", "12345678901234567890123456789012")
    app = started()
    assert app.config["SECRET_KEY"] == "12345678901234567890123456789012"


@pytest.mark.parametrize("value", ["soon", "-1", "true", "2.5"])
def test_a_setting_that_must_be_a_whole_number_is_checked(environment, value):
    environment("NEWSLETTERS_SECRET_KEY", "dev")
    environment("NEWSLETTERS_CONFIRM_TTL_HOURS", value)
    with pytest.raises(ConfigError, match="NEWSLETTERS_CONFIRM_TTL_HOURS must be a whole number"):
        create_app()


def test_test_config_overrides_the_environment(environment, started):
    environment("NEWSLETTERS_CONFIRM_TTL_HOURS", "5")
    environment("NEWSLETTERS_SECRET_KEY", "dev")
    assert started({"CONFIRM_TTL_HOURS": 7}).config["CONFIRM_TTL_HOURS"] == 7


def test_development_secret_is_generated_once_and_reused(tmp_path):
    instance = tmp_path / "instance"
    key = _development_secret(instance)
    assert len(key) >= 64 and re.fullmatch(r"[0-9a-f]+", key)
    assert _development_secret(instance) == key
    path = instance / "secret_key"
    assert path.read_text() == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_development_secret_differs_between_instance_folders(tmp_path):
    assert _development_secret(tmp_path / "one") != _development_secret(tmp_path / "two")


def test_an_emptied_secret_file_is_reported_not_used(tmp_path):
    (tmp_path / "secret_key").write_text("")
    with pytest.raises(ConfigError, match="secret_key is empty"):
        _development_secret(tmp_path)


def test_development_app_without_secret_key_uses_the_instance_folders(environment, started):
    app = started()
    assert app.config["SECRET_KEY"] == (Path(app.instance_path) / "secret_key").read_text()
    assert started().config["SECRET_KEY"] == app.config["SECRET_KEY"]


def test_links_in_mails_and_exports_use_base_url_whatever_the_host_header_says(
    app, client, runner, newsletter, session
):
    response = client.post(
        "/n/briefing/subscribe",
        data={"email": "reader@example.com"},
        headers={"Host": "evil.example", "X-Forwarded-Host": "evil.example"},
    )
    assert response.status_code == 303
    assert runner.invoke(args=["worker", "--once"]).exit_code == 0

    [path] = Path(urlsplit(app.config["MAIL_URL"]).path).glob("*.eml")
    mail = message_from_bytes(path.read_bytes(), policy=policy.default)
    for part in ("plain", "html"):
        body = mail.get_body((part,)).get_content()
        assert "https://news.example.org/confirm/" in body
        assert "evil.example" not in body

    session.execute(sa.update(Subscription).values(status=Status.CONFIRMED))
    [row] = csv.DictReader(io.StringIO(runner.invoke(args=["export", "briefing"]).stdout))
    assert row["unsubscribe_url"].startswith("https://news.example.org/unsubscribe/")


def test_healthz_answers_ok_when_the_database_answers(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "rate_limits": "off"}  # the tests turn limits off


def test_healthz_answers_503_when_the_database_does_not(environment, started, tmp_path):
    app = started({"DATABASE_URL": f"sqlite:///{tmp_path / 'missing' / 'folder' / 'x.db'}"})
    response = app.test_client().get("/healthz")
    assert response.status_code == 503


def test_sqlite_commits_reach_the_disk_before_a_signup_is_answered(tmp_path):
    from newsletters import db as database

    engine = database.create_engine(f"sqlite:///{tmp_path / 'durable.db'}")
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    engine.dispose()
