"""Migration 0010 on a database in use: a subscription's source becomes free text, and no row
that hangs off a subscription (its consent trail, its tokens) is lost on the way, either way."""

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from newsletters import create_app, db, migrations

SCHEMA = "source_migration_test"
LABEL = "import:legacy-list"


@pytest.fixture(params=["sqlite", "postgresql"])
def old_app(request, tmp_path):
    """Return an app on an empty database of its own: a SQLite file, or a PostgreSQL schema."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.db'}"
        engine = None
    else:
        base = request.getfixturevalue("postgres_url")
        engine = sa.create_engine(base)
        with engine.begin() as connection:
            connection.execute(sa.text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
            connection.execute(sa.text(f"CREATE SCHEMA {SCHEMA}"))
        url = sa.engine.make_url(base).update_query_dict({"options": f"-csearch_path={SCHEMA}"})
        url = url.render_as_string(hide_password=False)
    app = create_app({"DATABASE_URL": url, "SECRET_KEY": "x"})
    yield app
    with app.app_context():
        db.engine().dispose()
    if engine is not None:
        with engine.begin() as connection:
            connection.execute(sa.text(f"DROP SCHEMA {SCHEMA} CASCADE"))
        engine.dispose()


def run(sql: str, **values) -> list:
    with db.engine().begin() as connection:
        result = connection.execute(sa.text(sql), values)
        return result.all() if result.returns_rows else []


def count(table: str) -> int:
    query = sa.select(sa.func.count()).select_from(sa.table(table))
    with db.engine().connect() as connection:
        return connection.execute(query).scalar_one()


def subscribe(email: str, source: str) -> None:
    """Add a subscription of ``email`` with a consent event and a token, as 0009 stores them."""
    [(subscriber_id,)] = run(
        "INSERT INTO subscriber (email, created_at, mails_in_window) "
        "VALUES (:email, '2026-01-01', 0) RETURNING id",
        email=email,
    )
    [(subscription_id,)] = run(
        "INSERT INTO subscription (newsletter_id, subscriber_id, status, source, created_at) "
        "VALUES (1, :subscriber, 'confirmed', :source, '2026-01-01') RETURNING id",
        subscriber=subscriber_id,
        source=source,
    )
    run(
        "INSERT INTO consent_event (subscription_id, status, at, source) "
        "VALUES (:id, 'confirmed', '2026-01-01', 'import')",
        id=subscription_id,
    )
    [(token_id,)] = run(
        "INSERT INTO token (purpose, subscriber_id, salt, digest, created_at) "
        "VALUES ('unsubscribe', :subscriber, 's', :digest, '2026-01-01') RETURNING id",
        subscriber=subscriber_id,
        digest=f"digest-{email}",
    )
    run(
        "INSERT INTO token_subscription (token_id, subscription_id) VALUES (:token, :id)",
        token=token_id,
        id=subscription_id,
    )


def test_source_takes_an_imports_label_and_every_consent_event_survives_both_ways(old_app):
    with old_app.app_context():
        migrations.upgrade("0009")
        run(
            "INSERT INTO newsletter (slug, name, description, is_public, created_at, "
            "allowed_origins) VALUES ('n', 'N', '', true, '2026-01-01', '')"
        )
        subscribe("form@example.com", "form")
        subscribe("imported@example.com", "import")
        with pytest.raises(IntegrityError):
            run("UPDATE subscription SET source = :label", label=LABEL)

        migrations.upgrade("0010")

        assert (count("consent_event"), count("token_subscription")) == (2, 2)
        subscribe("label@example.com", LABEL)
        subscribe("long@example.com", "x" * 64)
        sources = dict(run("SELECT source, status FROM subscription"))
        assert set(sources) == {"form", "import", LABEL, "x" * 64}
        # The status keeps its CHECK.
        with pytest.raises(IntegrityError):
            run("UPDATE subscription SET status = 'lost'")

        migrations.downgrade("0009")

        assert (count("consent_event"), count("token_subscription")) == (4, 4)
        assert sorted(source for (source,) in run("SELECT source FROM subscription")) == [
            "form",
            "import",
            "import",
            "import",
        ]
        with pytest.raises(IntegrityError):
            run("UPDATE subscription SET source = :label", label=LABEL)
