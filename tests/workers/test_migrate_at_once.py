"""``release`` on several hosts at once: every ``python -m workers migrate`` succeeds, the schema is made once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy

from devstack.databases import throwaway_database
from devstack.services import ROOT
from devstack.stack import clean_environ
from tests.databases import KINDS, POSTGRES_URL
from workers.database import make_engine

HOSTS = 3


@pytest.mark.parametrize("kind", KINDS)
def test_migrate_run_by_several_hosts_at_once_succeeds_on_every_one(kind: str, tmp_path: Path) -> None:
    """Without the schema lock, two of these on a fresh PostgreSQL both create ``alembic_version``
    and all but one fail (``duplicate key value violates unique constraint "pg_type_typname_nsp_index"``)."""
    if kind == "postgres" and not POSTGRES_URL:
        pytest.skip("TEST_POSTGRES_URL is not set")
    with throwaway_database(kind, tmp_path) as database_url:
        env = clean_environ() | {"DATABASE_URL": database_url}
        hosts = [
            subprocess.Popen([sys.executable, "-m", "workers", "migrate"], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for _ in range(HOSTS)
        ]
        outputs = [host.communicate(timeout=120)[0] for host in hosts]
        assert [host.returncode for host in hosts] == [0] * HOSTS, "\n".join(outputs)
        engine = make_engine(database_url)
        try:
            with engine.connect() as connection:
                versions = connection.execute(sqlalchemy.text("SELECT version_num FROM alembic_version")).scalars().all()
                assert len(versions) == 1  # one head, written once
                assert "aiwyn_records" in sqlalchemy.inspect(connection).get_table_names()
        finally:
            engine.dispose()
