"""The database away, cut off or failing mid-signup: a readable 503, nothing half-written, and
the app and the worker carry on once it is back."""

import logging

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError

from newsletters import create_app, db
from newsletters.mail import worker
from newsletters.models import (
    ConsentEvent,
    OutboxMessage,
    Status,
    Subscriber,
    Subscription,
    Token,
)

from .conftest import free_port

UNAVAILABLE = "The service is briefly unavailable. Nothing was saved; try again."
JSON = {"Accept": "application/json"}


@pytest.fixture(
    params=["postgresql_port_closed", "sqlite_folder_missing"],
)
def unreachable_app(request, tmp_path):
    """Return an app whose database cannot be reached at all."""
    url = {
        "postgresql_port_closed": f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/none",
        "sqlite_folder_missing": f"sqlite:///{tmp_path / 'missing' / 'newsletters.db'}",
    }[request.param]
    app = create_app(
        {
            "TESTING": True,
            "DATABASE_URL": url,
            "SECRET_KEY": "test-secret",
            "MAIL_URL": f"file://{tmp_path / 'mail'}",
            "RATELIMIT_ENABLED": False,
        }
    )
    yield app
    with app.app_context():
        db.engine().dispose()


def no_unexpected_errors(caplog) -> bool:
    return not [r for r in caplog.records if r.getMessage() == "unexpected error"]


@pytest.mark.parametrize(
    "method, path, send",
    [
        ("GET", "/", {}),
        ("GET", "/n/briefing", {}),
        ("POST", "/n/briefing/subscribe", {"data": {"email": "reader@example.com"}}),
        ("POST", "/n/briefing/embed", {"data": {"email": "reader@example.com"}}),
        ("POST", "/subscribe", {"data": {"email": "reader@example.com", "newsletter": "a"}}),
        ("GET", "/confirm/abc", {}),
        ("POST", "/unsubscribe/abc", {}),
    ],
    ids=["index", "hosted", "signup", "embed_signup", "several", "confirm", "unsubscribe"],
)
def test_pages_answer_503_with_a_readable_page_while_the_database_is_away(
    unreachable_app, caplog, method, path, send
):
    response = unreachable_app.test_client().open(path, method=method, **send)
    assert response.status_code == 503
    assert response.mimetype == "text/html"
    assert UNAVAILABLE in response.get_data(as_text=True)
    assert no_unexpected_errors(caplog)


@pytest.mark.parametrize(
    "method, path, send",
    [
        ("GET", "/", {"headers": JSON}),
        ("POST", "/n/briefing/subscribe", {"json": {"email": "reader@example.com"}}),
        (
            "POST",
            "/n/briefing/subscribe",
            {"data": {"email": "reader@example.com"}, "headers": JSON},
        ),
        ("POST", "/subscribe", {"json": {"email": "r@example.com", "newsletters": ["a", "b"]}}),
        ("POST", "/confirm/abc", {"headers": JSON}),
    ],
    ids=["index", "json_signup", "form_signup_asking_json", "several", "confirm"],
)
def test_json_clients_get_503_as_json_while_the_database_is_away(
    unreachable_app, caplog, method, path, send
):
    response = unreachable_app.test_client().open(path, method=method, **send)
    assert response.status_code == 503
    assert response.json["message"] == UNAVAILABLE
    assert no_unexpected_errors(caplog)


def test_widgets_can_read_the_503(unreachable_app):
    response = unreachable_app.test_client().post(
        "/n/briefing/subscribe",
        json={"email": "reader@example.com"},
        headers={"Origin": "https://publisher.example"},
    )
    assert response.status_code == 503
    assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_healthz_answers_503_while_the_database_is_away(unreachable_app):
    assert unreachable_app.test_client().get("/healthz").status_code == 503


def test_the_worker_waits_out_a_database_outage(unreachable_app):
    reports = []
    with unreachable_app.app_context():
        outcome = worker.run(once=True, report=reports.append)
    assert sum(outcome.values()) == 0
    assert any("database unavailable" in report for report in reports)


def rows(session) -> dict[str, int]:
    session.expire_all()
    return {
        model.__tablename__: session.scalar(sa.select(sa.func.count()).select_from(model))
        for model in (Subscription, Subscriber, Token, ConsentEvent, OutboxMessage)
    }


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_the_app_and_worker_reconnect_after_their_connections_are_killed(
    app, client, newsletter, session, database_url
):
    assert client.get("/").status_code == 200
    with app.app_context():
        worker.run(once=True)  # the worker's connection goes back into the pool too
    killer = sa.create_engine(database_url)
    with killer.begin() as connection:
        killed = connection.scalar(
            sa.text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
    killer.dispose()
    assert killed >= 1
    assert client.get("/").status_code == 200
    assert client.get("/healthz").status_code == 200
    signup = client.post("/n/briefing/subscribe", data={"email": "reader@example.com"})
    assert signup.status_code == 303
    with app.app_context():
        assert worker.run(once=True)["sent"] == 1
    assert session.scalars(sa.select(OutboxMessage.state)).one() == "sent"


def fail_on(statement_start: str):
    """Return an engine listener that fails statements starting with ``statement_start``."""

    def listener(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith(statement_start):
            raise OperationalError(statement, parameters, ConnectionError("server went away"))

    return listener


def fail_commit(conn):
    raise OperationalError("COMMIT", None, ConnectionError("server went away"))


@pytest.mark.parametrize(
    "event, listener",
    [
        ("before_cursor_execute", fail_on("INSERT INTO OUTBOX_MESSAGE")),
        ("before_cursor_execute", fail_on("INSERT INTO CONSENT_EVENT")),
        ("commit", fail_commit),
    ],
    ids=["outbox_insert", "consent_event_insert", "commit"],
)
@pytest.mark.parametrize("body", ["form", "json"])
def test_a_signup_failing_midway_leaves_nothing_half_written(
    app, client, newsletter, session, caplog, event, listener, body
):
    fields = {"email": "reader@example.com"}
    send = {"data": fields} if body == "form" else {"json": fields}
    with app.app_context():
        engine = db.engine()
    sa.event.listen(engine, event, listener)
    try:
        response = client.post("/n/briefing/subscribe", **send)
    finally:
        sa.event.remove(engine, event, listener)
    assert response.status_code == 503
    if body == "json":
        assert response.json["message"] == UNAVAILABLE
    else:
        assert UNAVAILABLE in response.get_data(as_text=True)
    assert rows(session) == dict.fromkeys(rows(session), 0)
    assert no_unexpected_errors(caplog)
    # The connection went back clean: the same signup now goes through, whole.
    assert client.post("/n/briefing/subscribe", **send).status_code in (200, 303)
    counts = rows(session)
    assert counts["subscription"] == counts["outbox_message"] == 1
    assert session.scalars(sa.select(Subscription.status)).one() == Status.PENDING


def test_database_errors_are_logged_as_such(unreachable_app, caplog):
    with caplog.at_level(logging.ERROR, logger="newsletters.errors"):
        unreachable_app.test_client().get("/")
    assert any(r.getMessage().startswith("database unavailable") for r in caplog.records)
