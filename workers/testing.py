"""For testing your own handlers: build a synthetic event and call a handler as the worker would.

    from workers import call_handler, make_event

    def test_notify_crm(session):
        event = make_event("client", "UPDATE", attributes={"name": "Acme LLP"})
        call_handler(notify_crm, event, session)
"""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from workers.events import Event, Record, frozen
from workers.registry import as_callable

_ids = itertools.count(1)


def make_event(
    entity_type: str = "client",
    operation: str = "UPDATE",
    *,
    record_id: str | None = None,
    version: int | None = 1,
    attributes: dict[str, Any] | None = None,
    system_ref: dict[str, Any] | None = None,
    active: bool | None = None,
    occurred_at: datetime | None = None,
    event_id: str | None = None,
    subscription_id: str = "sub_test",
    attempt: int = 1,
    replay: bool = False,
    raw: bytes | None = None,
) -> Event:
    """A read-only event like the ones handlers receive; every field has a plausible default,
    ``raw`` too (a body in Aiwyn's shape, built from the other fields)."""
    n = next(_ids)
    record = Record(
        id=record_id or f"rec_test_{n}",
        type=entity_type,
        version=version,
        active=(operation != "DELETE") if active is None else active,
        system_ref=frozen(system_ref),
        attributes=frozen(attributes or {}),
    )
    event = Event(
        id=event_id or f"evt_test_{n}",
        subscription_id=subscription_id,
        entity_type=entity_type,
        operation=operation,
        occurred_at=occurred_at or datetime.now(UTC),
        record=record,
        attempt=attempt,
        replay=replay,
    )
    if raw is None:
        body = {
            "id": event.id, "subscriptionId": event.subscription_id, "entityType": entity_type, "operation": operation,
            "occurredAt": event.occurred_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "record": {"id": record.id, "type": record.type, "version": version, "active": record.active,
                       "systemRef": system_ref, "attributes": attributes or {}},
        }  # fmt: skip
        raw = json.dumps(body).encode("utf-8")
    return replace(event, raw=raw)


def call_handler(handler: Any, event: Event, session: Session) -> Any:
    """Call a function handler, or a handler class's ``handle``, as the worker does."""
    return as_callable(handler)(event, session)
