"""The consent ledger: one writer, chained rows, and a database that refuses to rewrite them."""

import ast
import pathlib
import re

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

import newsletters
from newsletters import db, ledger
from newsletters.ledger import Action
from newsletters.models import ConsentEvent, ConsentText, Subscription

from .conftest import process_signups


def sign_up_and_confirm(client, session, email="reader@example.com"):
    """Sign ``email`` up to the test newsletter and confirm with its confirmation link."""
    client.post(
        "/n/briefing/subscribe",
        data={"email": email},
        headers={"Origin": "https://www.example.org", "User-Agent": "Browser/1.0"},
    )
    process_signups(client.application)
    from newsletters import tokens
    from newsletters.models import Token, TokenPurpose

    with client.application.app_context():
        token = db.session().scalar(
            sa.select(Token).where(Token.purpose == TokenPurpose.CONFIRM).order_by(Token.id.desc())
        )
        secret = tokens.secret_for(token)
    assert client.post(f"/confirm/{secret}").status_code == 200
    return session.scalar(sa.select(Subscription).order_by(Subscription.id.desc()))


def events(session):
    session.expire_all()
    return session.execute(sa.select(ConsentEvent.__table__).order_by(ConsentEvent.id)).all()


def bypass_triggers(connection):
    """Let this transaction alter the ledger behind the app's back, as an intruder would."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("SET LOCAL session_replication_role = replica")
    else:
        connection.exec_driver_sql("DROP TRIGGER consent_event_only_redaction")
        connection.exec_driver_sql("DROP TRIGGER consent_event_no_delete")


def test_a_signup_confirmation_and_unsubscription_make_one_chain_with_their_evidence(
    app, client, session, newsletter
):
    subscription = sign_up_and_confirm(client, session)
    unsubscribe = subscription.unsubscribe_token
    with app.app_context():
        from newsletters import tokens

        secret = tokens.secret_for(db.session().get(type(unsubscribe), unsubscribe.id))
    client.post(f"/unsubscribe/{secret}")
    rows = events(session)
    assert [(r.action, r.status) for r in rows] == [
        ("signed_up", "pending"),
        ("confirmed", "confirmed"),
        ("unsubscribed", "unsubscribed"),
    ]
    first = rows[0]
    assert first.origin == "https://www.example.org"
    assert first.user_agent == "Browser/1.0"
    assert first.ip == "127.0.0.1"
    assert first.prev_hash is None
    assert [r.prev_hash for r in rows[1:]] == [r.hash for r in rows[:-1]]
    # The form's text is stored once and referenced by its hash.
    text = session.get(ConsentText, first.text_digest)
    assert text is not None and "Enter your email to subscribe" in text.text
    with app.app_context():
        assert ledger.verify(db.session()) == (3, [])


def test_the_same_form_text_is_stored_once_however_many_sign_up(app, client, session, newsletter):
    for n in range(3):
        client.post("/n/briefing/subscribe", data={"email": f"reader{n}@example.com"})
    process_signups(app)
    assert session.scalar(sa.select(sa.func.count()).select_from(ConsentText)) == 1
    assert len({r.text_digest for r in events(session)}) == 1


def test_the_database_refuses_to_delete_a_ledger_row(app, client, session, newsletter):
    sign_up_and_confirm(client, session)
    with (
        app.app_context(),
        db.engine().connect() as connection,
        pytest.raises(DBAPIError, match="append-only"),
    ):
        connection.exec_driver_sql("DELETE FROM consent_event")
    assert len(events(session)) == 2


@pytest.mark.parametrize(
    "change",
    [
        "status = 'confirmed'",
        "at = at",  # even a no-op that does not mark a redaction
        "detail = 'forged'",
        "ip = '10.0.0.1', user_agent = NULL, salt = NULL, redacted_at = '2030-01-01'",
        "subscription_id = subscription_id + 1, redacted_at = '2030-01-01'",
    ],
)
def test_the_database_refuses_every_update_but_a_redaction(
    app, client, session, newsletter, change
):
    sign_up_and_confirm(client, session)
    before = events(session)
    with (
        app.app_context(),
        db.engine().connect() as connection,
        pytest.raises(DBAPIError, match="append-only"),
    ):
        connection.exec_driver_sql(f"UPDATE consent_event SET {change}")  # noqa: S608
    assert events(session) == before


def test_a_redaction_of_ip_and_user_agent_is_allowed_and_the_chain_still_holds(
    app, client, session, newsletter
):
    subscription = sign_up_and_confirm(client, session)
    with app.app_context():
        assert ledger.redact(db.session(), [subscription.id]) == 2
        db.session().commit()
        assert ledger.verify(db.session()) == (2, [])
    assert {(r.ip, r.user_agent, r.salt) for r in events(session)} == {(None, None, None)}


def test_old_evidence_is_cut_to_its_network_and_the_chain_still_holds(
    app, client, session, newsletter
):
    sign_up_and_confirm(client, session)
    with app.app_context():
        changed = ledger.truncate_before(db.session(), newsletters.db.utcnow())
        db.session().commit()
        assert changed == 2
        assert ledger.verify(db.session()) == (2, [])
    assert {(r.ip, r.user_agent) for r in events(session)} == {("127.0.0.0/24", None)}


def test_network_of_keeps_a_slash_24_or_a_slash_48():
    assert ledger.network_of("203.0.113.77") == "203.0.113.0/24"
    assert ledger.network_of("2001:db8:1234:5678::1") == "2001:db8:1234::/48"
    assert ledger.network_of("not an ip") is None


@pytest.mark.parametrize(
    ("tampering", "reason"),
    [
        ("UPDATE consent_event SET detail = 'forged' WHERE id = 2", "does not match its hash"),
        ("UPDATE consent_event SET ip = '10.9.9.9' WHERE id = 1", "IP or user agent was altered"),
        ("DELETE FROM consent_event WHERE id = 1", "the first row of its chain points"),
        ("UPDATE consent_event SET salt = NULL WHERE id = 1", "removed without a redaction"),
    ],
)
def test_consent_verify_names_a_row_altered_in_the_database(
    app, client, session, runner, newsletter, tampering, reason
):
    subscription = sign_up_and_confirm(client, session)
    assert runner.invoke(args=["consent", "verify"]).exit_code == 0
    with app.app_context(), db.engine().begin() as connection:
        bypass_triggers(connection)
        connection.exec_driver_sql(tampering)
    result = runner.invoke(args=["consent", "verify"])
    assert result.exit_code == 1
    assert f"subscription {subscription.id}, event" in result.output
    assert reason in result.output


def test_consent_verify_finds_a_row_removed_from_the_middle_of_a_chain(
    app, client, session, runner, newsletter
):
    subscription = sign_up_and_confirm(client, session)
    client.post("/n/briefing/subscribe", data={"email": "reader@example.com"})  # stays confirmed
    with app.app_context():
        services_leave(app, subscription.id)
    assert len(events(session)) == 3
    with app.app_context(), db.engine().begin() as connection:
        bypass_triggers(connection)
        connection.exec_driver_sql("DELETE FROM consent_event WHERE id = 2")
    result = runner.invoke(args=["consent", "verify"])
    assert result.exit_code == 1
    assert "event 3: does not follow event 1" in result.output


def services_leave(app, subscription_id):
    from newsletters.subscriptions import services

    session = db.session()
    services.leave(
        session,
        session.get(Subscription, subscription_id),
        ledger.Evidence(ip=None, user_agent=None, source="test"),
    )
    session.commit()


def test_the_ledger_outlives_a_deleted_subscription(app, client, session, newsletter):
    subscription = sign_up_and_confirm(client, session)
    with app.app_context():
        session_ = db.session()
        session_.execute(sa.delete(Subscription).where(Subscription.id == subscription.id))
        session_.commit()
    assert len(events(session)) == 2


def test_chains_of_events_written_before_the_ledger_are_computed_by_the_migration(tmp_path):
    from newsletters import create_app, migrations

    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'old.db'}", "SECRET_KEY": "x"})
    with app.app_context():
        migrations.upgrade("0012")
        with db.engine().begin() as connection:
            connection.exec_driver_sql(
                "INSERT INTO newsletter (slug, name, description, is_public, allowed_origins,"
                " created_at) VALUES ('a', 'A', '', 1, '', '2026-01-01 00:00:00')"
            )
            connection.exec_driver_sql(
                "INSERT INTO subscriber (email, created_at, mails_in_window)"
                " VALUES ('old@example.com', '2026-01-01 00:00:00', 0)"
            )
            connection.exec_driver_sql(
                "INSERT INTO subscription (newsletter_id, subscriber_id, status, source,"
                " created_at) VALUES (1, 1, 'confirmed', 'form', '2026-01-01 00:00:00')"
            )
            for status, moment in (("pending", "00:00:01"), ("confirmed", "00:05:00")):
                connection.exec_driver_sql(
                    "INSERT INTO consent_event (subscription_id, status, at, ip, source)"
                    " VALUES (1, ?, ?, '192.0.2.1', 'form')",
                    (status, f"2026-01-01 {moment}"),
                )
        migrations.upgrade()
        rows = db.session().execute(sa.select(ConsentEvent).order_by(ConsentEvent.id)).scalars()
        assert [(r.action, r.subscriber_id, r.newsletter_id) for r in rows] == [
            ("signed_up", 1, 1),
            ("confirmed", 1, 1),
        ]
        assert ledger.verify(db.session()) == (2, [])
        db.engine().dispose()


# Every module that writes the ledger must do it through ledger.record: nothing else in the
# package may build a ConsentEvent, insert into its table, or name it in SQL that writes.
WRITES = re.compile(r"(INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+consent_event", re.IGNORECASE)
ORM_WRITES = re.compile(r"(insert|update|delete)\(\s*(ConsentEvent|EVENTS)\b")


def test_nothing_but_ledger_record_writes_the_ledger():
    package = pathlib.Path(newsletters.__file__).parent
    offenders = []
    for path in package.rglob("*.py"):
        if "migrations" in path.parts or path.name == "ledger.py":
            continue
        source = path.read_text()
        if WRITES.search(source) or ORM_WRITES.search(source):
            offenders.append(f"{path.name}: a statement writing consent_event")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "ConsentEvent":
                offenders.append(f"{path.name}:{node.lineno}: ConsentEvent(...)")
    assert offenders == []


@pytest.mark.parametrize("path", ["signup", "confirm", "unsubscribe", "editor", "import"])
def test_each_path_records_through_the_one_function(
    app, client, session, newsletter, monkeypatch, path, tmp_path, runner
):
    written = []
    real = ledger.record

    def spy(session_, entries, **options):
        entries = list(entries)
        written.extend(e.action for e in entries)
        return real(session_, entries, **options)

    monkeypatch.setattr(ledger, "record", spy)
    if path == "import":
        csv = tmp_path / "list.csv"
        csv.write_text("email,status\nimported@example.com,confirmed\n")
        assert runner.invoke(args=["import", "briefing", str(csv)]).exit_code == 0
        expected = [Action.IMPORTED]
    else:
        subscription = sign_up_and_confirm(client, session)
        expected = [Action.SIGNED_UP, Action.CONFIRMED]
        if path == "unsubscribe":
            with app.app_context():
                services_leave(app, subscription.id)
            expected.append(Action.UNSUBSCRIBED)
        if path == "editor":
            from newsletters.models import Editor
            from newsletters.subscriptions import services

            with app.app_context():
                s = db.session()
                editor = Editor(email="ed@example.org", password_hash="x", is_admin=True)
                s.add(editor)
                services.unsubscribe_by_editor(
                    s,
                    s.get(Subscription, subscription.id),
                    editor,
                    ledger.Evidence(ip=None, user_agent=None, source="admin"),
                )
                s.commit()
            expected.append(Action.EDITED)
    assert written == expected
    assert [r.action for r in events(session)] == [str(a) for a in expected]
