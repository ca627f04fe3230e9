"""confirmation mail text per newsletter

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("newsletter", schema=None) as batch_op:
        batch_op.add_column(sa.Column("confirm_body", sa.Text(), nullable=True))


def downgrade():
    with op.batch_alter_table("newsletter", schema=None) as batch_op:
        batch_op.drop_column("confirm_body")
