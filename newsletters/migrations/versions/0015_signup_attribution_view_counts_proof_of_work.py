"""Where signups come from, form views per day, and spent proof-of-work challenges

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05

Signups (their requests, subscriptions and consent events) keep the page the form was on, the
campaign its utm_* parameters name, and what the signup proved (a solved challenge, or
nothing: unverified); subscriptions, when the mail server took their confirmation mail.
daily_count holds views of each form and page per day and the signups each defence stopped;
spent_challenge the challenges already used, until they expire. Rows from before keep their
source ("form", "embed") and have no page.
"""

import sqlalchemy as sa
from alembic import op

import newsletters.db

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

# The consent ledger's columns that no UPDATE may change (migration 0013's list), now with
# the page and the verification: its triggers are written again to guard them too.
FIXED = [
    "id",
    "subscription_id",
    "subscriber_id",
    "newsletter_id",
    "action",
    "status",
    "at",
    "source",
    "origin",
    "text_digest",
    "detail",
    "evidence_digest",
    "prev_hash",
    "hash",
]
REFUSED_UPDATE = (
    "the consent ledger is append-only: only a redaction of a row's IP and user agent may change it"
)
REFUSED_DELETE = "the consent ledger is append-only: its rows cannot be deleted"


def _guards(fixed: list[str]) -> tuple[str, str]:
    """Return the PostgreSQL function and the SQLite trigger that keep ``fixed`` unchanged."""
    refused = REFUSED_UPDATE.replace("'", "''")
    function = f"""
CREATE OR REPLACE FUNCTION consent_event_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR TG_OP = 'TRUNCATE' THEN
        RAISE EXCEPTION '{REFUSED_DELETE}' USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NEW.redacted_at IS NULL OR NEW.user_agent IS NOT NULL OR NEW.salt IS NOT NULL
        OR (NEW.ip IS NOT NULL AND strpos(NEW.ip, '/') = 0)
        OR ({", ".join(f"NEW.{c}" for c in fixed)}, NEW.txid)
            IS DISTINCT FROM ({", ".join(f"OLD.{c}" for c in fixed)}, OLD.txid)
    THEN
        RAISE EXCEPTION '{refused}' USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END
$$"""
    trigger = f"""
CREATE TRIGGER consent_event_only_redaction BEFORE UPDATE ON consent_event
WHEN NEW.redacted_at IS NULL OR NEW.user_agent IS NOT NULL OR NEW.salt IS NOT NULL
    OR (NEW.ip IS NOT NULL AND instr(NEW.ip, '/') = 0)
    OR {" OR ".join(f"NEW.{c} IS NOT OLD.{c}" for c in fixed)}
BEGIN SELECT RAISE(ABORT, '{refused}'); END"""
    return function, trigger


def _guard(fixed: list[str]) -> None:
    function, trigger = _guards(fixed)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(function)
    else:
        op.execute("DROP TRIGGER IF EXISTS consent_event_only_redaction")
        op.execute(trigger)


ATTRIBUTION = (
    ("page", sa.String(length=1000)),
    ("utm_source", sa.String(length=200)),
    ("utm_medium", sa.String(length=200)),
    ("utm_campaign", sa.String(length=200)),
    ("verification", sa.String(length=16)),
)


def upgrade():
    for table in ("subscription", "signup_request"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for name, type_ in ATTRIBUTION:
                batch_op.add_column(sa.Column(name, type_, nullable=True))
    with op.batch_alter_table("subscription", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("mail_accepted_at", newsletters.db.UTCDateTime(), nullable=True)
        )
    with op.batch_alter_table("consent_event", schema=None) as batch_op:
        batch_op.add_column(sa.Column("page", sa.String(length=1000), nullable=True))
        batch_op.add_column(sa.Column("verification", sa.String(length=16), nullable=True))
    _guard([*FIXED, "page", "verification"])
    op.create_table(
        "daily_count",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("newsletter_id", sa.Integer(), nullable=False),
        sa.Column("metric", sa.String(length=32), nullable=False),
        sa.Column("form", sa.String(length=16), nullable=False),
        sa.Column("page", sa.String(length=1000), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["newsletter_id"],
            ["newsletter.id"],
            name=op.f("fk_daily_count_newsletter_id_newsletter"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "day", "newsletter_id", "metric", "form", "page", name=op.f("pk_daily_count")
        ),
    )
    op.create_table(
        "spent_challenge",
        sa.Column("signature", sa.String(length=128), nullable=False),
        sa.Column("expires_at", newsletters.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("signature", name=op.f("pk_spent_challenge")),
    )
    op.create_index(
        op.f("ix_spent_challenge_expires_at"), "spent_challenge", ["expires_at"], unique=False
    )


def downgrade():
    op.drop_index(op.f("ix_spent_challenge_expires_at"), table_name="spent_challenge")
    op.drop_table("spent_challenge")
    op.drop_table("daily_count")
    _guard(FIXED)
    with op.batch_alter_table("consent_event", schema=None) as batch_op:
        batch_op.drop_column("verification")
        batch_op.drop_column("page")
    with op.batch_alter_table("subscription", schema=None) as batch_op:
        batch_op.drop_column("mail_accepted_at")
    for table in ("signup_request", "subscription"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for name, _ in reversed(ATTRIBUTION):
                batch_op.drop_column(name)
