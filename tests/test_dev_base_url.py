"""`PORT=8000 make run`: the commands run in another shell print links to port 8000.

`newsletters dev` records the URL it serves in the instance folder; in development, an app
whose BASE_URL nobody set takes it from there. An explicit BASE_URL wins, and production
never reads the file.
"""

import csv
import io
import os

import pytest
from flask import Flask

from newsletters import cli, create_app, db
from newsletters.config import DEV_BASE_URL_FILE, ConfigError
from tests.conftest import process_signups


@pytest.fixture
def instance(monkeypatch, tmp_path):
    """Give every app of this test its own instance folder, and no NEWSLETTERS_* variable."""
    for name in list(os.environ):
        if name.startswith("NEWSLETTERS_"):
            monkeypatch.delenv(name)
    folder = tmp_path / "instance"
    # Where Flask looks for the instance folder: the checkout's own must stay untouched.
    monkeypatch.setattr(Flask, "auto_find_instance_path", lambda self: str(folder))
    monkeypatch.setenv("NEWSLETTERS_DATABASE_URL", f"sqlite:///{tmp_path / 'dev.db'}")
    monkeypatch.setenv("NEWSLETTERS_MAIL_URL", f"file://{tmp_path / 'mail'}")
    return folder


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


@pytest.fixture
def served(monkeypatch):
    """Stop `newsletters dev` short of serving; return the (host, port) it would serve on."""
    calls = []
    monkeypatch.setattr(cli, "run_simple", lambda host, port, app, **kw: calls.append((host, port)))
    monkeypatch.setattr(cli.worker, "start_in_thread", lambda app, report: None)
    monkeypatch.setattr(cli.demo, "serve", lambda app, port: f"http://127.0.0.1:{port}/")
    return calls


def run_dev(app, **env):
    result = app.test_cli_runner().invoke(args=["dev"], env=env)
    assert result.exit_code == 0, result.output
    return result


def test_commands_beside_the_dev_server_print_links_to_the_port_it_serves(
    instance, started, served
):
    run_dev(started(), PORT="8000")  # PORT=8000 make run
    assert served == [("127.0.0.1", 8000)]

    # Another shell: a new process, a new app.
    embed = started().test_cli_runner().invoke(args=["newsletter", "embed", "demo"])
    assert embed.exit_code == 0, embed.output
    assert 'action="http://127.0.0.1:8000/n/demo/subscribe"' in embed.output
    assert 'src="http://127.0.0.1:8000/n/demo/embed.js"' in embed.output
    assert "5000" not in embed.output

    other_shell = started()
    signup = other_shell.test_client().post("/n/demo/subscribe", data={"email": "r@example.com"})
    assert signup.status_code == 303
    process_signups(other_shell)
    exported = other_shell.test_cli_runner().invoke(args=["export", "demo", "--status", "all"])
    [row] = csv.DictReader(io.StringIO(exported.stdout))
    assert row["unsubscribe_url"].startswith("http://127.0.0.1:8000/unsubscribe/")


def test_newsletter_create_beside_the_dev_server_prints_a_link_to_its_port(
    instance, started, served
):
    run_dev(started(), PORT="8000")
    created = (
        started()
        .test_cli_runner()
        .invoke(args=["newsletter", "create", "weekly", "--name", "Weekly"])
    )
    assert created.exit_code == 0, created.exception
    assert created.output == "created weekly: http://127.0.0.1:8000/n/weekly\n"


def test_the_dev_server_on_another_port_replaces_the_recorded_url(instance, started, served):
    run_dev(started(), PORT="8000")
    run_dev(started(), PORT=None)  # make run, the default port
    assert (instance / DEV_BASE_URL_FILE).read_text() == "http://127.0.0.1:5000\n"
    assert started().config["BASE_URL"] == "http://127.0.0.1:5000"


def test_an_explicit_base_url_wins_over_the_dev_servers(instance, started, served, monkeypatch):
    run_dev(started(), PORT="8000")
    monkeypatch.setenv("NEWSLETTERS_BASE_URL", "https://news.example.org")
    embed = started().test_cli_runner().invoke(args=["newsletter", "embed", "demo"])
    assert 'action="https://news.example.org/n/demo/subscribe"' in embed.output
    assert "8000" not in embed.output


def test_a_dev_server_with_an_explicit_base_url_keeps_it_and_records_nothing(
    instance, started, served, monkeypatch
):
    monkeypatch.setenv("NEWSLETTERS_BASE_URL", "https://tunnel.example.net")
    app = started()
    run_dev(app, PORT="8000")
    assert app.config["BASE_URL"] == "https://tunnel.example.net"
    assert not (instance / DEV_BASE_URL_FILE).exists()


def test_an_instance_config_base_url_wins_over_the_dev_servers(instance, started, served):
    run_dev(started(), PORT="8000")
    (instance / "config.py").write_text('BASE_URL = "https://staging.example.org"\n')
    assert started().config["BASE_URL"] == "https://staging.example.org"


def test_production_ignores_the_dev_servers_url(instance, started, served, monkeypatch):
    run_dev(started(), PORT="8000")
    monkeypatch.setenv("NEWSLETTERS_ENV", "production")
    monkeypatch.setenv("NEWSLETTERS_SECRET_KEY", "a-long-random-secret")
    monkeypatch.setenv("NEWSLETTERS_RATELIMIT_PER_PROCESS", "true")
    with pytest.raises(ConfigError, match="NEWSLETTERS_BASE_URL must be set"):
        started()
