"""Migration 0005 on a database in use: the outbox's rows survive the new state's CHECK."""

from datetime import timedelta

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.exc import IntegrityError

from newsletters import create_app, db, migrations
from newsletters.db import UTCDateTime, utcnow
from newsletters.models import OutboxState, Suppression, TransportStatus

SCHEMA = "outbox_migration_test"

OLD_OUTBOX = sa.table(
    "outbox_message",
    sa.column("id", sa.Integer),
    sa.column("kind", sa.String),
    sa.column("recipient", sa.String),
    sa.column("payload", sa.JSON),
    sa.column("message_id", sa.String),
    sa.column("state", sa.String),
    sa.column("attempts", sa.Integer),
    sa.column("next_attempt_at", UTCDateTime),
    sa.column("last_error", sa.Text),
    sa.column("created_at", UTCDateTime),
)


@pytest.fixture(params=["sqlite", "postgresql"])
def old_database_url(request, tmp_path):
    """Return the URL of an empty database of its own: a SQLite file, or a PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    base = request.getfixturevalue("postgres_url")
    engine = sa.create_engine(base)
    with engine.begin() as connection:
        connection.execute(sa.text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        connection.execute(sa.text(f"CREATE SCHEMA {SCHEMA}"))
    url = sa.engine.make_url(base).update_query_dict({"options": f"-csearch_path={SCHEMA}"})
    yield url.render_as_string(hide_password=False)
    with engine.begin() as connection:
        connection.execute(sa.text(f"DROP SCHEMA {SCHEMA} CASCADE"))
    engine.dispose()


@pytest.fixture
def old_app(old_database_url):
    app = create_app({"DATABASE_URL": old_database_url, "SECRET_KEY": "x"})
    yield app
    with app.app_context():
        db.engine().dispose()


def downgrade(revision: str) -> None:
    with db.engine().begin() as connection:
        config = migrations.alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def states(connection) -> dict[str, str]:
    rows = connection.execute(sa.text("SELECT recipient, state FROM outbox_message"))
    return dict(rows.all())


def test_upgrading_a_database_with_mail_in_its_outbox_keeps_every_row(old_app):
    created = utcnow().replace(microsecond=0) - timedelta(hours=5)
    with old_app.app_context():
        migrations.upgrade("0004")
        with db.engine().begin() as connection:
            connection.execute(
                sa.insert(OLD_OUTBOX),
                [
                    {
                        "kind": "confirm",
                        "recipient": f"{state}@example.com",
                        "payload": {"token_id": n},
                        "message_id": f"<{n}@example.org>",
                        "state": state,
                        "attempts": n,
                        "next_attempt_at": created,
                        "last_error": f"error {n}",
                        "created_at": created,
                    }
                    for n, state in enumerate(["pending", "sent", "failed"])
                ],
            )

        migrations.upgrade("0005")
        assert migrations.current() == "0005"
        with db.engine().begin() as connection:
            assert states(connection) == {
                "pending@example.com": "pending",
                "sent@example.com": "sent",
                "failed@example.com": "failed",
            }
            queued = sa.select(
                sa.column("queued_at", UTCDateTime), sa.column("created_at", UTCDateTime)
            ).select_from(sa.table("outbox_message"))
            assert {tuple(row) for row in connection.execute(queued)} == {(created, created)}
            dead = sa.text("UPDATE outbox_message SET state = 'dead' WHERE attempts = 0")
            assert connection.execute(dead).rowcount == 1
        with pytest.raises(IntegrityError), db.engine().begin() as connection:
            connection.execute(sa.text("UPDATE outbox_message SET state = 'lost'"))

        # The new tables take rows.
        session = db.session()
        newsletter_id = session.execute(
            sa.text(
                "INSERT INTO newsletter (slug, name, description, is_public, created_at, "
                "allowed_origins) VALUES ('n', 'N', '', true, '2026-01-01', '') RETURNING id"
            )
        ).scalar_one()
        session.add(Suppression(email="a@example.com", newsletter_id=newsletter_id, reason="550"))
        session.add(TransportStatus(transport="smtp://relay:25", failures=1, last_error="535"))
        session.commit()

        # And back: a dead row returns to the queue, whose CHECK knows no "dead" any more.
        downgrade("0004")
        with db.engine().begin() as connection:
            assert states(connection)["pending@example.com"] == OutboxState.PENDING
        with pytest.raises(IntegrityError), db.engine().begin() as connection:
            connection.execute(sa.text("UPDATE outbox_message SET state = 'dead'"))
