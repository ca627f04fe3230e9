"""slug aliases, disabled editors, the key behind each token

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

from newsletters.db import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "slug_alias",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(length=64), nullable=False),
        sa.Column("newsletter_id", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["newsletter_id"],
            ["newsletter.id"],
            name=op.f("fk_slug_alias_newsletter_id_newsletter"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_slug_alias")),
        sa.UniqueConstraint("slug", name=op.f("uq_slug_alias_slug")),
    )
    op.create_index(
        op.f("ix_slug_alias_newsletter_id"), "slug_alias", ["newsletter_id"], unique=False
    )
    with op.batch_alter_table("editor", schema=None) as batch_op:
        batch_op.add_column(sa.Column("disabled_at", UTCDateTime(), nullable=True))
    with op.batch_alter_table("token", schema=None) as batch_op:
        batch_op.add_column(sa.Column("key_id", sa.String(length=16), nullable=True))


def downgrade():
    with op.batch_alter_table("token", schema=None) as batch_op:
        batch_op.drop_column("key_id")
    with op.batch_alter_table("editor", schema=None) as batch_op:
        batch_op.drop_column("disabled_at")
    op.drop_index(op.f("ix_slug_alias_newsletter_id"), table_name="slug_alias")
    op.drop_table("slug_alias")
