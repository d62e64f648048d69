"""Record changes only the `/_emulator` paths make: bulk seeding, changes without deliveries, hard deletes.

They exist to stage what a test or benchmark needs (many records at once, lost deliveries, a
record Aiwyn no longer lists) without going through the contract's 100-record batches.
"""

from __future__ import annotations

from typing import Any

from .events import fan_out
from .records import change_record
from .state import Event, Record, Store

MAX_SEED = 200_000


def seed(store: Store, entity_type: str, count: int, template: dict[str, Any]) -> list[Event]:
    """Create `count` records of a live type in one critical section; their CREATE events (if anyone subscribes).

    systemRef is `{"system": "seed", "id": "<type>-<n>"}` with `n` counting across calls, and
    `attributes` are the template with `name` made unique (`"<template name or Seed type> <n>"`).
    """
    prefix = template.get("name") if isinstance(template.get("name"), str) else f"Seed {entity_type}"
    events: list[Event] = []
    with store.lock:
        watched = any(s.active for s in store.subscriptions.values())
        for _ in range(count):
            store.seed_serial += 1
            serial = store.seed_serial
            now = store.next_stamp()
            record = Record(
                id=store.ids.new("rec_"),
                type=entity_type,
                system="seed",
                system_id=f"{entity_type}-{serial}",
                attributes={**template, "name": f"{prefix} {serial}"},
                active=True,
                version=1,
                created_at=now,
                updated_at=now,
            )
            store.add_record(record)
            if watched:
                events.extend(fan_out(store, record, "CREATE", now))
    return events


def silent_change(store: Store, record: Record, attributes: dict[str, Any], active: bool | None, deliver: bool) -> list[Event]:
    """Merge `attributes`, set `active` if given, and count it as a change; events only if `deliver`.

    Call with `store.lock` held. Deactivating is a DELETE event, anything else an UPDATE.
    """
    operation = "DELETE" if record.active and active is False else "UPDATE"
    record.attributes.update(attributes)
    if active is not None:
        record.active = active
    return change_record(store, record, operation, store.next_stamp(), deliver=deliver)
