"""indexes for the dashboard

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("subscription", schema=None) as batch_op:
        batch_op.create_index(
            "ix_subscription_confirmations", ["newsletter_id", "confirmed_at"], unique=False
        )
        batch_op.create_index(
            "ix_subscription_optins", ["newsletter_id", "optin_at", "confirmed_at"], unique=False
        )
        batch_op.create_index(
            "ix_subscription_unsubscribes", ["newsletter_id", "unsubscribed_at"], unique=False
        )


def downgrade():
    with op.batch_alter_table("subscription", schema=None) as batch_op:
        batch_op.drop_index("ix_subscription_unsubscribes")
        batch_op.drop_index("ix_subscription_optins")
        batch_op.drop_index("ix_subscription_confirmations")
