"""Write access to Redis is not code execution, nor a way past the signature check (issue 14, finding 3)."""

from __future__ import annotations

import os
import pickle
import re
import zlib
from pathlib import Path

import redis
import sqlalchemy
from rq import Queue
from rq.job import JobStatus
from sqlalchemy.orm import Session

from config import Settings
from config.job_contract import JOB_SERIALIZER, deliveries_key, delivery_mac_keys, pack_delivery
from devstack.services import ROOT
from receiver.delivery_queue import DeliveryQueue
from tests.events import event_body
from tests.workers.conftest import MakeRuntime
from workers.delivery_batches import unverified_key
from workers.models import MirroredRecord
from workers.worker import ALLOWED_JOBS, DrainWorker


def mirrored(engine: sqlalchemy.Engine) -> set[str]:
    with Session(engine) as session:
        return {row.record_id for row in session.scalars(sqlalchemy.select(MirroredRecord))}


def test_a_job_naming_any_other_function_is_failed_unrun(make_runtime: MakeRuntime, redis_client: redis.Redis, tmp_path: Path, caplog) -> None:
    runtime = make_runtime()
    marker = tmp_path / "owned"
    job = runtime.queue.enqueue("subprocess.getoutput", f"touch {marker}")  # what anyone with Redis access can write
    DrainWorker([runtime.queue], connection=redis_client, runtime=runtime).work(burst=True)
    assert not marker.exists()
    job.refresh()
    assert job.get_status() == JobStatus.FAILED and job.id in runtime.queue.failed_job_registry.get_job_ids()
    assert "refused, not run: 'subprocess.getoutput' is not one of the project's job functions" in caplog.text


class _Payload:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.path}",))


def test_a_pickled_job_runs_no_code_when_a_worker_reads_it(make_runtime: MakeRuntime, redis_client: redis.Redis, tmp_path: Path) -> None:
    """RQ's default serializer is pickle, which runs code while a job is loaded: jobs are JSON."""
    runtime = make_runtime()
    marker = tmp_path / "owned"
    job_id = "forged"
    redis_client.hset(
        f"rq:job:{job_id}",
        mapping={
            "data": zlib.compress(pickle.dumps(("workers.jobs.drain_deliveries", None, (_Payload(marker),), {}))),
            "meta": pickle.dumps({"x": _Payload(marker)}),
            "origin": runtime.queue.name,
            "status": "queued",
            "created_at": "2026-12-01T00:00:00.000000Z",
            "enqueued_at": "2026-12-01T00:00:00.000000Z",
            "description": "forged",
        },
    )
    redis_client.rpush(f"rq:queue:{runtime.queue.name}", job_id)
    DrainWorker([runtime.queue], connection=redis_client, runtime=runtime).work(burst=True)
    assert not marker.exists()
    assert Queue(runtime.queue.name, connection=redis_client, serializer=JOB_SERIALIZER).fetch_job(job_id).get_status() == JobStatus.FAILED


def test_every_job_the_project_queues_is_allowed() -> None:
    named = set()
    for folder in ("config", "receiver", "workers"):
        for path in (ROOT / folder).rglob("*.py"):
            named |= set(re.findall(r'"(workers\.jobs\.\w+)"', path.read_text()))
    assert named and named == set(ALLOWED_JOBS)


def test_a_delivery_pushed_without_the_receivers_mac_is_set_aside(
    make_runtime: MakeRuntime, settings: Settings, redis_client: redis.Redis, engine: sqlalchemy.Engine, caplog
) -> None:
    runtime = make_runtime()
    queue = deliveries_key(settings.queue_name)
    DeliveryQueue(settings, redis_client).enqueue("evt_real", "sub_1", event_body("evt_real", record_id="rec_real"))
    forged_key = delivery_mac_keys(("ZmFrZWtleWZha2VrZXlmYWtla2V5ZmFrZWtleWZha2U=",))[0]
    redis_client.rpush(queue, pack_delivery("evt_forged", "sub_1", event_body("evt_forged", record_id="rec_forged"), forged_key))
    redis_client.rpush(queue, b"evt_old\nsub_1\n" + event_body("evt_old", record_id="rec_old"))  # no MAC at all
    DrainWorker([runtime.queue], connection=redis_client, runtime=runtime).work(burst=True)
    assert mirrored(engine) == {"rec_real"}
    assert redis_client.llen(unverified_key(settings.queue_name)) == 2  # kept for an operator, never applied
    assert "has a MAC that does not match" in caplog.text and "carries no MAC" in caplog.text


def test_deliveries_queued_before_the_upgrade_pass_during_the_transition(
    make_runtime: MakeRuntime, settings: Settings, redis_client: redis.Redis, engine: sqlalchemy.Engine
) -> None:
    runtime = make_runtime(accept_deliveries_without_mac=True)
    redis_client.rpush(deliveries_key(settings.queue_name), b"evt_old\nsub_1\n" + event_body("evt_old", record_id="rec_old"))
    runtime.batches.wake_if_needed()
    DrainWorker([runtime.queue], connection=redis_client, runtime=runtime).work(burst=True)
    assert mirrored(engine) == {"rec_old"}
