"""A backlog is shared at once: two idle workers that meet 10,000 waiting deliveries both drain them.

The backlog is what a receiver leaves when no worker could take its deliveries (workers down, or
the database away): deliveries in the list, the wake flag and one drain job. One worker took such
a backlog whole while the other idled until its heartbeat (seen: 6,200 / 0); now a drain job that
finds more than a batch waiting queues the next at once (tests/workers/test_backlog_wake.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import redis
import sqlalchemy
from rq import Queue

from bench.load import event
from config.job_contract import (
    JOB_SERIALIZER,
    WAKE_TTL_SECONDS,
    deliveries_key,
    delivery_mac_keys,
    enqueue_drain,
    new_drain_job_id,
    pack_delivery,
    wake_key,
)
from config.settings import from_env
from devstack.databases import throwaway_database
from devstack.services import start_worker
from tests.databases import KINDS, POSTGRES_URL
from tests.e2e.stack import Stack, start_stack, wait_for
from workers.models import LedgerEntry

pytestmark = pytest.mark.e2e

BACKLOG = 10_000
RECORDS = 2_000
SHARE = 0.35


@pytest.fixture(scope="module", params=KINDS)
def two_workers(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if request.param == "postgres" and not POSTGRES_URL:
        pytest.skip("TEST_POSTGRES_URL is not set")
    directory = tmp_path_factory.mktemp(f"backlog-{request.param}")
    with throwaway_database(request.param, directory) as database_url:
        running = start_stack(directory, database_url)
        try:
            running.processes["worker1"] = start_worker(running.env, directory / "worker1.log")
            yield running
        finally:
            running.stop()


def drained_by(log: str) -> int:
    return sum(int(n) for n in re.findall(r"drained (\d+) deliveries", log))


def test_two_workers_share_a_backlog_they_meet_at_once(two_workers: Stack) -> None:
    stack = two_workers
    workers = [stack.processes["worker"], stack.processes["worker1"]]
    before = [drained_by(worker.output()) for worker in workers]
    settings = from_env(stack.env)
    mac_key = delivery_mac_keys(settings.secrets_key)[0]
    subscription_id = stack.subscription()["id"]
    connection = redis.Redis.from_url(stack.env["REDIS_URL"])
    job_id = new_drain_job_id()
    with connection.pipeline(transaction=True) as pipe:  # as the receiver stores them: the flag with the deliveries
        for n in range(BACKLOG):
            event_id, body = event(n, subscription_id, RECORDS, "backlog")
            pipe.rpush(deliveries_key(settings.queue_name), pack_delivery(event_id, subscription_id, body, mac_key))
        pipe.set(wake_key(settings.queue_name), job_id, ex=WAKE_TTL_SECONDS)
        pipe.execute()
    enqueue_drain(Queue(settings.queue_name, connection=connection, serializer=JOB_SERIALIZER), settings, job_id)

    def ledger_count() -> int:
        with stack.engine.connect() as db:
            return db.scalar(sqlalchemy.select(sqlalchemy.func.count()).select_from(LedgerEntry.__table__).where(LedgerEntry.event_id.like("evt_backlog%")))

    wait_for(lambda: ledger_count() == BACKLOG, 120, f"{BACKLOG} events in the ledger")
    # Each job logs what it drained when it ends; the last may still be writing its line.
    shares = wait_for(
        lambda: (counts := [drained_by(worker.output()) - start for worker, start in zip(workers, before, strict=True)]) and sum(counts) >= BACKLOG and counts,
        30,
        "the workers' drained lines",
    )
    assert all(count >= SHARE * BACKLOG for count in shares), f"drained per worker: {shares} of {BACKLOG}"
