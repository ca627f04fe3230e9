"""Alembic migrations, shipped inside the package; ``upgrade()`` is ``newsletters db upgrade``."""

from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext

from .. import db


def alembic_config() -> Config:
    """Return an Alembic config that runs this package's migrations on the app's engine."""
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent))
    return cfg


def upgrade(revision: str = "head") -> None:
    """Create or migrate the schema of the current app's database."""
    with _migrating() as connection:
        cfg = alembic_config()
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)


def downgrade(revision: str) -> None:
    """Migrate the schema of the current app's database back to ``revision``."""
    with _migrating() as connection:
        cfg = alembic_config()
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, revision)


@contextmanager
def _migrating():
    """Yield a connection in a transaction to migrate with; on SQLite, foreign keys off.

    Batch mode rebuilds a SQLite table by copying it and dropping the old one, and with
    foreign keys on, that drop deletes every row referencing the table (rebuilding the
    subscriptions would wipe their consent events). SQLite switches them only outside a
    transaction, so they go off before it begins and are checked before it commits.
    """
    with db.engine().connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            connection.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")
        try:
            with connection.begin():
                yield connection
                if sqlite and (
                    broken := connection.exec_driver_sql("PRAGMA foreign_key_check").all()
                ):
                    raise RuntimeError(
                        f"the migration leaves rows that reference nothing: {broken[:5]}"
                    )
        finally:
            if sqlite:
                connection.connection.driver_connection.execute("PRAGMA foreign_keys=ON")


def current() -> str | None:
    """Return the revision the current app's database is at."""
    with db.engine().connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def revision(message: str) -> None:
    """Write a new migration from the difference between the models and the database."""
    with db.engine().begin() as connection:
        cfg = alembic_config()
        cfg.attributes["connection"] = connection
        command.revision(cfg, message=message, autogenerate=True)
