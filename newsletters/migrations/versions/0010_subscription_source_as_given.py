"""a subscription's source as given: free text (an import's label), no longer four values

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

SOURCES = ("form", "embed", "api", "import")


def upgrade():
    # batch_alter_table: SQLite cannot drop a CHECK or widen a column in place; it copies.
    with op.batch_alter_table("subscription", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_subscription_source"), type_="check")
        batch_op.alter_column(
            "source",
            existing_type=sa.String(length=20),
            type_=sa.String(length=64),
            existing_nullable=False,
        )


def downgrade():
    # The old column knows four values: any other (an import's own label) becomes "import",
    # which is how it arrived.
    subscription = sa.table("subscription", sa.column("source", sa.String))
    op.execute(
        subscription.update().where(subscription.c.source.not_in(SOURCES)).values(source="import")
    )
    with op.batch_alter_table("subscription", schema=None) as batch_op:
        batch_op.alter_column(
            "source",
            existing_type=sa.String(length=64),
            type_=sa.String(length=20),
            existing_nullable=False,
        )
        batch_op.create_check_constraint(
            op.f("ck_subscription_source"), sa.column("source").in_(SOURCES)
        )
