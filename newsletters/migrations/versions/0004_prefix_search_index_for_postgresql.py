"""prefix search index for postgresql

The editors' search finds addresses by prefix with a range in code-point order. SQLite's
unique index on subscriber.email already is in that order (binary collation); PostgreSQL's is
in the database's collation, so it gets a second index in the C collation. Nothing on SQLite.

On a big existing list, build it first without blocking signups, and this migration keeps it:
CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_subscriber_email_c ON subscriber (email COLLATE "C");

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            'CREATE INDEX IF NOT EXISTS ix_subscriber_email_c ON subscriber (email COLLATE "C")'
        )


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_subscriber_email_c")
