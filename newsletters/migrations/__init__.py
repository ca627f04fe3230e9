"""Alembic migrations, shipped inside the package; ``upgrade()`` is ``newsletters db upgrade``."""

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
    with db.engine().begin() as connection:
        cfg = alembic_config()
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)


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
