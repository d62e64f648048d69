"""``AIWYN_RECEIVER_REDIS_MIN_REPLICAS`` (issue 19): a 2xx only once that many replicas have the delivery.

A real primary with a real replica (``REPLICAOF``); without one, the same primary answers WAIT
with 0 and the endpoint 503, while the delivery, stored all the same, gets its drain job.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis
from flask.testing import FlaskClient
from rq import Queue

from config import Settings
from config.job_contract import JOB_SERIALIZER, deliveries_key
from config.metrics_contract import request_duration_key, requests_key
from devstack.services import Process, start_redis, wait_until
from receiver import create_app
from tests.receiver.test_webhook import SECRET, SUB, delivery


def _client(settings: Settings) -> FlaskClient:
    app = create_app(settings)
    app.extensions["aiwyn"].secrets.store(SUB, [{"secret": SECRET, "algorithm": "v1", "expiresAt": None}])
    return app.test_client()


def _answered(connection: redis.Redis, queue: str) -> dict[tuple[str, str], int]:
    counts = connection.hgetall(requests_key(queue))
    return {tuple(json.loads(name)): int(value) for name, value in counts.items() if int(value)}


@pytest.fixture(scope="module")
def replicated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, redis.Redis]]:
    """A private primary and one replica in step with it: the primary's URL and a client of the replica."""
    directory: Path = tmp_path_factory.mktemp("replicated")
    processes: list[Process] = []
    try:
        primary, primary_url = start_redis(directory / "primary")
        processes.append(primary)
        follower, replica_url = start_redis(directory / "replica")
        processes.append(follower)
        replica = redis.Redis.from_url(replica_url)
        port = int(primary_url.rsplit(":", 1)[1].split("/")[0])
        replica.replicaof("127.0.0.1", port)
        wait_until(lambda: replica.info("replication").get("master_link_status") == "up", 15, "the replica in step", follower)
        yield primary_url, replica
        replica.close()
    finally:
        for process in processes:
            process.stop()


def test_without_a_replica_a_delivery_is_stored_and_drained_but_answered_503_with_the_reason(
    settings: Settings, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    client = _client(replace(settings, redis_min_replicas=1, redis_replica_timeout_ms=20))
    headers, body = delivery()
    with caplog.at_level(logging.WARNING, logger="receiver.webhook"):
        answer = client.post("/webhooks/aiwyn", data=body, headers=headers)
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "30"
    reason = "redis: 0 of 1 replicas acknowledged within 20 ms"
    assert f"status=503 reason={reason!r}" in caplog.text
    # Stored all the same, with its drain job queued now, not at a worker's next idle check.
    assert redis_client.llen(deliveries_key(settings.queue_name)) == 1
    assert Queue(settings.queue_name, connection=redis_client, serializer=JOB_SERIALIZER).count == 1
    # Aiwyn's retry is a duplicate: its first copy may not be on a replica yet either.
    assert client.post("/webhooks/aiwyn", data=body, headers=delivery(body=body)[0]).status_code == 503
    assert redis_client.llen(deliveries_key(settings.queue_name)) == 1
    assert _answered(redis_client, settings.queue_name) == {("503", reason): 2}  # not also as 202 / 200
    durations = redis_client.hgetall(request_duration_key(settings.queue_name))
    assert sum(int(v) for k, v in durations.items() if k != b"sum_us") == 2  # one duration per request
    readiness = client.get("/readyz")
    assert readiness.status_code == 503 and readiness.json["checks"]["replicas"] == "0 online, 1 required"


def test_with_the_replica_in_step_the_delivery_is_on_it_before_the_202(settings: Settings, replicated: tuple[str, redis.Redis]) -> None:
    primary_url, replica = replicated
    settings = replace(settings, redis_url=primary_url, redis_min_replicas=1, redis_replica_timeout_ms=1000)
    client = _client(settings)
    headers, body = delivery("evt_R1")
    assert client.post("/webhooks/aiwyn", data=body, headers=headers).status_code == 202
    # WAIT returned 1: the replica had it when the endpoint answered (no polling here).
    assert replica.llen(deliveries_key(settings.queue_name)) == 1
    assert client.post("/webhooks/aiwyn", data=body, headers=delivery("evt_R1", body=body)[0]).status_code == 200
    assert client.get("/readyz").json["checks"]["replicas"] == "ok"


def test_after_a_failover_the_script_is_loaded_again_on_the_new_primary(settings: Settings, redis_client: redis.Redis) -> None:
    client = _client(replace(settings, redis_min_replicas=1, redis_replica_timeout_ms=20))
    redis_client.script_flush()  # what a promoted replica's empty script cache looks like
    headers, body = delivery("evt_N1")
    assert client.post("/webhooks/aiwyn", data=body, headers=headers).status_code == 503  # no replica here: stored, not 500
    assert redis_client.llen(deliveries_key(settings.queue_name)) == 1
