"""Databases of a local stack: a throw-away one for a run, and emptying one between runs."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy
from sqlalchemy.engine import make_url

from workers.models import metadata


@contextmanager
def throwaway_database(kind: str, directory: Path, server_url: str | None = None) -> Iterator[str]:
    """Yield the URL of an empty database of ``kind``, dropped afterwards.

    ``sqlite``: a new file in ``directory``. ``postgres``: a new database on ``server_url``'s
    server, else on TEST_POSTGRES_URL's; its user must be allowed to create databases.
    """
    if kind == "sqlite":
        yield f"sqlite:///{directory / f'{uuid.uuid4().hex[:8]}.sqlite3'}"
        return
    name = f"aiwyn_test_{uuid.uuid4().hex[:10]}"
    server = make_url(server_url or os.environ.get("TEST_POSTGRES_URL", "")).set(drivername="postgresql+psycopg")
    admin = sqlalchemy.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def clear_tables(engine: sqlalchemy.Engine) -> None:
    """Delete every row of every table the service's metadata knows, children first."""
    with engine.begin() as connection:
        for table in reversed(metadata.sorted_tables):
            connection.execute(table.delete())
