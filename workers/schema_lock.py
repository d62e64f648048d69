"""One schema change at a time across every host: ``release`` may run on all of them at once.

Two ``python -m workers migrate`` on a fresh PostgreSQL both create ``alembic_version`` and
one fails (``duplicate key ... pg_type_typname_nsp_index``); two ``views`` both plan the same
``CREATE VIEW`` from an empty ``aiwyn_views`` and one fails the same way. Each takes this lock
before it reads what exists, so the second waits, then finds the first's work and does nothing.

PostgreSQL: a session advisory lock, held by a connection of its own (so the migration's
connection never waits on itself) and released by the server if the holder dies. SQLite (one
machine by nature): ``flock`` on a file beside the database, released by the kernel likewise.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, text

# A fixed key of this service's in PostgreSQL's advisory lock space (64-bit; any other user of
# that space on the same database would have to pick this very number to collide).
ADVISORY_KEY = 0x4149_5759_4E53_4348  # "AIWYNSCH"


@contextmanager
def schema_lock(engine: Engine) -> Iterator[None]:
    """Hold the database's schema lock for the block (waits for another holder, without a limit)."""
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": ADVISORY_KEY})
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_KEY})
        return
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield  # a private in-memory database: nobody else to wait for
        return
    lock_path = Path(database).with_name(Path(database).name + ".schema-lock")
    with open(lock_path, "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)
