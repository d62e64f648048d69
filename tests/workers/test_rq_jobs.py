"""The contract end to end inside one process: the receiver's enqueue, RQ, the worker's drain job."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from dataclasses import replace

import redis
import sqlalchemy
from rq.job import Job, JobStatus
from sqlalchemy.orm import Session

from config import Settings
from config.job_contract import deliveries_key, wake_key
from devstack.services import ROOT
from receiver.delivery_queue import DeliveryQueue, Enqueued
from tests.e2e.stack import base_env
from tests.events import event_body
from tests.workers.conftest import MakeRuntime
from workers import shutdown
from workers.migrate import upgrade
from workers.models import MirroredRecord
from workers.registry import default_registry
from workers.runtime import start_runtime
from workers.worker import DrainWorker


def mirrored(engine: sqlalchemy.Engine) -> dict[str, str]:
    with Session(engine) as session:
        return {row.record_id: row.event_id for row in session.scalars(sqlalchemy.select(MirroredRecord))}


def test_queued_deliveries_are_drained_by_one_rq_job(make_runtime: MakeRuntime, settings: Settings, redis_client: redis.Redis, engine: sqlalchemy.Engine) -> None:
    runtime = make_runtime(batch_size=30)
    deliveries = DeliveryQueue(settings, redis_client)
    for i in range(100):
        assert deliveries.enqueue(f"evt_{i}", "sub_1", event_body(f"evt_{i}", record_id=f"rec_{i}")) is Enqueued.QUEUED
    assert runtime.queue.count == 1  # one drain job for the lot, not one job per event
    assert deliveries.enqueue("evt_3", "sub_1", event_body("evt_3")) is Enqueued.DUPLICATE
    DrainWorker([runtime.queue], connection=redis_client, runtime=runtime).work(burst=True)
    assert len(mirrored(engine)) == 100
    assert redis_client.llen(deliveries_key(settings.queue_name)) == 0
    assert redis_client.keys("aiwyn:*:batch:*") == []
    # Remembered for the deduplication window: a redelivery is not queued again.
    assert deliveries.enqueue("evt_1", "sub_1", event_body("evt_1")) is Enqueued.DUPLICATE
    assert 0 < redis_client.ttl("aiwyn:seen:evt_1") <= settings.dedupe_ttl


def test_a_database_error_while_the_database_answers_gives_the_batch_back_for_a_while(make_runtime: MakeRuntime, settings: Settings, redis_client: redis.Redis, engine: sqlalchemy.Engine, tmp_path) -> None:
    outage = replace(settings, database_url=f"sqlite:///{tmp_path / 'not-migrated.sqlite3'}", job_retry_intervals=(1,))
    broken = start_runtime(outage, default_registry())  # every statement fails: no such table
    deliveries = DeliveryQueue(outage, redis_client)
    for i in range(5):
        deliveries.enqueue(f"evt_{i}", "sub_1", event_body(f"evt_{i}", record_id=f"rec_{i}"))
    [job] = broken.queue.jobs
    DrainWorker([broken.queue], connection=redis_client, runtime=broken).work(burst=True)
    # Not RQ's failure path: the job ends, its batch given back for the first retry interval
    # (the database answers, so waiting for it would not help, and nothing spins on the batch).
    assert job.get_status(refresh=True) == JobStatus.FINISHED and job.return_value() == 0
    assert broken.queue.scheduled_job_registry.get_job_ids() == []
    assert mirrored(engine) == {}
    time.sleep(1.1)
    # The database is fixed: an idle worker's sweep takes the given-back batch over.
    runtime = make_runtime()
    DrainWorker([runtime.queue], connection=redis_client, runtime=runtime).work(burst=True)
    assert sorted(mirrored(engine)) == [f"rec_{i}" for i in range(5)]
    assert redis_client.keys("aiwyn:*:batch:*") == []


def test_a_worker_waits_for_a_lost_database_and_drains_when_it_is_back(settings: Settings, redis_client: redis.Redis, tmp_path, caplog) -> None:
    folder = tmp_path / "db"
    url = f"sqlite:///{folder / 'mirror.sqlite3'}"
    upgrade(url)
    runtime = start_runtime(replace(settings, database_url=url, job_retry_intervals=(30,)), default_registry())
    deliveries = DeliveryQueue(runtime.settings, redis_client)
    for i in range(5):
        deliveries.enqueue(f"evt_{i}", "sub_1", event_body(f"evt_{i}", record_id=f"rec_{i}"))
    [job] = runtime.queue.jobs
    folder.rename(tmp_path / "away")  # the database is gone: no connection can be opened
    threading.Timer(1.5, lambda: (tmp_path / "away").rename(folder)).start()
    guard = threading.Timer(60, shutdown.stopping.set)  # a broken wait ends the test, never hangs it
    guard.start()
    try:
        with caplog.at_level(logging.INFO):
            DrainWorker([runtime.queue], connection=redis_client, runtime=runtime).work(burst=True)
    finally:
        guard.cancel()
        shutdown.stopping.clear()
    # The job gave its batch back due at once and ended; the worker waited, then drained it.
    assert job.get_status(refresh=True) == JobStatus.FINISHED
    assert sorted(mirrored(runtime.engine)) == [f"rec_{i}" for i in range(5)]
    assert redis_client.keys("aiwyn:*:batch:*") == []
    said = [r.getMessage() for r in caplog.records if "database sqlite" in r.getMessage()]
    assert len(said) == 2 and "lost (OperationalError)" in said[0] and "is back after" in said[1], said
    assert not any(r.exc_info for r in caplog.records), "no traceback"
    assert runtime.queue.failed_job_registry.count == 0


def test_a_lost_wake_up_is_made_good_by_the_workers_sweep(make_runtime: MakeRuntime, settings: Settings, redis_client: redis.Redis, engine: sqlalchemy.Engine) -> None:
    runtime = make_runtime()
    DeliveryQueue(settings, redis_client).enqueue("evt_1", "sub_1", event_body("evt_1"))
    # The receiver died between storing the delivery and queueing the drain job; the wake-up flag expired.
    runtime.queue.empty()
    redis_client.delete(wake_key(settings.queue_name))
    DrainWorker([runtime.queue], connection=redis_client, runtime=runtime).work(burst=True)
    assert mirrored(engine) == {"rec_1": "evt_1"}


def test_a_worker_does_not_start_when_a_handler_module_is_broken(settings: Settings, database_url: str) -> None:
    env = base_env() | {"REDIS_URL": settings.redis_url, "DATABASE_URL": database_url, "AIWYN_RECEIVER_HANDLER_MODULES": "tests.no_such_handlers",
                        "AIWYN_RECEIVER_SECRETS_KEY": settings.secrets_key[0]}  # fmt: skip
    result = subprocess.run([sys.executable, "-m", "workers", "work", "--burst"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "handler module tests.no_such_handlers (AIWYN_RECEIVER_HANDLER_MODULES) failed to import: ModuleNotFoundError" in result.stderr


def test_handler_jobs_have_their_own_queue_and_a_worker_drains_first(make_runtime: MakeRuntime, settings: Settings, redis_client: redis.Redis, engine: sqlalchemy.Engine) -> None:
    registry = default_registry()
    calls: list[str] = []
    registry.register(lambda event, session: calls.append(event.id), name="slow")
    runtime = make_runtime(registry)
    deliveries = DeliveryQueue(settings, redis_client)
    deliveries.enqueue("evt_1", "sub_1", event_body("evt_1", record_id="rec_1"))
    DrainWorker([runtime.queue], connection=redis_client, runtime=runtime).work(burst=True)  # a drain-only worker
    assert mirrored(engine) == {"rec_1": "evt_1"} and calls == []
    assert runtime.handler_queue.name == f"{settings.queue_name}-handlers" and runtime.handler_queue.count == 1
    deliveries.enqueue("evt_2", "sub_1", event_body("evt_2", record_id="rec_2"))  # queued after the handler job
    both = DrainWorker([runtime.queue, runtime.handler_queue], connection=redis_client, runtime=runtime)
    both.work(burst=True, max_jobs=1)
    assert mirrored(engine) == {"rec_1": "evt_1", "rec_2": "evt_2"} and calls == []  # the drain job went first
    both.work(burst=True)
    assert calls == ["evt_1", "evt_2"]


def test_a_drain_job_taken_by_a_worker_that_died_does_not_hold_up_the_next_delivery(
    make_runtime: MakeRuntime, settings: Settings, redis_client: redis.Redis, engine: sqlalchemy.Engine
) -> None:
    runtime = make_runtime()
    deliveries = DeliveryQueue(settings, redis_client)
    deliveries.enqueue("evt_1", "sub_1", event_body("evt_1", record_id="rec_1"))
    [job] = runtime.queue.jobs
    assert redis_client.get(wake_key(settings.queue_name)).decode() == job.id  # the flag names its job
    # A worker dequeues the job and is SIGKILLed before the job starts draining: the flag stays.
    def die_after_dequeue(job: Job) -> None:
        redis_client.lrem(runtime.queue.key, 0, job.id)
        job.set_status(JobStatus.STARTED)

    die_after_dequeue(job)
    deliveries.enqueue("evt_2", "sub_1", event_body("evt_2", record_id="rec_2"))
    [second] = runtime.queue.jobs  # the next delivery queues a drain job at once, not after the flag's TTL
    die_after_dequeue(second)
    assert runtime.batches.wake_if_needed()  # and so does an idle worker's sweep
    assert not runtime.batches.wake_if_needed()  # but only one while that one is queued
    DrainWorker([runtime.queue], connection=redis_client, runtime=runtime).work(burst=True)
    assert mirrored(engine) == {"rec_1": "evt_1", "rec_2": "evt_2"}
