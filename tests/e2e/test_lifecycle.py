"""SIGTERM to web and worker during a stream of deliveries: every acknowledged event ends up mirrored."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devstack.services import start_web, start_worker
from tests.databases import throwaway_database
from tests.e2e.stack import Stack, start_stack, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with throwaway_database("sqlite", tmp_path) as database_url:
        running = start_stack(tmp_path, database_url)
        try:
            yield running
        finally:
            running.stop()


def test_sigterm_mid_stream_loses_no_acknowledged_event(stack: Stack) -> None:
    refs, producer = stack.produce_clients(60, pause=0.03)
    time.sleep(0.6)
    for name in ("web", "worker"):
        stack.processes[name].signal(signal.SIGTERM)
    for name in ("web", "worker"):
        started = time.monotonic()
        stack.processes[name].popen.wait(20)
        assert time.monotonic() - started < 15, f"{name} took too long to stop"
        assert stack.processes[name].popen.returncode == 0, stack.processes[name].output()[-2000:]
    producer.join()
    stack.processes["web"] = start_web(stack.env, stack.directory / "web.log", int(stack.env["PORT"]))
    stack.processes["worker"] = start_worker(stack.env, stack.directory / "worker.log")

    wait_for(stack.emulator_idle, timeout=60, what="every delivery to end")
    events = httpx.get(f"{stack.emulator_url}/_emulator/events", timeout=5).json()["events"]
    assert len(events) == 60 and {e["outcome"] for e in events} == {"delivered"}
    acknowledged = {a["eventId"] for a in stack.deliveries() if 200 <= (a["status"] or 0) < 300}
    assert acknowledged == {e["id"] for e in events}
    wait_for(lambda: {e.event_id for e in stack.ledger() if e.status == "processed"} >= acknowledged, timeout=30, what="every acknowledged event mirrored")
    assert sorted(stack.mirror(e["recordId"]).attributes["ref"] for e in events) == sorted(refs)
    assert any(a["status"] != 202 for a in stack.deliveries()), "the stop should have refused or dropped some attempts"
