"""Several hosts: two complete sets of web (gunicorn) and worker (RQ), one Redis, one PostgreSQL,
one nginx upstream (the project's files from deploy/), as the README's "Several hosts" recipe.

Both sets start as a fresh deploy does, at once: each runs the release (migrate, views,
register), and Aiwyn ends with one subscription. During a stream of creates and updates, host
A's worker is caught holding a claimed batch (its ledger insert waits on a lock the test holds
on ``aiwyn_events``), A's gunicorn is frozen (SIGSTOP) until nginx has sent it a delivery, and
the whole of host A is SIGKILLed: gunicorn's master and workers, and the RQ worker. Then: every
event Aiwyn saw acknowledged is in the ledger once and mirrored; host B keeps answering 202
through nginx, which passes on to B the deliveries A refused and the one A held when it died
(``proxy_next_upstream ... non_idempotent``); anything that failed is delivered by Aiwyn's
retries; A's batch is taken over once its lease (``AIWYN_RECEIVER_JOB_TIMEOUT``) has run out,
by B's worker.
"""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import redis
import sqlalchemy
from sqlalchemy.engine import make_url

from config.job_contract import batches_key, unpack_delivery
from config.settings import Settings
from devstack.databases import throwaway_database
from devstack.services import free_port, run_release, start_emulator, start_redis, start_web, start_worker
from devstack.stack import stack_env
from tests.databases import POSTGRES_URL
from tests.e2e.edge import EDGE, render_nginx, require_nginx, self_signed, start_nginx
from tests.e2e.stack import CLIENT_ID, CLIENT_SECRET, SECRETS_KEY, Stack, wait_for
from tests.e2e.streams import acknowledged_at, emulators_records, mirror, stream

pytestmark = pytest.mark.e2e

LEASE = 6  # AIWYN_RECEIVER_JOB_TIMEOUT: a dead worker's batch is taken over this long after its claim
QUEUE = Settings().queue_name
FROZEN = 0.5  # seconds host A is frozen (SIGSTOP) with a delivery in hand before it is killed


@dataclass
class Host:
    name: str
    port: int
    env: dict[str, str]

    @property
    def upstream(self) -> str:
        return f"127.0.0.1:{self.port}"


@dataclass
class Hosts:
    stack: Stack  # the shared parts (emulator, Redis, the database) and every process, by name
    a: Host
    b: Host
    public: str

    def access_log(self) -> str:
        return (self.stack.directory / "edge" / "server-access.log").read_text()


def application_named(database_url: str, name: str) -> str:
    """The same database, with connections that PostgreSQL's pg_stat_activity shows as ``name``."""
    return make_url(database_url).update_query_dict({"application_name": name}).render_as_string(hide_password=False)


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hosts]:
    require_nginx()
    if not POSTGRES_URL:
        pytest.skip("TEST_POSTGRES_URL is not set (several hosts share a PostgreSQL; a SQLite file is one machine's)")
    directory = tmp_path_factory.mktemp("several-hosts")
    cert, key = self_signed(directory)
    edge_port, private_port = free_port(), free_port()
    public = f"https://{EDGE}:{edge_port}"
    with throwaway_database("postgres", directory) as database_url:
        shared = stack_env(
            database_url, port=0, client=(CLIENT_ID, CLIENT_SECRET), secrets_key=SECRETS_KEY, retry_schedule="0.2,0.5,1,2,3,5,8",
            PUBLIC_URL=public, AIWYN_RECEIVER_ALLOW_HTTP="0", AIWYN_RECEIVER_TRUSTED_PROXY_HOPS="1", EMULATOR_TLS_CA_FILE=str(cert),
            EMULATOR_DELIVERY_TIMEOUT="5", AIWYN_RECEIVER_WEB_WORKERS="2", AIWYN_RECEIVER_JOB_TIMEOUT=str(LEASE),
            AIWYN_RECEIVER_JOB_RETRY_INTERVALS="1,1,1",
        )  # fmt: skip
        stack = Stack(directory, shared)
        try:
            stack.processes["redis"], shared["REDIS_URL"] = start_redis(directory / "redis")
            stack.processes["emulator"], stack.emulator_url = start_emulator(shared, directory / "emulator.log")
            shared["AIWYN_BASE_URL"] = stack.emulator_url
            a, b = (Host(name, port, shared | {"PORT": str(port), "DATABASE_URL": application_named(database_url, f"aiwyn-host-{name}")})
                    for name, port in (("a", free_port()), ("b", free_port())))  # fmt: skip
            # A fresh deploy: both hosts run the release at the same moment.
            failures: list[BaseException] = []

            def release(host: Host) -> None:
                try:
                    run_release(host.env, directory / f"release-{host.name}.log")
                except BaseException as exc:
                    failures.append(exc)

            releases = [threading.Thread(target=release, args=(host,)) for host in (a, b)]
            for thread in releases:
                thread.start()
            for thread in releases:
                thread.join()
            assert not failures, failures
            for host in (a, b):
                stack.processes[f"web-{host.name}"] = start_web(host.env, directory / f"web-{host.name}.log", host.port)
                stack.processes[f"worker-{host.name}"] = start_worker(host.env, directory / f"worker-{host.name}.log")
            (directory / "edge").mkdir()
            stack.processes["nginx"] = start_nginx(directory / "edge", edge_port, private_port, [a.upstream, b.upstream], cert, key)
            yield Hosts(stack, a, b, public)
        finally:
            stack.stop()


