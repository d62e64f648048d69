"""Nothing acknowledged is ever stuck (issue 13's "Done when"), with real processes on one stack:
a private PostgreSQL cluster, Redis on appendonly, two workers, ``AIWYN_RECEIVER_JOB_TIMEOUT=6``
(a killed worker's batch is taken over once that lease ends).

Under a stream of creates and updates, each of (a) a worker SIGKILLed, (b) Redis SIGKILLed and
restarted, (c) web SIGTERMed and started again, (d) the database stopped for 10 s, ends with the
mirror equal to the emulator's records (active, attributes, version), every delivered event once
in the ledger, no process exited on its own, and no delivery waiting more than 15 s while Redis,
the database and a worker were up; after (d), the mirror catches up within 10 s of the return.

"Waiting" is measured per event: the ledger's ``received_at`` (when a worker committed it) minus
the time of the emulator's first attempt answered with a 2xx (from then on the delivery is ours,
in Redis), less the part of that interval when Redis or the database was down (the test notes
those windows). Time Aiwyn spent retrying attempts we refused is its retry schedule, not a
delivery waiting with us, and is not counted. A worker was up throughout: (a) kills one of two.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from devstack.services import start_redis, start_web, start_worker
from tests.e2e.private_postgres import PrivatePostgres, require_initdb
from tests.e2e.stack import Stack, start_stack, wait_for
from tests.e2e.streams import acknowledged_at, emulators_records, mirror, stream

pytestmark = pytest.mark.e2e

MAX_WAIT = 15.0
Window = tuple[datetime, datetime]


@pytest.fixture(scope="module")
def cluster() -> Iterator[PrivatePostgres]:
    postgres = PrivatePostgres(require_initdb())
    try:
        postgres.start()
        yield postgres
    finally:
        postgres.remove()


@pytest.fixture(scope="module")
def stack(cluster: PrivatePostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("nothing-stuck")
    running = start_stack(directory, cluster.url, durable_redis=True, AIWYN_RECEIVER_JOB_TIMEOUT="6")
    try:
        running.processes["worker2"] = start_worker(running.env, directory / "worker2.log")
        yield running
    finally:
        if "worker2" in running.processes:
            running.processes.pop("worker2").stop()
        running.stop()


@pytest.fixture(scope="module")
def down() -> list[Window]:
    """When Redis or the database was down, as the tests make it so."""
    return []


def now() -> datetime:
    return datetime.now(UTC)


def longest_wait(stack: Stack, down: list[Window]) -> tuple[float, str]:
    """The longest time an event waited with us while Redis and the database were up (see the module's docstring)."""
    acknowledged = acknowledged_at(stack)
    worst = (0.0, "")
    for entry in stack.ledger():
        start, end = acknowledged[entry.event_id], entry.received_at.astimezone(UTC)
        outage = sum(max(0.0, (min(end, b) - max(start, a)).total_seconds()) for a, b in down)
        worst = max(worst, ((end - start).total_seconds() - outage, entry.event_id))
    return worst


def assert_nothing_stuck(stack: Stack, down: list[Window], gone: frozenset[str] = frozenset()) -> None:
    wait_for(stack.emulator_idle, timeout=90, what="every delivery to end")
    events = httpx.get(f"{stack.emulator_url}/_emulator/events", timeout=5).json()["events"]
    assert {e["outcome"] for e in events} == {"delivered"}
    delivered = {e["id"] for e in events}
    wait_for(lambda: {e.event_id for e in stack.ledger()} == delivered, timeout=30, what="every delivered event in the ledger")
    assert len(stack.ledger()) == len(delivered)  # once each (the ledger is keyed by event id)
    expected = emulators_records(stack)
    wait_for(lambda: mirror(stack) == expected, timeout=15, what="the mirror equal to the emulator's records")
    wait, event_id = longest_wait(stack, down)
    assert wait <= MAX_WAIT, f"event {event_id} waited {wait:.1f} s while Redis, the database and a worker were up"
    for name, process in stack.processes.items():
        if name not in gone:
            assert process.alive(), f"{name} exited on its own:\n{process.output()[-3000:]}"
    for name in ("worker", "worker2"):
        assert "unhandled exception, quitting" not in stack.processes[name].output()


def test_a_worker_sigkilled_mid_stream(stack: Stack, down: list[Window]) -> None:
    producer = stream(stack, 45, pause=0.05)
    stack.processes["worker"].signal(signal.SIGKILL)
    stack.processes["worker"].popen.wait(10)
    producer.join()
    assert_nothing_stuck(stack, down, gone=frozenset({"worker"}))
    stack.processes["worker"] = start_worker(stack.env, stack.directory / "worker.log")


def test_redis_sigkilled_and_restarted_mid_stream(stack: Stack, down: list[Window]) -> None:
    producer = stream(stack, 45, pause=0.05)
    port = int(stack.env["REDIS_URL"].rsplit(":", 1)[1].split("/")[0])
    went = now()
    stack.processes["redis"].signal(signal.SIGKILL)
    stack.processes["redis"].popen.wait(10)
    time.sleep(2)  # the outage
    stack.processes["redis"], _ = start_redis(stack.directory / "redis", port=port, durable=True)
    down.append((went, now()))
    producer.join()
    assert_nothing_stuck(stack, down)


def test_web_sigterm_and_start_mid_stream(stack: Stack, down: list[Window]) -> None:
    producer = stream(stack, 45, pause=0.05)
    stack.processes["web"].signal(signal.SIGTERM)
    assert stack.processes["web"].popen.wait(20) == 0, stack.processes["web"].output()[-2000:]
    stack.processes["web"] = start_web(stack.env, stack.directory / "web.log", int(stack.env["PORT"]))
    producer.join()
    assert_nothing_stuck(stack, down)


def test_a_ten_second_database_outage_mid_stream(stack: Stack, cluster: PrivatePostgres, down: list[Window]) -> None:
    said_before = {name: len(stack.processes[name].output()) for name in ("worker", "worker2")}
    producer = stream(stack, 90, pause=0.1)
    went = now()
    cluster.stop()
    time.sleep(10)  # the outage; the stream goes on, into Redis
    cluster.start()
    down.append((went, now()))
    back = time.monotonic()

    def caught_up() -> bool:
        acknowledged = set(acknowledged_at(stack))
        return acknowledged <= {e.event_id for e in stack.ledger()}

    wait_for(caught_up, timeout=10, what="the mirror to catch up within 10 s of the database's return")
    assert time.monotonic() - back < 10
    producer.join()
    assert_nothing_stuck(stack, down)
    place = f"database postgresql 127.0.0.1:{cluster.port}/postgres"
    for name, offset in said_before.items():
        said = stack.processes[name].output()[offset:]
        # One line when it went, one when it came back; no traceback per attempt.
        assert said.count(f"{place} lost") == said.count(f"{place} is back after") <= 1, said[-3000:]
        assert "Traceback" not in said, said[-3000:]
    assert any(f"{place} lost" in stack.processes[name].output()[offset:] for name, offset in said_before.items())
