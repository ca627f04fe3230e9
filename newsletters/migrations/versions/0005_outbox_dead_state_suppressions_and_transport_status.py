"""outbox dead state, suppressions and transport status

The outbox state gains "dead"; it is a non-native enum, a VARCHAR with a CHECK constraint, so
the constraint is replaced: SQLite's batch mode rebuilds the table with the new one, PostgreSQL
drops and adds it. Rows keep their states; ``queued_at`` starts as each row's ``created_at``.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

import newsletters.db

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

STATES = ("pending", "sent", "failed")
STATES_WITH_DEAD = (*STATES, "dead")


def _state(values: tuple[str, ...]) -> sa.Enum:
    return sa.Enum(
        *values, name="outboxstate", native_enum=False, create_constraint=True, length=20
    )


def upgrade():
    op.create_table(
        "transport_status",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("transport", sa.String(length=255), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("failed_at", newsletters.db.UTCDateTime(), nullable=True),
        sa.Column("recovered_at", newsletters.db.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transport_status")),
        sa.UniqueConstraint("transport", name=op.f("uq_transport_status_transport")),
    )
    op.create_table(
        "suppression",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("newsletter_id", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", newsletters.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["newsletter_id"],
            ["newsletter.id"],
            name=op.f("fk_suppression_newsletter_id_newsletter"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_suppression")),
        sa.UniqueConstraint("email", "newsletter_id", name=op.f("uq_suppression_email")),
    )
    with op.batch_alter_table("suppression", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_suppression_newsletter_id"), ["newsletter_id"], unique=False
        )

    with op.batch_alter_table("outbox_message", schema=None) as batch_op:
        batch_op.add_column(sa.Column("queued_at", newsletters.db.UTCDateTime(), nullable=True))
        # existing_type names the old CHECK constraint, so that it is dropped, not duplicated.
        batch_op.alter_column(
            "state", existing_type=_state(STATES), type_=_state(STATES_WITH_DEAD), nullable=False
        )
    op.execute("UPDATE outbox_message SET queued_at = created_at")
    with op.batch_alter_table("outbox_message", schema=None) as batch_op:
        batch_op.alter_column(
            "queued_at", existing_type=newsletters.db.UTCDateTime(), nullable=False
        )


def downgrade():
    # The old CHECK cannot hold a dead row: those go back to the queue, to die again or be sent.
    op.execute("UPDATE outbox_message SET state = 'pending' WHERE state = 'dead'")
    with op.batch_alter_table("outbox_message", schema=None) as batch_op:
        batch_op.alter_column(
            "state", existing_type=_state(STATES_WITH_DEAD), type_=_state(STATES), nullable=False
        )
        batch_op.drop_column("queued_at")

    with op.batch_alter_table("suppression", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_suppression_newsletter_id"))

    op.drop_table("suppression")
    op.drop_table("transport_status")
