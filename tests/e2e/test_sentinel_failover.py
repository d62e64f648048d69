"""Redis failover without loss (issue 19): a primary, a replica and three sentinels on loopback,
``REDIS_URL=redis+sentinel://...`` for web, workers and RQ, ``AIWYN_RECEIVER_REDIS_MIN_REPLICAS=1``.

During a stream of events the primary is SIGKILLed (nothing on disk: the replica holds the data);
the sentinels promote the replica; the old primary comes back empty and the sentinels make it a
replica of the new one. Every event the emulator saw acknowledged (202 or 200) is mirrored, once;
the service answered 503, never 500, while it could not have a delivery on a replica; 202s
resume once the old primary is back as a replica; no process had to be restarted.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from config.reachability import redis_place
from devstack.sentinels import SentinelSet, sentinel_set
from tests.e2e.stack import Stack, start_stack, wait_for
from tests.e2e.streams import emulators_records, mirror

pytestmark = pytest.mark.e2e


@pytest.fixture
def sentinels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSet]:
    if shutil.which("redis-sentinel") is None:
        if os.environ.get("CI"):  # CI installs it: a missing one there is a broken CI, not a skip
            pytest.fail("redis-sentinel is not installed, and CI is set (.ci/tools.sh installs it)")
        pytest.skip("redis-sentinel is not installed (apt-get install redis-sentinel; .ci/run installs it)")
    with sentinel_set(tmp_path_factory.mktemp("sentinels")) as group:
        yield group


@pytest.fixture
def stack(sentinels: SentinelSet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("failover")
    running = start_stack(
        directory,
        f"sqlite:///{directory / 'mirror.sqlite3'}",
        # Aiwyn's retries outlast the failover and the old primary's return (about 15 s here).
        retry_schedule="0.5,1,2,3,5,8,13,20",
        REDIS_URL=sentinels.url,
        AIWYN_RECEIVER_REDIS_MIN_REPLICAS="1",
        AIWYN_RECEIVER_JOB_TIMEOUT="10",
    )
    try:
        yield running
    finally:
        running.stop()


def produce(stack: Stack, count: int, pause: float) -> list[str]:
    """Create ``count`` clients, one every ``pause`` seconds; their refs."""
    tag = uuid.uuid4().hex[:6]
    refs = [f"C-{tag}-{i}" for i in range(count)]
    for ref in refs:
        stack.records("POST", {"type": "client", "systemRef": {"system": "erp", "id": ref}, "attributes": {"ref": ref}})
        time.sleep(pause)
    return refs


def attempts(stack: Stack) -> list[tuple[str, int | None, datetime]]:
    return [(a["eventId"], a["status"], datetime.fromisoformat(a["at"].replace("Z", "+00:00"))) for a in stack.deliveries()]


def test_a_primary_sigkilled_mid_stream_loses_no_acknowledged_event(stack: Stack, sentinels: SentinelSet) -> None:
    _, replica = sentinels.node_ports
    producer = threading.Thread(target=produce, args=(stack, 200, 0.1))
    producer.start()
    wait_for(lambda: sum(1 for _, status, _ in attempts(stack) if status == 202) >= 10, what="the stream to flow")

    sentinels.kill("node0")
    wait_for(lambda: sentinels.primary_port() == replica, timeout=30, what="the sentinels to promote the replica")
    sentinels.start_node(0)  # back empty, as a primary: the sentinels must make it a replica
    wait_for(lambda: sentinels.replicas_in_step(replica) == 1, timeout=60, what="the old primary back as a replica in step")
    rejoined = datetime.now(UTC)
    producer.join()
    later = produce(stack, 10, 0.2)

    wait_for(stack.emulator_idle, timeout=90, what="every delivery to end")
    events = httpx.get(f"{stack.emulator_url}/_emulator/events", timeout=5).json()["events"]
    seen = attempts(stack)
    acknowledged = {event_id for event_id, status, _ in seen if status in (200, 202)}
    assert {e["outcome"] for e in events} == {"delivered"} and {e["id"] for e in events} == acknowledged
    # Every acknowledged event mirrored, each once (the ledger is keyed by event id; no more rows than events).
    wait_for(lambda: {e.event_id for e in stack.ledger()} == acknowledged, timeout=30, what="every acknowledged event in the ledger")
    assert len(stack.ledger()) == len(acknowledged)
    expected = emulators_records(stack)
    assert len(expected) == 210
    wait_for(lambda: mirror(stack) == expected, timeout=15, what="the mirror equal to the emulator's records")

    statuses = [status for _, status, _ in seen]
    assert 500 not in statuses and 503 in statuses, sorted(set(map(str, statuses)))
    web = stack.processes["web"].output()
    assert "reason='redis: 0 of 1 replicas acknowledged within 500 ms'" in web  # stored on the lone new primary, refused
    assert "Traceback" not in web, web[-3000:]
    # 202s again once the old primary is a replica: the events made after its return are queued afresh.
    later_events = {e["id"] for e in events if json.loads(e["body"])["record"]["systemRef"]["id"] in later}
    assert len(later_events) == 10 and any(status == 202 for event_id, status, _ in seen if event_id in later_events)
    print(f"attempts after the old primary's return: {sum(1 for _, _, at in seen if at > rejoined)}, answers: "
          f"{ {str(s): statuses.count(s) for s in set(statuses)} }")
    # No restart needed: web and worker rode the switch out; the worker said so in one line each way.
    for name in ("web", "worker", "emulator"):
        assert stack.processes[name].alive(), f"{name} exited:\n{stack.processes[name].output()[-3000:]}"
    # (RQ's scheduler process dies with a traceback of its own on any Redis outage; the worker starts it again.)
    worker = stack.processes["worker"].output()
    assert "unhandled exception, quitting" not in worker, worker[-3000:]
    place = f"Redis at {redis_place(sentinels.url)}"
    assert worker.count(f"{place} lost (") == worker.count(f"{place} is back after") >= 1, worker[-3000:]
