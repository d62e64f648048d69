"""SIGTERM to web and worker during a stream of deliveries: every acknowledged event ends up mirrored."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import signal
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devstack.databases import throwaway_database
from devstack.services import start_web, start_worker
from tests.e2e.stack import Stack, start_stack, wait_for
from tests.events import event_body

pytestmark = pytest.mark.e2e


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with throwaway_database("sqlite", tmp_path) as database_url:
        running = start_stack(tmp_path, database_url)
        try:
            yield running
        finally:
            running.stop()


def slow_delivery(stack: Stack, record_id: str) -> tuple[socket.socket, bytes, str]:
    """A signed delivery of our own whose headers and first bytes are sent now; the rest of the body is returned."""
    subscription_id = stack.subscription()["id"]
    secret = stack.api().get(f"/api/v1/event-subscriptions/{subscription_id}/secret").json()["data"]["secrets"][0]["secret"]
    event_id = f"evt_graceful_{uuid.uuid4().hex[:8]}"
    body = json.loads(event_body(event_id, record_id=record_id, operation="CREATE", attributes={"ref": "graceful"}))
    raw = json.dumps(body | {"subscriptionId": subscription_id}).encode()
    timestamp = str(int(time.time()))
    signature = base64.b64encode(hmac.new(base64.b64decode(secret.removeprefix("whsec_")), f"{event_id}.{timestamp}.".encode() + raw, hashlib.sha256).digest())
    head = (f"POST /webhooks/aiwyn HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {len(raw)}\r\n"
            f"webhook-id: {event_id}\r\nwebhook-timestamp: {timestamp}\r\nwebhook-signature: v1,{signature.decode()}\r\n"
            f"aiwyn-subscription-id: {subscription_id}\r\nConnection: close\r\n\r\n").encode()  # fmt: skip
    connection = socket.create_connection(("127.0.0.1", int(stack.env["PORT"])), timeout=15)
    connection.sendall(head + raw[:10])
    return connection, raw[10:], event_id


def test_sigterm_mid_stream_loses_no_acknowledged_event(stack: Stack) -> None:
    refs, producer = stack.produce_clients(60, pause=0.03)
    wait_for(lambda: sum(a["status"] == 202 for a in stack.deliveries()) >= 10, what="the stream to flow")
    # One delivery is provably in flight: its body is half sent when SIGTERM arrives, and the
    # rest only well after it, so its 202 can only come from the graceful window.
    connection, rest, graceful_event = slow_delivery(stack, "rec_graceful")
    time.sleep(0.3)  # gunicorn hands the request to a thread once its headers arrive
    for name in ("web", "worker"):
        stack.processes[name].signal(signal.SIGTERM)
    time.sleep(0.5)
    connection.sendall(rest)
    answer = connection.recv(4096)
    connection.close()
    assert answer.startswith(b"HTTP/1.1 202"), answer
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
    acknowledged.add(graceful_event)
    wait_for(lambda: {e.event_id for e in stack.ledger() if e.status == "processed"} == acknowledged, timeout=60, what="exactly the acknowledged events mirrored")
    assert sorted(stack.mirror(e["recordId"]).attributes["ref"] for e in events) == sorted(refs)
    assert stack.mirror("rec_graceful").attributes == {"ref": "graceful"}
    assert any(a["status"] != 202 for a in stack.deliveries()), "the stop should have refused or dropped some attempts"
