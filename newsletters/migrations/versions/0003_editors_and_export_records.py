"""editors and export records

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

import newsletters.db

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "editor",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("is_admin", sa.Boolean(), nullable=False),
        sa.Column("session_version", sa.Integer(), nullable=False),
        sa.Column("created_at", newsletters.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_editor")),
        sa.UniqueConstraint("email", name=op.f("uq_editor_email")),
    )
    op.create_table(
        "editor_newsletter",
        sa.Column("editor_id", sa.Integer(), nullable=False),
        sa.Column("newsletter_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["editor_id"],
            ["editor.id"],
            name=op.f("fk_editor_newsletter_editor_id_editor"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["newsletter_id"],
            ["newsletter.id"],
            name=op.f("fk_editor_newsletter_newsletter_id_newsletter"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("editor_id", "newsletter_id", name=op.f("pk_editor_newsletter")),
    )
    op.create_table(
        "export_record",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("newsletter_id", sa.Integer(), nullable=False),
        sa.Column("editor_id", sa.Integer(), nullable=True),
        sa.Column("via", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("format", sa.String(length=10), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=True),
        sa.Column("at", newsletters.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["editor_id"],
            ["editor.id"],
            name=op.f("fk_export_record_editor_id_editor"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["newsletter_id"],
            ["newsletter.id"],
            name=op.f("fk_export_record_newsletter_id_newsletter"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_export_record")),
    )
    with op.batch_alter_table("export_record", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_export_record_newsletter_id"), ["newsletter_id"], unique=False
        )


def downgrade():
    with op.batch_alter_table("export_record", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_export_record_newsletter_id"))

    op.drop_table("export_record")
    op.drop_table("editor_newsletter")
    op.drop_table("editor")
