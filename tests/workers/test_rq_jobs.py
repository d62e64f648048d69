"""The job contract end to end inside one process: the receiver's enqueue, RQ, the worker's job."""

from __future__ import annotations

from dataclasses import replace

import redis
import sqlalchemy
from rq import Queue, SimpleWorker
from rq.job import Job, JobStatus
from sqlalchemy.orm import Session

from config import Settings
from config.job_contract import job_id_for
from receiver.delivery_queue import DeliveryQueue, Enqueued
from tests.events import event_body
from workers.events import Event
from workers.models import MirroredRecord
from workers.registry import default_registry
from workers.runtime import start_runtime


def test_a_queued_delivery_becomes_a_mirrored_row(settings: Settings, redis_client: redis.Redis, engine: sqlalchemy.Engine, database_url: str) -> None:
    start_runtime(replace(settings, database_url=database_url))
    deliveries = DeliveryQueue(settings, redis_client)
    assert deliveries.enqueue("evt_1", "sub_1", event_body("evt_1", attributes={"name": "Acme"})) is Enqueued.QUEUED
    queue = Queue(settings.queue_name, connection=redis_client)
    SimpleWorker([queue], connection=redis_client).work(burst=True)
    job = Job.fetch(job_id_for("evt_1"), connection=redis_client)
    assert job.get_status() == JobStatus.FINISHED and job.return_value() == "processed"
    with Session(engine) as session:
        row = session.scalars(sqlalchemy.select(MirroredRecord)).one()
    assert (row.record_id, row.attributes) == ("rec_1", {"name": "Acme"})
    # Finished jobs are kept for the dedupe window, so a redelivery is not queued again.
    assert deliveries.enqueue("evt_1", "sub_1", event_body("evt_1")) is Enqueued.DUPLICATE
    assert queue.count == 0


def test_a_failing_job_is_retried_then_kept_in_the_failed_registry(settings: Settings, redis_client: redis.Redis, engine: sqlalchemy.Engine, database_url: str) -> None:
    attempts: list[str] = []

    def broken(event: Event, session: Session) -> None:
        attempts.append(event.id)
        raise ValueError("downstream is broken")

    registry = default_registry()
    registry.register(broken, name="broken")
    start_runtime(replace(settings, database_url=database_url), registry)
    DeliveryQueue(replace(settings, job_retry_intervals=(0, 0, 0)), redis_client).enqueue("evt_1", "sub_1", event_body("evt_1"))
    queue = Queue(settings.queue_name, connection=redis_client)
    SimpleWorker([queue], connection=redis_client).work(burst=True)
    assert attempts == ["evt_1"] * 4  # the first try and three retries
    assert queue.failed_job_registry.get_job_ids() == [job_id_for("evt_1")]
    job = Job.fetch(job_id_for("evt_1"), connection=redis_client)
    assert "downstream is broken" in job.latest_result().exc_string
    with Session(engine) as session:  # the mirror's write was rolled back with the failing handler
        assert session.scalars(sqlalchemy.select(MirroredRecord)).all() == []
