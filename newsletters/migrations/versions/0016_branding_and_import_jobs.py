"""A newsletter's branding, and imports from the editors' area as jobs for the worker

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05

Newsletters gain an accent colour, a logo URL and the publisher's site URL, all optional.
import_job holds a list uploaded in the browser until the worker has imported it, with the
counts the progress page shows.
"""

import sqlalchemy as sa
from alembic import op

import newsletters.db

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("newsletter", schema=None) as batch_op:
        batch_op.add_column(sa.Column("accent_color", sa.String(length=7), nullable=True))
        batch_op.add_column(sa.Column("logo_url", sa.String(length=2000), nullable=True))
        batch_op.add_column(sa.Column("site_url", sa.String(length=2000), nullable=True))
    op.create_table(
        "import_job",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("newsletter_id", sa.Integer(), nullable=False),
        sa.Column("editor_id", sa.Integer(), nullable=True),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=True),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("lines", sa.Integer(), nullable=False),
        sa.Column("send_confirmation", sa.Boolean(), nullable=False),
        sa.Column("rows_done", sa.Integer(), nullable=False),
        sa.Column("refused", sa.Integer(), nullable=False),
        sa.Column("report", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", newsletters.db.UTCDateTime(), nullable=False),
        sa.Column("started_at", newsletters.db.UTCDateTime(), nullable=True),
        sa.Column("heartbeat_at", newsletters.db.UTCDateTime(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("finished_at", newsletters.db.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["editor_id"],
            ["editor.id"],
            name=op.f("fk_import_job_editor_id_editor"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["newsletter_id"],
            ["newsletter.id"],
            name=op.f("fk_import_job_newsletter_id_newsletter"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_import_job")),
    )
    op.create_index(op.f("ix_import_job_newsletter_id"), "import_job", ["newsletter_id"])
    op.create_index(op.f("ix_import_job_state"), "import_job", ["state"])


def downgrade():
    op.drop_index(op.f("ix_import_job_state"), table_name="import_job")
    op.drop_index(op.f("ix_import_job_newsletter_id"), table_name="import_job")
    op.drop_table("import_job")
    with op.batch_alter_table("newsletter", schema=None) as batch_op:
        batch_op.drop_column("site_url")
        batch_op.drop_column("logo_url")
        batch_op.drop_column("accent_color")
