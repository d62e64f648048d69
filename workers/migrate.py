"""Applying the Alembic migrations, from code: no alembic.ini, the URL comes from the settings.

A handler package ships its own tables' migrations by naming, in its ``pyproject.toml``, a
package whose directory holds Alembic version files with a branch label of their own::

    [project.entry-points."aiwyn_receiver.migrations"]
    crm-sync = "crm_sync.migrations"

``python -m workers migrate`` adds each such directory to the version locations and upgrades
every branch (``heads``): this service's and each installed package's.
"""

from __future__ import annotations

import os
from importlib.metadata import entry_points
from pathlib import Path

from alembic import command
from alembic.config import Config

from workers.database import make_engine
from workers.schema_lock import schema_lock

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
ENTRY_POINT_GROUP = "aiwyn_receiver.migrations"


class MigrationsNotFound(Exception):
    """An ``aiwyn_receiver.migrations`` entry point does not name an importable package."""


def version_locations() -> list[str]:
    """This service's versions directory, then each installed package's, by entry point name."""
    locations = [str(MIGRATIONS / "versions")]
    for point in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda p: p.name):
        try:
            package = point.load()
            locations.append(str(Path(list(package.__path__)[0]).resolve()))
        except Exception as exc:
            raise MigrationsNotFound(f"migrations {point.name} = {point.value} ({ENTRY_POINT_GROUP}): {type(exc).__name__}: {exc}") from exc
    return locations


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    # ConfigParser interpolation would mangle a '%' in a password (or a path).
    config.set_main_option("version_locations", os.pathsep.join(version_locations()).replace("%", "%%"))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "heads") -> None:
    """Bring the database's schema up to ``revision`` (every branch's head); safe to run on every
    start, and on every host at once (the schema lock makes the others wait, then find it done)."""
    engine = make_engine(database_url)
    try:
        with schema_lock(engine):
            command.upgrade(alembic_config(database_url), revision)
    finally:
        engine.dispose()
