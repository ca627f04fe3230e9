"""The consent ledger (append-only, chained), erasure's suppression list, readers' mails

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01

consent_event becomes the ledger: it loses its foreign key to subscription (so it outlives
erasure and deletion), gains the ids of subscriber and newsletter, the action, the origin,
the form text's reference, and each row's salted evidence digest and chain hashes, which
are computed here for the rows already there. Then triggers refuse every DELETE and every
UPDATE but a redaction of a row's IP and user agent, on both databases.

Subscriber and subscription ids are never reused on SQLite from here on (AUTOINCREMENT):
the ledger names them by id.
"""

import secrets

import sqlalchemy as sa
from alembic import op

from newsletters.db import UTCDateTime
from newsletters.ledger import evidence_digest, row_hash

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

# Columns that no UPDATE may change (a redaction changes ip, user_agent, salt, redacted_at).
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
REFUSED_DELETE = "the consent ledger is append-only: its rows cannot be deleted"
REFUSED_UPDATE = (
    "the consent ledger is append-only: only a redaction of a row's IP and user agent may change it"
)

PG_FUNCTION = f"""
CREATE FUNCTION consent_event_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR TG_OP = 'TRUNCATE' THEN
        RAISE EXCEPTION '{REFUSED_DELETE}' USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NEW.redacted_at IS NULL OR NEW.user_agent IS NOT NULL OR NEW.salt IS NOT NULL
        OR (NEW.ip IS NOT NULL AND strpos(NEW.ip, '/') = 0)
        OR ({", ".join(f"NEW.{c}" for c in FIXED)}, NEW.txid)
            IS DISTINCT FROM ({", ".join(f"OLD.{c}" for c in FIXED)}, OLD.txid)
    THEN
        RAISE EXCEPTION '{REFUSED_UPDATE.replace("'", "''")}'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END
$$"""
SQLITE_TRIGGERS = [
    f"""
CREATE TRIGGER consent_event_no_delete BEFORE DELETE ON consent_event
BEGIN SELECT RAISE(ABORT, '{REFUSED_DELETE}'); END""",
    f"""
CREATE TRIGGER consent_event_only_redaction BEFORE UPDATE ON consent_event
WHEN NEW.redacted_at IS NULL OR NEW.user_agent IS NOT NULL OR NEW.salt IS NOT NULL
    OR (NEW.ip IS NOT NULL AND instr(NEW.ip, '/') = 0)
    OR {" OR ".join(f"NEW.{c} IS NOT OLD.{c}" for c in FIXED)}
BEGIN SELECT RAISE(ABORT, '{REFUSED_UPDATE.replace("'", "''")}'); END""",
]


