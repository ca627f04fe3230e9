"""signup requests: what a signup's request stores, for the worker to process

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

from newsletters.db import UTCDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# PostgreSQL wakes the workers (LISTEN newsletters_signups) when a request commits: a trigger
# costs the web request no extra round trip, and NOTIFY is sent only if the insert commits.
NOTIFY_FUNCTION = """
CREATE FUNCTION newsletters_signup_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('newsletters_signups', '');
    RETURN NULL;
END
$$
"""
NOTIFY_TRIGGER = """
CREATE TRIGGER signup_request_notify AFTER INSERT ON signup_request
FOR EACH STATEMENT EXECUTE FUNCTION newsletters_signup_notify()
"""


def upgrade():
    op.create_table(
        "signup_request",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("newsletter_ids", sa.JSON(), nullable=False),
        sa.Column("ip", sa.String(length=45), nullable=True),
        sa.Column("user_agent", sa.String(length=512), nullable=True),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("form_text", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signup_request")),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(NOTIFY_FUNCTION)
        op.execute(NOTIFY_TRIGGER)


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER signup_request_notify ON signup_request")
        op.execute("DROP FUNCTION newsletters_signup_notify()")
    op.drop_table("signup_request")
