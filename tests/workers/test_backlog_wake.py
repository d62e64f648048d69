"""A drain job that finds a backlog of more than a batch queues the next drain job at once, for an idle worker."""

from __future__ import annotations

import redis

from config import Settings
from receiver.delivery_queue import DeliveryQueue
from tests.events import event_body
from tests.workers.conftest import MakeRuntime
from workers import jobs


def test_a_backlog_of_more_than_a_batch_queues_another_drain_job(make_runtime: MakeRuntime, settings: Settings, redis_client: redis.Redis) -> None:
    runtime = make_runtime(batch_size=2)
    queue = DeliveryQueue(settings, redis_client)
    for n in range(5):
        queue.enqueue(f"evt_{n}", "sub_1", event_body(f"evt_{n}", record_id=f"rec_{n}"))
    runtime.queue.empty()  # the receiver's drain job: this test runs the job itself
    assert jobs.drain_deliveries(settings.queue_name) == 5
    # After the first claim 3 waited (more than a batch): one drain job for another worker; then 1 waited: none.
    assert len(runtime.queue.get_job_ids()) == 1

def test_a_backlog_that_fits_the_next_batch_queues_none(make_runtime: MakeRuntime, settings: Settings, redis_client: redis.Redis) -> None:
    runtime = make_runtime(batch_size=2)
    queue = DeliveryQueue(settings, redis_client)
    for n in range(3):
        queue.enqueue(f"evt_{n}", "sub_1", event_body(f"evt_{n}", record_id=f"rec_{n}"))
    runtime.queue.empty()
    assert jobs.drain_deliveries(settings.queue_name) == 3
    assert runtime.queue.get_job_ids() == []
