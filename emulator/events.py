"""Fan-out of one record change into one event per matching active subscription (contract §4)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from .clock import iso_millis
from .custom_types import is_active_type
from .state import Event, Record, Store


def fan_out(store: Store, record: Record, operation: str, occurred_at: datetime) -> list[Event]:
    """Create and store the events for `record`'s change; call with `store.lock` held.

    A record of a deactivated custom type has no events: the type left the deliveries.
    """
    events: list[Event] = []
    if not is_active_type(store, record.type):
        return events
    for subscription in store.subscriptions.values():
        if not subscription.matches(record.type, operation):
            continue
        event_id = store.ids.new("evt_")
        body = _dialect_body(
            store,
            {
                "id": event_id,
                "subscriptionId": subscription.id,
                "entityType": record.type,
                "operation": operation,
                "occurredAt": iso_millis(occurred_at),
                "record": record.to_json(),
            },
        )
        event = Event(
            id=event_id,
            subscription_id=subscription.id,
            entity_type=record.type,
            operation=operation,
            record_id=record.id,
            version=record.version,
            occurred_at=occurred_at,
            # Serialized once: every attempt sends these exact bytes, so signatures stay stable.
            body=json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8"),
        )
        store.events[event_id] = event
        events.append(event)
    return events


_SNAKE = {"subscriptionId": "subscription_id", "entityType": "entity_type", "occurredAt": "occurred_at", "systemRef": "system_ref"}
_PAST = {"CREATE": "CREATED", "UPDATE": "UPDATED", "DELETE": "DELETED"}


def _dialect_body(store: Store, body: dict[str, Any]) -> dict[str, Any]:
    """The body as the body faults in force shape it (fixed here: every attempt sends these bytes)."""
    faults = store.faults
    record = dict(body["record"])
    if faults.integer_ids:
        record["id"] = store.integer_ids.setdefault(record["id"], len(store.integer_ids) + 1)
    if faults.past_tense_operations:
        body = {**body, "operation": _PAST[body["operation"]]}
    body = {**body, "record": record}
    if faults.snake_case:
        body = {_SNAKE.get(k, k): v for k, v in body.items()}
        body["record"] = {_SNAKE.get(k, k): v for k, v in record.items()}  # attribute names are the user's: kept
    return body