def unread_requests(port: int) -> bool:
    """Whether a connection to ``port`` on loopback waits on its server: bytes it has not read, or (the
    listening socket's count) a connection it has not accepted. From Linux's /proc/net/tcp."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port, unread = int(fields[1].split(":")[1], 16), int(fields[4].split(":")[1], 16)
        if local_port == port and unread > 0:
            return True
    return False


def waiting_ledger_inserts(connection: sqlalchemy.Connection) -> list[str]:
    """The application names of the connections whose ledger insert waits on a lock."""
    rows = connection.execute(sqlalchemy.text(
        "SELECT application_name FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query ILIKE '%INSERT INTO aiwyn_events%'"
    ))  # fmt: skip
    return [name for (name,) in rows]


def test_one_host_sigkilled_mid_stream_loses_nothing_acknowledged(hosts: Hosts) -> None:
    stack, a, b = hosts.stack, hosts.a, hosts.b
    # Registration ran on both hosts at once: one subscription, to nginx's address.
    listed = stack.api().get("/api/v1/event-subscriptions", params={"includeInactive": "true"}).json()["data"]["subscriptions"]
    assert [(s["url"], s["active"]) for s in listed] == [(f"{hosts.public}/webhooks/aiwyn", True)]
    releases = "".join((stack.directory / f"release-{name}.log").read_text() for name in ("a", "b"))
    assert len(re.findall(r"subscription create ", releases)) == 1, releases

    producer = stream(stack, 120, pause=0.04)
    # Both hosts take deliveries through nginx before the kill.
    wait_for(
        lambda: all(f"upstream={host.upstream} upstream_status=202" in hosts.access_log() for host in (a, b)),
        what="both hosts to answer 202",
    )

    connection = stack.engine.connect()
    redis_client = redis.Redis.from_url(stack.env["REDIS_URL"])
    try:
        # Catch A's worker holding a claimed batch: its ledger insert waits on the test's lock
        # (which lets reads through).
        locked = connection.begin()
        connection.execute(sqlalchemy.text("LOCK TABLE aiwyn_events IN EXCLUSIVE MODE"))
        with stack.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as watcher:  # a fresh view each time
            wait_for(lambda: "aiwyn-host-a" in waiting_ledger_inserts(watcher), timeout=30, what="host A's worker to hold a batch")
        held = {key.decode(): deadline for key, deadline in redis_client.zrange(batches_key(QUEUE), 0, -1, withscores=True)}
        held_events = {unpack_delivery(item)[0] for key in held for item in redis_client.lrange(key, 0, -1)}
        assert held_events and not held_events & {entry.event_id for entry in stack.ledger()}
        # Host A freezes first: a delivery nginx sends it meanwhile is read by nobody. Killed,
        # A never answers it; nginx passes it on to B (non_idempotent), so Aiwyn sees a 202.
        stack.processes["web-a"].signal(signal.SIGSTOP)
        wait_for(lambda: unread_requests(a.port), timeout=30, what="a delivery sent to the frozen host A")
        time.sleep(FROZEN)  # the delivery in hand waits at least this long: told apart in nginx's log below
        for name in ("web-a", "worker-a"):  # the whole host: gunicorn's process group, and the worker
            stack.processes[name].signal(signal.SIGKILL)
            stack.processes[name].popen.wait(10)
        killed_at = datetime.now(UTC)
        locked.rollback()

        # A's batch is taken over once its lease has run out: note when each held batch goes.
        gone_at: dict[str, float] = {}

        def all_held_batches_released() -> bool:
            seconds, microseconds = redis_client.time()
            now = seconds + microseconds / 1e6
            for key in held:
                if key not in gone_at and redis_client.zscore(batches_key(QUEUE), key) is None:
                    gone_at[key] = now
            return len(gone_at) == len(held)

        wait_for(all_held_batches_released, timeout=LEASE + 30, what="the dead worker's batch to be taken over")
        assert any(gone_at[key] >= deadline for key, deadline in held.items()), (held, gone_at)  # one waited out its lease
    finally:
        connection.close()
        redis_client.close()
    producer.join()

    # Everything Aiwyn saw acknowledged is in the ledger, once, and mirrored.
    wait_for(stack.emulator_idle, timeout=90, what="every delivery to end")
    events = httpx.get(f"{stack.emulator_url}/_emulator/events", timeout=5).json()["events"]
    assert {e["outcome"] for e in events} == {"delivered"}
    acknowledged = set(acknowledged_at(stack))
    assert acknowledged == {e["id"] for e in events} and held_events <= acknowledged
    wait_for(
        lambda: {entry.event_id for entry in stack.ledger()} == acknowledged, timeout=30, what="every acknowledged event in the ledger"
    )
    assert len(stack.ledger()) == len(acknowledged)
    expected = emulators_records(stack)
    wait_for(lambda: mirror(stack) == expected, timeout=15, what="the mirror equal to the emulator's records")

    # B answered 202 through nginx after the kill, and nginx passed deliveries on from A to B.
    attempts = stack.deliveries()
    after = [x for x in attempts if datetime.fromisoformat(x["at"].replace("Z", "+00:00")) > killed_at]
    assert any(x["status"] == 202 for x in after)
    passed_on = re.findall(
        rf' ([0-9.]+) "[^"]*" upstream={re.escape(a.upstream)}, {re.escape(b.upstream)} upstream_status=\d+, (\d+)', hosts.access_log()
    )
    assert passed_on and {status for _, status in passed_on} <= {"200", "202"}, passed_on
    assert any(float(seconds) >= FROZEN for seconds, _ in passed_on), passed_on  # the one in hand when A died too
    failed = [x for x in attempts if not 200 <= (x["status"] or 0) < 300]
    for attempt in failed:  # an attempt that failed on the way was followed by an acknowledged one
        assert attempt["eventId"] in acknowledged
    assert stack.processes["web-b"].alive() and stack.processes["worker-b"].alive()
    print(
        f"\nseveral hosts: {len(acknowledged)} events, {len(attempts)} attempts ({len(failed)} failed, then retried by Aiwyn), "
        f"{len(passed_on)} passed on by nginx from the dead host, {len(held)} batch(es) held at the kill, "
        f"released {max(gone_at.values()) - killed_at.timestamp():.1f} s after it (lease {LEASE} s)"
    )


def test_the_upstream_file_is_valid_nginx(tmp_path: Path) -> None:
    """The shipped upstream file, with three hosts, passes ``nginx -t`` together with the server file."""
    nginx = require_nginx()
    cert, key = self_signed(tmp_path)
    conf = render_nginx(tmp_path, free_port(), free_port(), ["127.0.0.1:9", "127.0.0.1:10", "127.0.0.1:11"], cert, key)
    checked = subprocess.run([nginx, "-t", "-c", str(conf), "-p", str(tmp_path)], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr
    assert (tmp_path / "upstream.conf").read_text().count("server 127.0.0.1:") == 3
