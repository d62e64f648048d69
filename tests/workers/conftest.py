"""Worker-side helpers: a runtime on the test database, and delivering batches through it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import redis
import sqlalchemy
from sqlalchemy.orm import Session

import emulator
from config import Settings
from devstack.stack import emulator_api
from workers import handler_runs, processing
from workers.models import HandlerRun, LedgerEntry
from workers.registry import HandlerRegistry, default_registry
from workers.runtime import WorkerRuntime, start_runtime

MakeRuntime = Callable[..., WorkerRuntime]


@pytest.fixture
def make_runtime(settings: Settings, database_url: str, engine: sqlalchemy.Engine, redis_client: redis.Redis) -> MakeRuntime:
    """A worker runtime on the test database and Redis, with the given handlers and settings."""

    def make(registry: HandlerRegistry | None = None, **overrides: Any) -> WorkerRuntime:
        tuned = replace(settings, database_url=database_url, handler_retry_delay=0.05, handler_timeout=5.0, **overrides)
        return start_runtime(tuned, registry if registry is not None else default_registry())

    return make


def deliver(runtime: WorkerRuntime, *deliveries: tuple[str, bytes], run_follow_ups: bool = True) -> processing.FollowUps:
    """Commit one batch as a drain job would, then run its custom handlers' jobs inline."""
    claimed_at = datetime.now(UTC)  # a batch of deliveries that arrived by now
    follow_ups = processing.process_batch(runtime, [(event_id, "sub_1", body) for event_id, body in deliveries], claimed_at)
    if run_follow_ups:
        for handler, event_ids in follow_ups.runs.items():
            handler_runs.run_handler(runtime, handler, event_ids, "new", claimed_at)
    return follow_ups


def run_row(engine: sqlalchemy.Engine, event_id: str, handler: str) -> HandlerRun | None:
    with Session(engine) as session:
        return session.get(HandlerRun, (event_id, handler))


def ledger_row(engine: sqlalchemy.Engine, event_id: str) -> LedgerEntry | None:
    with Session(engine) as session:
        return session.get(LedgerEntry, event_id)


def statuses(engine: sqlalchemy.Engine, handler: str) -> dict[str, str]:
    with Session(engine) as session:
        rows = session.execute(sqlalchemy.select(HandlerRun.event_id, HandlerRun.status).where(HandlerRun.handler == handler))
        return dict(rows.all())


AIWYN_CLIENT = ("worker-tests-client", "worker-tests-secret")


@pytest.fixture(scope="module")
def aiwyn() -> Iterator[str]:
    """A real emulator for the tests that read Aiwyn's API (sync, views); no deliveries are retried."""
    server = emulator.EmulatorServer(emulator.Settings(port=0, client_id=AIWYN_CLIENT[0], client_secret=AIWYN_CLIENT[1], retry_schedule=()))
    url = server.start()
    yield url
    server.stop()


@pytest.fixture
def api(aiwyn: str) -> Iterator[httpx.Client]:
    """An authenticated client of a freshly reset emulator."""
    httpx.post(f"{aiwyn}/_emulator/reset", timeout=5).raise_for_status()
    client = emulator_api(aiwyn, *AIWYN_CLIENT)
    yield client
    client.close()
