"""A batch that keeps failing for a reason other than an outage is split, and a delivery that
fails alone is dead-lettered: never claimed again in a loop."""

from __future__ import annotations

import logging

import pytest
import redis
import sqlalchemy
from click.testing import CliRunner
from sqlalchemy.orm import Session

from config import Settings
from config.settings import _FIELDS
from receiver.delivery_queue import DeliveryQueue
from tests.events import event_body
from tests.workers.conftest import MakeRuntime
from workers import jobs, ledger
from workers.cli import cli
from workers.dead_letters import failures_key
from workers.models import MirroredRecord


@pytest.fixture
def poisoned_ledger(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """An unexpected bug that every attempt at these events meets, even when setting them aside; empty the set to fix it."""
    real = ledger.record
    poisoned = {"evt_poison"}

    def record(session, deliveries, *args, **kwargs):
        if any(d.event_id in poisoned for d in deliveries):
            raise ValueError("a bug met by evt_poison")
        return real(session, deliveries, *args, **kwargs)

    monkeypatch.setattr(ledger, "record", record)
    return poisoned


def mirrored(engine: sqlalchemy.Engine) -> set[str]:
    with Session(engine) as session:
        return set(session.scalars(sqlalchemy.select(MirroredRecord.record_id)))


def invoke(settings: Settings, *args: str) -> str:
    env = dict.fromkeys(_FIELDS, "") | {"REDIS_URL": settings.redis_url, "DATABASE_URL": settings.database_url, "AIWYN_RECEIVER_LOG_LEVEL": "WARNING"}
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        result = CliRunner().invoke(cli, list(args), env=env)
    finally:
        root.handlers[:], root.level = handlers, level
    assert result.exit_code == 0, result.output
    return result.output


def test_a_batch_that_keeps_failing_is_split_and_the_poison_dead_lettered(
    make_runtime: MakeRuntime, settings: Settings, redis_client: redis.Redis, engine: sqlalchemy.Engine,
    poisoned_ledger: set[str], caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    runtime = make_runtime(batch_max_failures=3)
    queue = DeliveryQueue(settings, redis_client)
    for event_id in ("evt_a", "evt_poison", "evt_b"):
        queue.enqueue(event_id, "sub_1", event_body(event_id, record_id=f"rec_{event_id}"))
    with caplog.at_level(logging.INFO, logger="workers.jobs"):
        jobs.drain_deliveries(settings.queue_name)  # retries come due at once here (job_retry_intervals 0)
    assert mirrored(engine) == {"rec_evt_a", "rec_evt_b"}
    assert redis_client.keys("aiwyn:*:batch:*") == [] and redis_client.zcard(f"aiwyn:{settings.queue_name}:batches") == 0
    assert redis_client.hlen(failures_key(settings.queue_name)) == 0
    failures = [r for r in caplog.records if "failed" in r.getMessage() and r.name == "workers.jobs"]
    assert sum(1 for r in failures if r.exc_info) == 2  # once per batch (the whole, then the poison alone)
    assert sum(1 for r in failures if "failed again" in r.getMessage()) == 4
    assert jobs.drain_deliveries(settings.queue_name) == 0  # nothing is claimed again

    listed = invoke(settings, "dead-letter", "list")
    assert "evt_poison" in listed and "x3" in listed and "ValueError: a bug met by evt_poison" in listed
    shown = invoke(settings, "dead-letter", "show", "evt_poison")
    assert '"id": "rec_evt_poison"' in shown

    poisoned_ledger.clear()  # the bug is fixed
    assert "replayed 1" in invoke(settings, "dead-letter", "replay", "evt_poison")
    assert runtime.queue.count >= 1  # a drain job is queued for it
    jobs.drain_deliveries(settings.queue_name)
    assert mirrored(engine) == {"rec_evt_a", "rec_evt_b", "rec_evt_poison"}
    assert "0 dead letter(s)" in invoke(settings, "dead-letter", "list")


def test_discard_drops_a_dead_letter(make_runtime: MakeRuntime, settings: Settings, redis_client: redis.Redis, poisoned_ledger: set[str]) -> None:
    make_runtime(batch_max_failures=1)
    DeliveryQueue(settings, redis_client).enqueue("evt_poison", "sub_1", event_body("evt_poison"))
    jobs.drain_deliveries(settings.queue_name)
    assert "evt_poison" in invoke(settings, "dead-letter", "list")
    assert "discarded 1" in invoke(settings, "dead-letter", "discard", "--all", "--yes")
    assert "evt_poison" not in invoke(settings, "dead-letter", "list")
