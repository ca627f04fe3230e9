"""API keys, idempotent requests, webhooks, and the change feed's order of consent events

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

from newsletters.db import UTCDateTime

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade():
    postgresql = op.get_bind().dialect.name == "postgresql"
    with op.batch_alter_table("consent_event") as batch:
        # On PostgreSQL each event records the transaction that wrote it, by default, so that
        # every writer (set-based or not) is covered; the events written before get 0: all
        # of their transactions are long finished.
        batch.add_column(
            sa.Column(
                "txid",
                sa.BigInteger(),
                nullable=True,
                server_default=sa.text("(pg_current_xact_id()::text::bigint)")
                if postgresql
                else None,
            )
        )
    if postgresql:
        op.execute("UPDATE consent_event SET txid = 0")
    op.create_index("ix_consent_event_feed", "consent_event", ["txid", "id"])

    op.create_table(
        "api_key",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("editor_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("read_only", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("last_used_at", UTCDateTime(), nullable=True),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["editor_id"],
            ["editor.id"],
            name=op.f("fk_api_key_editor_id_editor"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_key")),
        sa.UniqueConstraint("digest", name=op.f("uq_api_key_digest")),
    )
    op.create_index(op.f("ix_api_key_editor_id"), "api_key", ["editor_id"])

    op.create_table(
        "idempotent_request",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("api_key_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("request_digest", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["api_key_id"],
            ["api_key.id"],
            name=op.f("fk_idempotent_request_api_key_id_api_key"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_idempotent_request")),
        sa.UniqueConstraint("api_key_id", "key", name=op.f("uq_idempotent_request_api_key_id")),
    )
    op.create_index(op.f("ix_idempotent_request_created_at"), "idempotent_request", ["created_at"])

    op.create_table(
        "webhook",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("newsletter_id", sa.Integer(), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("secret", sa.String(length=128), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("queued_txid", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("queued_event_id", sa.Integer(), server_default="0", nullable=False),
        sa.Column("paused_at", UTCDateTime(), nullable=True),
        sa.Column("paused_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["newsletter_id"],
            ["newsletter.id"],
            name=op.f("fk_webhook_newsletter_id_newsletter"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook")),
    )
    op.create_index(op.f("ix_webhook_newsletter_id"), "webhook", ["newsletter_id"])

    with op.batch_alter_table("outbox_message") as batch:
        batch.add_column(sa.Column("webhook_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_outbox_message_webhook_id_webhook"),
            "webhook",
            ["webhook_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch.create_index(op.f("ix_outbox_message_webhook_id"), ["webhook_id"])


def downgrade():
    with op.batch_alter_table("outbox_message") as batch:
        batch.drop_index(op.f("ix_outbox_message_webhook_id"))
        batch.drop_constraint(op.f("fk_outbox_message_webhook_id_webhook"), type_="foreignkey")
        batch.drop_column("webhook_id")
    op.drop_index(op.f("ix_webhook_newsletter_id"), table_name="webhook")
    op.drop_table("webhook")
    op.drop_index(op.f("ix_idempotent_request_created_at"), table_name="idempotent_request")
    op.drop_table("idempotent_request")
    op.drop_index(op.f("ix_api_key_editor_id"), table_name="api_key")
    op.drop_table("api_key")
    op.drop_index("ix_consent_event_feed", table_name="consent_event")
    with op.batch_alter_table("consent_event") as batch:
        batch.drop_column("txid")
