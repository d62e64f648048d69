"""Nothing acknowledged is ever stuck: a poison delivery, a Redis SIGKILL and restart, under a
stream of deliveries, with real processes (one stack for the module, Redis on appendonly)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import signal
import sqlite3
import time
from collections.abc import Iterator

import httpx
import pytest
import redis

from devstack.services import start_redis
from tests.e2e.stack import Stack, start_stack, wait_for
from tests.events import event_body

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("outages")
    # A short job timeout: a batch whose worker lost Redis mid-job is taken over when it ends.
    running = start_stack(directory, f"sqlite:///{directory / 'mirror.sqlite3'}", durable_redis=True, AIWYN_RECEIVER_JOB_TIMEOUT="10")
    try:
        yield running
    finally:
        running.stop()


def post_signed(stack: Stack, event_id: str, body: bytes) -> int:
    """Deliver a body of our own, signed with the subscription's secret, as Aiwyn would."""
    subscription_id = stack.subscription()["id"]
    secret = stack.api().get(f"/api/v1/event-subscriptions/{subscription_id}/secret").json()["data"]["secrets"][0]["secret"]
    timestamp = str(int(time.time()))
    signature = base64.b64encode(hmac.new(base64.b64decode(secret.removeprefix("whsec_")), f"{event_id}.{timestamp}.".encode() + body, hashlib.sha256).digest())
    headers = {"Content-Type": "application/json", "webhook-id": event_id, "webhook-timestamp": timestamp,
               "webhook-signature": f"v1,{signature.decode()}", "aiwyn-subscription-id": subscription_id}  # fmt: skip
    return httpx.post(f"{stack.web_url}/webhooks/aiwyn", content=body, headers=headers, timeout=10).status_code


def our_body(stack: Stack, event_id: str, **fields: object) -> bytes:
    return json.dumps(json.loads(event_body(event_id, **fields)) | {"subscriptionId": stack.subscription()["id"]}).encode()


def poison_bodies(stack: Stack, tag: str) -> dict[str, bytes]:
    deep = json.loads(our_body(stack, f"evt_deep_{tag}", record_id=f"rec_deep_{tag}"))
    deep["record"]["attributes"] = {"deep": json.loads("[" * 600 + "]" * 600)}
    not_an_event = {"id": f"evt_notevent_{tag}", "subscriptionId": stack.subscription()["id"], "hello": "world"}
    return {
        f"evt_deep_{tag}": json.dumps(deep).encode(),
        f"evt_huge_{tag}": our_body(stack, f"evt_huge_{tag}", record_id=f"rec_huge_{tag}", version=2**64),
        f"evt_early_{tag}": our_body(stack, f"evt_early_{tag}", record_id=f"rec_early_{tag}", occurred_at="0001-01-01T00:00:00+01:00"),
        f"evt_notevent_{tag}": json.dumps(not_an_event).encode(),
    }


def test_poison_deliveries_are_set_aside_and_their_batch_neighbours_mirrored(stack: Stack) -> None:
    worker = stack.processes["worker"]
    poison = poison_bodies(stack, "p1")
    neighbours = {f"evt_n{i}_p1": our_body(stack, f"evt_n{i}_p1", record_id=f"rec_n{i}_p1") for i in range(6)}
    worker.signal(signal.SIGSTOP)  # so that all of them wait for one claim: one batch
    try:
        for event_id, body in [*neighbours.items(), *poison.items()]:
            assert post_signed(stack, event_id, body) == 202, event_id
    finally:
        worker.signal(signal.SIGCONT)
    wait_for(lambda: all(stack.mirror(f"rec_n{i}_p1") for i in range(6)), timeout=30, what="the neighbours mirrored")
    wait_for(lambda: all(e in {x.event_id for x in stack.ledger()} for e in poison), timeout=30, what="the poison ledgered")
    ledger = {e.event_id: e for e in stack.ledger()}
    assert {ledger[e].status for e in poison} == {"invalid"}
    assert "nests deeper" in ledger["evt_deep_p1"].last_error and "version is out of range" in ledger["evt_huge_p1"].last_error
    assert "occurredAt is out of range" in ledger["evt_early_p1"].last_error and "record is missing" in ledger["evt_notevent_p1"].last_error
    time.sleep(2)  # nothing is taken back and claimed again
    client = redis.Redis.from_url(stack.env["REDIS_URL"])
    assert client.zcard("aiwyn:aiwyn-events:batches") == 0 and client.hlen("aiwyn:aiwyn-events:dead-letters") == 0
    assert "Traceback" not in worker.output() and worker.alive()