def upgrade():
    bind = op.get_bind()
    postgresql = bind.dialect.name == "postgresql"

    for table in ("subscriber", "subscription"):
        if not postgresql:
            with op.batch_alter_table(
                table, recreate="always", table_kwargs={"sqlite_autoincrement": True}
            ):
                pass

    op.create_table(
        "consent_text",
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("digest", name=op.f("pk_consent_text")),
    )
    op.drop_index("ix_consent_event_subscription_id", table_name="consent_event")
    with op.batch_alter_table("consent_event") as batch:
        batch.drop_constraint("fk_consent_event_subscription_id_subscription", type_="foreignkey")
        batch.alter_column("source", existing_type=sa.String(length=20), type_=sa.String(length=64))
        for name, kind in (
            ("subscriber_id", sa.Integer()),
            ("newsletter_id", sa.Integer()),
            ("action", sa.String(length=20)),
            ("origin", sa.String(length=255)),
            ("text_digest", sa.String(length=64)),
            ("salt", sa.String(length=32)),
            ("evidence_digest", sa.String(length=64)),
            ("prev_hash", sa.String(length=64)),
            ("hash", sa.String(length=64)),
            ("redacted_at", UTCDateTime()),
        ):
            batch.add_column(sa.Column(name, kind, nullable=True))
    op.create_index("ix_consent_event_chain", "consent_event", ["subscription_id", "id"])
    op.create_index(op.f("ix_consent_event_subscriber_id"), "consent_event", ["subscriber_id"])
    _chain_existing_events(bind)

    with op.batch_alter_table("subscription") as batch:
        batch.add_column(sa.Column("text_digest", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("origin", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("reminded_at", UTCDateTime(), nullable=True))
    with op.batch_alter_table("signup_request") as batch:
        batch.add_column(sa.Column("origin", sa.String(length=255), nullable=True))
    with op.batch_alter_table("newsletter") as batch:
        batch.add_column(
            sa.Column("welcome_enabled", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("welcome_subject", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("welcome_body", sa.Text(), nullable=True))
        batch.add_column(sa.Column("reminder_hours", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("reminder_subject", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("reminder_body", sa.Text(), nullable=True))

    op.create_table(
        "erased_address",
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("digest", name=op.f("pk_erased_address")),
    )
    op.create_table(
        "link_request",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("ip", sa.String(length=45), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_link_request")),
    )
    op.create_table(
        "purge_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_purge_run")),
    )

    # Tokens of two more purposes: the preference link mailed on request, the data download.
    with op.batch_alter_table("token") as batch:
        # existing_type names the old CHECK constraint, so that it is dropped, not duplicated.
        batch.alter_column(
            "purpose",
            existing_type=_purposes(("confirm", "unsubscribe")),
            type_=_purposes(("confirm", "unsubscribe", "preferences", "data")),
            nullable=False,
        )

    if postgresql:
        # A "send me my link" wakes the workers as a signup does (migration 0011's function).
        op.execute(
            "CREATE TRIGGER link_request_notify AFTER INSERT ON link_request"
            " FOR EACH STATEMENT EXECUTE FUNCTION newsletters_signup_notify()"
        )
        op.execute(PG_FUNCTION)
        op.execute(
            "CREATE TRIGGER consent_event_append_only BEFORE UPDATE OR DELETE ON consent_event"
            " FOR EACH ROW EXECUTE FUNCTION consent_event_append_only()"
        )
        op.execute(
            "CREATE TRIGGER consent_event_no_truncate BEFORE TRUNCATE ON consent_event"
            " FOR EACH STATEMENT EXECUTE FUNCTION consent_event_append_only()"
        )
    else:
        for statement in SQLITE_TRIGGERS:
            op.execute(statement)


def _purposes(values: tuple[str, ...]) -> sa.Enum:
    return sa.Enum(
        *values, name="tokenpurpose", native_enum=False, create_constraint=True, length=20
    )


def _chain_existing_events(bind) -> None:
    """Give the events already there their ids, action, evidence digest and chain."""
    bind.execute(
        sa.text(
            "UPDATE consent_event SET"
            " subscriber_id = (SELECT subscriber_id FROM subscription s"
            "  WHERE s.id = consent_event.subscription_id),"
            " newsletter_id = (SELECT newsletter_id FROM subscription s"
            "  WHERE s.id = consent_event.subscription_id),"
            " action = CASE WHEN source = 'import' THEN 'imported'"
            "  WHEN status = 'pending' THEN 'signed_up' ELSE status END"
        )
    )
    events = sa.table(
        "consent_event",
        *(sa.column(name) for name in FIXED + ["ip", "user_agent", "salt"] if name != "at"),
        sa.column("at", UTCDateTime()),
    )
    after = (-1, -1)
    while True:
        rows = bind.execute(
            sa.select(events)
            .where(sa.tuple_(events.c.subscription_id, events.c.id) > sa.tuple_(*after))
            .order_by(events.c.subscription_id, events.c.id)
            .limit(5000)
        ).all()
        if not rows:
            return
        changes, previous = [], {}
        for row in rows:
            values = dict(row._mapping)
            values["salt"] = secrets.token_hex(16)
            values["evidence_digest"] = evidence_digest(
                values["salt"], values["ip"], values["user_agent"]
            )
            if row.subscription_id not in previous:
                previous[row.subscription_id] = _head(bind, after, row)
            values["prev_hash"] = previous[row.subscription_id]
            values["hash"] = previous[row.subscription_id] = row_hash(values)
            kept = ("id", "salt", "evidence_digest", "prev_hash", "hash")
            changes.append({f"b_{k}": values[k] for k in kept})
        bind.execute(
            sa.update(events)
            .where(events.c.id == sa.bindparam("b_id"))
            .values(
                salt=sa.bindparam("b_salt"),
                evidence_digest=sa.bindparam("b_evidence_digest"),
                prev_hash=sa.bindparam("b_prev_hash"),
                hash=sa.bindparam("b_hash"),
            ),
            changes,
        )
        after = (rows[-1].subscription_id, rows[-1].id)


def _head(bind, after: tuple[int, int], row) -> str | None:
    """Return the hash that ``row`` follows when its chain began in an earlier batch."""
    if row.subscription_id != after[0]:
        return None
    return bind.execute(
        sa.text("SELECT hash FROM consent_event WHERE id = :id"), {"id": after[1]}
    ).scalar()


def downgrade():
    raise NotImplementedError("the consent ledger cannot be turned back into a plain table")
