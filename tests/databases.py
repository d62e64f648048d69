"""Throw-away databases for tests: a SQLite file, or a fresh database on TEST_POSTGRES_URL's server."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy
from sqlalchemy.engine import make_url

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "")
KINDS = ["sqlite", "postgres"]


@contextmanager
def throwaway_database(kind: str, directory: Path, server_url: str | None = None) -> Iterator[str]:
    """Yield the URL of an empty database of ``kind`` (on ``server_url``, else TEST_POSTGRES_URL's server); it is dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{directory / f'{uuid.uuid4().hex[:8]}.sqlite3'}"
        return
    name = f"aiwyn_test_{uuid.uuid4().hex[:10]}"
    server = make_url(server_url or POSTGRES_URL).set(drivername="postgresql+psycopg")
    admin = sqlalchemy.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
