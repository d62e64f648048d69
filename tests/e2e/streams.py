"""A stream of client changes through the emulator, and what it left: acknowledged deliveries, the
mirror and the emulator's records side by side (shared by the e2e tests that break things mid-stream)."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import datetime

import httpx
import sqlalchemy

from tests.e2e.stack import Stack, wait_for
from workers.models import MirroredRecord


def stream(stack: Stack, count: int, pause: float) -> threading.Thread:
    """Create ``count`` clients in the background, updating every third one at once (version 2)."""
    tag = uuid.uuid4().hex[:6]

    def produce() -> None:
        for i in range(count):
            record = {"type": "client", "systemRef": {"system": "erp", "id": f"C-{tag}-{i}"}, "attributes": {"ref": f"{tag}-{i}"}}
            stack.records("POST", record)
            if i % 3 == 0:
                stack.records("PUT", record | {"attributes": {"ref": f"{tag}-{i}", "updated": True}})
            time.sleep(pause)

    before = len(acknowledged_at(stack))
    producer = threading.Thread(target=produce)
    producer.start()
    wait_for(lambda: len(acknowledged_at(stack)) >= before + 10, what="the stream to flow")
    return producer


def acknowledged_at(stack: Stack) -> dict[str, datetime]:
    """Event id -> the time of the emulator's first attempt we answered with a 2xx."""
    first: dict[str, datetime] = {}
    for attempt in stack.deliveries():
        if 200 <= (attempt["status"] or 0) < 300:
            at = datetime.fromisoformat(attempt["at"].replace("Z", "+00:00"))
            first[attempt["eventId"]] = min(at, first.get(attempt["eventId"], at))
    return first


def mirror(stack: Stack) -> dict[str, tuple[bool, dict, int | None]]:
    with stack.engine.connect() as connection:
        rows = connection.execute(sqlalchemy.select(MirroredRecord.record_id, MirroredRecord.active, MirroredRecord.attributes, MirroredRecord.version))
        return {record_id: (active, attributes, version) for record_id, active, attributes, version in rows}


def emulators_records(stack: Stack) -> dict[str, tuple[bool, dict, int | None]]:
    records = httpx.get(f"{stack.emulator_url}/_emulator/records", timeout=5).json()["records"]
    return {r["id"]: (r["active"], r["attributes"], r["version"]) for r in records}