def test_redis_sigkill_and_restart_under_a_stream(stack: Stack) -> None:
    refs, producer = stack.produce_clients(80, pause=0.05)
    wait_for(lambda: sum(a["status"] == 202 for a in stack.deliveries()) >= 15, what="the stream to flow")
    port = int(stack.env["REDIS_URL"].rsplit(":", 1)[1].split("/")[0])
    stack.processes["redis"].signal(signal.SIGKILL)
    stack.processes["redis"].popen.wait(10)
    time.sleep(3)
    stack.processes["redis"], _ = start_redis(stack.directory / "redis", port=port, durable=True)
    back = time.monotonic()

    def caught_up() -> bool:
        acknowledged = {a["eventId"] for a in stack.deliveries() if 200 <= (a["status"] or 0) < 300}
        return acknowledged <= {e.event_id for e in stack.ledger()}

    wait_for(caught_up, timeout=10, what="the mirror to catch up within 10 s of Redis' return")
    assert time.monotonic() - back < 10
    producer.join()
    wait_for(stack.emulator_idle, timeout=60, what="every delivery to end")
    events = httpx.get(f"{stack.emulator_url}/_emulator/events", timeout=5).json()["events"]
    assert len(events) == 80 and {e["outcome"] for e in events} == {"delivered"}
    wait_for(lambda: {e["id"] for e in events} <= {e.event_id for e in stack.ledger()}, timeout=15, what="every delivered event in the ledger")
    assert sorted(stack.mirror(e["recordId"]).attributes["ref"] for e in events) == sorted(refs)  # the mirror equals the emulator's records
    for name in ("web", "worker"):
        assert stack.processes[name].alive(), stack.processes[name].output()[-3000:]
    assert "unhandled exception, quitting" not in stack.processes["worker"].output()


def test_a_worker_holding_a_drain_job_when_redis_dies_waits_for_it(stack: Stack) -> None:
    """The drain job has claimed a batch and is inside its transaction (the test holds SQLite's
    write lock) when Redis is SIGKILLed; the lock is let go while Redis is down, so the job's
    next Redis call (releasing the batch) and RQ's own bookkeeping after it fail. Before issue
    13 the worker quit there ("found an unhandled exception, quitting"); now it waits for Redis
    and the batch is taken over when its lease ends."""
    worker, client = stack.processes["worker"], redis.Redis.from_url(stack.env["REDIS_URL"])
    port = int(stack.env["REDIS_URL"].rsplit(":", 1)[1].split("/")[0])
    lock = sqlite3.connect(stack.database_url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        lock.execute("BEGIN IMMEDIATE")
        assert post_signed(stack, "evt_held", our_body(stack, "evt_held", record_id="rec_held")) == 202
        wait_for(lambda: client.zcard("aiwyn:aiwyn-events:batches") == 1 and client.llen("aiwyn:aiwyn-events:deliveries") == 0, what="the batch claimed")
        time.sleep(1.5)  # Redis' appendfsync everysec: the claim is on disk
        stack.processes["redis"].signal(signal.SIGKILL)
        stack.processes["redis"].popen.wait(10)
    finally:
        lock.rollback()
        lock.close()
    wait_for(lambda: "evt_held" in {e.event_id for e in stack.ledger()}, timeout=30, what="the held batch committed")
    wait_for(lambda: "lost" in worker.output().rsplit("evt_held", 1)[-1] or not worker.alive(), timeout=30, what="the worker to notice Redis is gone")
    assert worker.alive(), f"the worker exited when Redis went away:\n{worker.output()[-3000:]}"
    stack.processes["redis"], _ = start_redis(stack.directory / "redis", port=port, durable=True)
    assert post_signed(stack, "evt_after", our_body(stack, "evt_after", record_id="rec_after")) == 202
    wait_for(lambda: stack.mirror("rec_after"), timeout=30, what="a delivery after Redis' return mirrored")
    client = redis.Redis.from_url(stack.env["REDIS_URL"])
    wait_for(lambda: client.zcard("aiwyn:aiwyn-events:batches") == 0, timeout=40, what="the held batch taken over when its lease ended")
    assert worker.alive(), worker.output()[-3000:]
    assert "unhandled exception, quitting" not in worker.output()
    assert stack.mirror("rec_held") is not None
    assert [e.event_id for e in stack.ledger()].count("evt_held") == 1
