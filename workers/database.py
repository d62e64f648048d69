"""Engines for the mirror's database: SQLite by default, PostgreSQL when DATABASE_URL says so."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Table, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the web process read while a worker writes; the busy timeout makes two
    # workers queue for the write lock instead of failing with "database is locked".
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(database_url: str) -> Engine:
    """An engine with the pragmas or pool the dialect needs; creates the SQLite folder."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if url.get_backend_name() == "postgresql" and url.get_driver_name() in ("", "psycopg2"):
        url = url.set(drivername="postgresql+psycopg")  # the driver we depend on
    return create_engine(url, pool_pre_ping=True, pool_size=2, max_overflow=2)


_INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def dialect_insert(session: Session, table: Table) -> Any:
    """An INSERT with ``on_conflict_do_*`` for the session's database: the upserts need one."""
    dialect = session.get_bind().dialect.name
    try:
        return _INSERTS[dialect](table)
    except KeyError:
        raise NotImplementedError(f"this service supports SQLite and PostgreSQL, not {dialect}") from None


def execute_many(session: Session, statement: Any, rows: list[dict[str, Any]]) -> Any:
    """One compiled statement run over many rows (SQLAlchemy batches them into multi-row
    INSERTs): a statement built with ``.values(rows)`` would be compiled anew every time,
    which the profile showed costs more than the database's work."""
    return session.connection().execute(statement, rows)


def db_time(moment: datetime, dialect: str) -> datetime:
    """SQLite keeps datetimes as text: naive UTC everywhere keeps its comparisons right."""
    return moment.astimezone(UTC).replace(tzinfo=None) if dialect == "sqlite" else moment


def now_for(session_or_engine: Session | Engine) -> datetime:
    """The time now, as the database behind this session or engine compares it."""
    bind = session_or_engine.get_bind() if isinstance(session_or_engine, Session) else session_or_engine
    return db_time(datetime.now(UTC), bind.dialect.name)
