"""Languages, a newsletter's texts per language, and the address checks' flags

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05

A newsletter's form and mail texts move from one column each into newsletter_text, keyed by
newsletter, language and text, so an editor can write them in every language; the texts
written so far become the newsletter's English ones, English being every newsletter's
language until now. Newsletters gain their language, whether readers' browsers may choose
another, and what disposable and role addresses get. Subscriptions and signup requests keep
the reader's language and what the address check found; link requests, their language.
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

TEXT_COLUMNS = {
    "placeholder": sa.String(200),
    "button": sa.String(100),
    "required_note": sa.String(200),
    "invalid_email": sa.String(200),
    "success_title": sa.String(200),
    "success_text": sa.Text(),
    "confirm_subject": sa.String(200),
    "confirm_body": sa.Text(),
    "sender_name": sa.String(200),
    "welcome_subject": sa.String(200),
    "welcome_body": sa.Text(),
    "reminder_subject": sa.String(200),
    "reminder_body": sa.Text(),
}


def upgrade():
    op.create_table(
        "newsletter_text",
        sa.Column("newsletter_id", sa.Integer(), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("key", sa.String(length=40), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["newsletter_id"],
            ["newsletter.id"],
            name=op.f("fk_newsletter_text_newsletter_id_newsletter"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "newsletter_id", "language", "key", name=op.f("pk_newsletter_text")
        ),
    )
    newsletter = sa.table("newsletter", sa.column("id"), *(sa.column(c) for c in TEXT_COLUMNS))
    texts = sa.table(
        "newsletter_text",
        sa.column("newsletter_id"),
        sa.column("language"),
        sa.column("key"),
        sa.column("value"),
    )
    for column in TEXT_COLUMNS:
        op.execute(
            texts.insert().from_select(
                ["newsletter_id", "language", "key", "value"],
                sa.select(
                    newsletter.c.id,
                    sa.literal("en"),
                    sa.literal(column),
                    newsletter.c[column],
                ).where(newsletter.c[column].is_not(None), newsletter.c[column] != ""),
            )
        )
    with op.batch_alter_table("newsletter", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("language", sa.String(length=8), server_default="en", nullable=False)
        )
        batch_op.add_column(
            sa.Column("pin_language", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(
            sa.Column(
                "disposable_policy", sa.String(length=10), server_default="flag", nullable=False
            )
        )
        batch_op.add_column(
            sa.Column("role_policy", sa.String(length=10), server_default="flag", nullable=False)
        )
        for column in TEXT_COLUMNS:
            batch_op.drop_column(column)
    for table in ("subscription", "signup_request"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("language", sa.String(length=8), nullable=True))
            batch_op.add_column(sa.Column("address_flags", sa.String(length=64), nullable=True))
    with op.batch_alter_table("link_request", schema=None) as batch_op:
        batch_op.add_column(sa.Column("language", sa.String(length=8), nullable=True))
    op.create_index(
        "ix_subscription_flagged",
        "subscription",
        ["newsletter_id", "id"],
        sqlite_where=sa.text("address_flags IS NOT NULL"),
        postgresql_where=sa.text("address_flags IS NOT NULL"),
    )


def downgrade():
    op.drop_index("ix_subscription_flagged", table_name="subscription")
    with op.batch_alter_table("link_request", schema=None) as batch_op:
        batch_op.drop_column("language")
    for table in ("signup_request", "subscription"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("address_flags")
            batch_op.drop_column("language")
    with op.batch_alter_table("newsletter", schema=None) as batch_op:
        for column, type_ in TEXT_COLUMNS.items():
            batch_op.add_column(sa.Column(column, type_, nullable=True))
    # Each newsletter keeps its texts in its own language; the other languages' are lost.
    newsletter = sa.table(
        "newsletter", sa.column("id"), sa.column("language"), *(sa.column(c) for c in TEXT_COLUMNS)
    )
    texts = sa.table(
        "newsletter_text",
        sa.column("newsletter_id"),
        sa.column("language"),
        sa.column("key"),
        sa.column("value"),
    )
    for column in TEXT_COLUMNS:
        op.execute(
            newsletter.update().values(
                {
                    column: sa.select(texts.c.value)
                    .where(
                        texts.c.newsletter_id == newsletter.c.id,
                        texts.c.language == newsletter.c.language,
                        texts.c.key == column,
                    )
                    .scalar_subquery()
                }
            )
        )
    with op.batch_alter_table("newsletter", schema=None) as batch_op:
        batch_op.drop_column("role_policy")
        batch_op.drop_column("disposable_policy")
        batch_op.drop_column("pin_language")
        batch_op.drop_column("language")
    op.drop_table("newsletter_text")
