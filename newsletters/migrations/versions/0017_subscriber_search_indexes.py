"""Indexes of the subscriber list: newest first by signup time, and search anywhere in addresses

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-05

The editors' list is in signup order (optin_at, then id), a page at a time by keyset: one index
of a newsletter's rows in that order, one per status, and the flagged rows' partial index in it
too (with the flags, so that a count of one flag reads that index alone). Search finds any
part of an address or a name: on PostgreSQL through pg_trgm's trigram GIN
indexes (LIKE '%…%' and ILIKE use them); on SQLite through an FTS5 table with the trigram
tokenizer (SQLite 3.34 or later), one row per subscription (rowid = subscription.id) with its
address and name, kept in step by triggers. Neither can be told in the models: both are made
here by hand (migrations/env.py keeps autogenerate from dropping them). A later migration
that rebuilds the subscription or subscriber table on SQLite (batch mode) drops its triggers
with it, and must make them again.

On a big existing PostgreSQL list, build the trigram indexes first without blocking signups,
and this migration keeps them:
CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_subscriber_email_trgm ON subscriber
    USING gin (email gin_trgm_ops);
CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_subscription_name_trgm ON subscription
    USING gin (name gin_trgm_ops);
"""

import sqlite3

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

# The search's own objects, which the models cannot describe (see migrations/env.py).
SQLITE_SEARCH = [
    """CREATE VIRTUAL TABLE subscription_search USING fts5(
        email, name, tokenize = 'trigram'
    )""",
    """CREATE TRIGGER subscription_search_insert AFTER INSERT ON subscription BEGIN
        INSERT INTO subscription_search (rowid, email, name)
        SELECT new.id, email, new.name FROM subscriber WHERE id = new.subscriber_id;
    END""",
    """CREATE TRIGGER subscription_search_update AFTER UPDATE OF name, subscriber_id
    ON subscription BEGIN
        DELETE FROM subscription_search WHERE rowid = old.id;
        INSERT INTO subscription_search (rowid, email, name)
        SELECT new.id, email, new.name FROM subscriber WHERE id = new.subscriber_id;
    END""",
    """CREATE TRIGGER subscription_search_delete AFTER DELETE ON subscription BEGIN
        DELETE FROM subscription_search WHERE rowid = old.id;
    END""",
    """CREATE TRIGGER subscriber_search_update AFTER UPDATE OF email ON subscriber BEGIN
        UPDATE subscription_search SET email = new.email
        WHERE rowid IN (SELECT id FROM subscription WHERE subscriber_id = new.id);
    END""",
    """INSERT INTO subscription_search (rowid, email, name)
    SELECT s.id, r.email, s.name FROM subscription AS s JOIN subscriber AS r
    ON r.id = s.subscriber_id""",
]
POSTGRESQL_SEARCH = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX IF NOT EXISTS ix_subscriber_email_trgm ON subscriber "
    "USING gin (email gin_trgm_ops)",
    "CREATE INDEX IF NOT EXISTS ix_subscription_name_trgm ON subscription "
    "USING gin (name gin_trgm_ops)",
]


def upgrade():
    op.drop_index("ix_subscription_flagged", table_name="subscription")
    op.create_index(
        "ix_subscription_flagged",
        "subscription",
        ["newsletter_id", "optin_at", "id", "address_flags"],
        sqlite_where=sa.text("address_flags IS NOT NULL"),
        postgresql_where=sa.text("address_flags IS NOT NULL"),
    )
    op.create_index("ix_subscription_signups", "subscription", ["newsletter_id", "optin_at", "id"])
    op.create_index(
        "ix_subscription_status_signups",
        "subscription",
        ["newsletter_id", "status", "optin_at", "id"],
    )
    if op.get_bind().dialect.name == "postgresql":
        for statement in POSTGRESQL_SEARCH:
            op.execute(statement)
        return
    if sqlite3.sqlite_version_info < (3, 34):
        raise RuntimeError(
            f"SQLite {sqlite3.sqlite_version} has no trigram tokenizer for the subscriber "
            "search: SQLite 3.34 or later is needed (Python's own sqlite3 module links it)"
        )
    for statement in SQLITE_SEARCH:
        op.execute(statement)


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_subscription_name_trgm")
        op.execute("DROP INDEX IF EXISTS ix_subscriber_email_trgm")
    else:
        for trigger in (
            "subscriber_search_update",
            "subscription_search_delete",
            "subscription_search_update",
            "subscription_search_insert",
        ):
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        op.execute("DROP TABLE IF EXISTS subscription_search")
    op.drop_index("ix_subscription_status_signups", table_name="subscription")
    op.drop_index("ix_subscription_signups", table_name="subscription")
    op.drop_index("ix_subscription_flagged", table_name="subscription")
    op.create_index(
        "ix_subscription_flagged",
        "subscription",
        ["newsletter_id", "id"],
        sqlite_where=sa.text("address_flags IS NOT NULL"),
        postgresql_where=sa.text("address_flags IS NOT NULL"),
    )
