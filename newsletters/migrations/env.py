"""Alembic's entry point: migrate the connection handed over by ``migrations.upgrade()``."""

from alembic import context

from newsletters.models import Base

# Indexes that migrations make by hand for one backend and the models cannot express; without
# this, autogenerate would propose dropping them.
HAND_MADE_INDEXES = {
    "ix_subscriber_email_c",
    "ix_subscriber_email_trgm",
    "ix_subscription_name_trgm",
}
# SQLite's FTS5 table of the subscriber search (migration 0017) and the tables it keeps itself.
HAND_MADE_TABLES = "subscription_search"


def include_object(obj, name, type_, reflected, compare_to):
    if type_ == "table" and name.startswith(HAND_MADE_TABLES):
        return False
    return not (type_ == "index" and name in HAND_MADE_INDEXES)


connection = context.config.attributes["connection"]
context.configure(
    include_object=include_object,
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite cannot ALTER most things; batch mode rebuilds tables the same way on both.
    render_as_batch=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
