"""Shared fixtures: a private redis-server for the whole session, and migrated databases."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
import redis
import sqlalchemy

from config import Settings
from devstack.databases import clear_tables, throwaway_database
from devstack.services import start_redis
from tests.databases import KINDS, POSTGRES_URL
from workers.database import make_engine
from workers.migrate import upgrade

TEST_SECRETS_KEY = "qtPnQ3lV7m8pVfIZb8a6Vh0KJ5o7U7u0J0Yc1WQ0xw8="  # a Fernet key for tests only


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    process, url = start_redis(tmp_path_factory.mktemp("redis"))
    yield url
    process.stop()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    client.flushall()
    yield client
    client.close()


@pytest.fixture(scope="session", params=KINDS)
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated database, once per kind per session; PostgreSQL only where TEST_POSTGRES_URL is set."""
    if request.param == "postgres" and not POSTGRES_URL:
        pytest.skip("TEST_POSTGRES_URL is not set")
    with throwaway_database(request.param, tmp_path_factory.mktemp("db")) as url:
        upgrade(url)
        yield url


@pytest.fixture
def engine(database_url: str) -> Iterator[sqlalchemy.Engine]:
    engine = make_engine(database_url)
    clear_tables(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def settings(redis_url: str, tmp_path) -> Settings:
    """Settings for in-process tests: the session's Redis, an Aiwyn that is never called."""
    return replace(
        Settings(),
        aiwyn_base_url="http://127.0.0.1:9",
        aiwyn_client_id="test-client",
        aiwyn_client_secret="test-secret",
        public_url="https://hooks.example.test",
        redis_url=redis_url,
        database_url=f"sqlite:///{tmp_path / 'unused.sqlite3'}",
        job_retry_intervals=(0, 0),
        secrets_key=(TEST_SECRETS_KEY,),
        http_retries=0,
        http_timeout=1.0,
    )


@pytest.fixture(autouse=True)
def _fresh_worker_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    """A test that starts a worker runtime must not leak its handlers into the next test."""
    import workers.runtime

    monkeypatch.setattr(workers.runtime, "_current", None)
