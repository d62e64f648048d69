"""Whether Redis and the database answer, said in one line at a process's start.

Places are named by host, port and database only: a URL's user and password never appear.
A problem is either an outage (``answering`` False: wait, it may come back) or a setting that
points at the wrong place (``misconfigured``: a database that does not exist, a wrong password,
tables never migrated), which waiting cannot fix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import redis
import sqlalchemy
from sqlalchemy.engine import make_url

from config.redis_connection import connect, place

# What PostgreSQL or our own check says when the place answers but is the wrong one.
_MISCONFIGURED = re.compile(r"does not exist|authentication failed|no pg_hba\.conf entry|password|not migrated|no such file", re.I)


# ``host:port/db`` of a Redis URL (or its sentinels and service), without its password.
redis_place = place


def database_place(url: str) -> str:
    """``postgresql host:port/name`` or ``sqlite path``, without user or password."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return f"sqlite {parsed.database or ':memory:'}"
    return f"{parsed.get_backend_name()} {parsed.host or 'localhost'}:{parsed.port or 5432}/{parsed.database or ''}"


@dataclass(frozen=True)
class Check:
    what: str  # "Redis at 127.0.0.1:6379/0"
    problem: str | None  # None: it answers

    @property
    def answering(self) -> bool:
        return self.problem is None

    @property
    def misconfigured(self) -> bool:
        return self.problem is not None and bool(_MISCONFIGURED.search(self.problem))

    def describe(self) -> str:
        return f"{self.what} answers" if self.problem is None else f"{self.what} does not answer: {self.problem}"


def _short(exc: BaseException) -> str:
    cause = getattr(exc, "orig", None) or exc
    first = (str(cause).strip().splitlines() or [""])[0]
    return f"{type(cause).__name__}: {first}"[:200]


def check_redis(url: str, timeout: float = 3.0) -> Check:
    what = f"Redis at {redis_place(url)}"
    client = connect(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        client.ping()
    except redis.RedisError as exc:
        return Check(what, _short(exc))
    finally:
        client.close()
    return Check(what, None)


def check_database(url: str, timeout: float = 3.0, table: str | None = "aiwyn_events") -> Check:
    """Connects (SQLite: only to an existing file) and, with ``table``, checks the migrations ran."""
    what = f"database {database_place(url)}"
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:") and not Path(parsed.database).exists():
        return Check(what, "no such file (run: python -m workers migrate)")
    connect_args = {"connect_timeout": max(1, int(timeout))} if parsed.get_backend_name() == "postgresql" else {}
    engine = sqlalchemy.create_engine(parsed, connect_args=connect_args, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT 1"))
            if table and not sqlalchemy.inspect(connection).has_table(table):
                return Check(what, f"{table} is missing: not migrated (run: python -m workers migrate)")
    except sqlalchemy.exc.SQLAlchemyError as exc:
        return Check(what, _short(exc))
    finally:
        engine.dispose()
    return Check(what, None)


def summary(checks: list[Check]) -> str:
    """One line: ``Redis at h:6379/0 answers; database postgresql h:5432/aiwyn does not answer: ...``."""
    return "; ".join(check.describe() for check in checks)
