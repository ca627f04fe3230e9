"""embed origins and daily mail budget

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

import newsletters.db

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("newsletter", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("allowed_origins", sa.Text(), server_default="", nullable=False)
        )

    with op.batch_alter_table("subscriber", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("mail_window_start", newsletters.db.UTCDateTime(), nullable=True)
        )
        batch_op.add_column(
            sa.Column("mails_in_window", sa.Integer(), server_default="0", nullable=False)
        )


def downgrade():
    with op.batch_alter_table("subscriber", schema=None) as batch_op:
        batch_op.drop_column("mails_in_window")
        batch_op.drop_column("mail_window_start")

    with op.batch_alter_table("newsletter", schema=None) as batch_op:
        batch_op.drop_column("allowed_origins")
