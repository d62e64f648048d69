"""Record upsert, update and soft delete (contract §5), one item at a time, with their events.

Each item succeeds or fails on its own; a successful change bumps the record's `version`
and fans out events in the same critical section, so event order follows version order.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from . import catalog
from .clock import utc_now
from .events import fan_out
from .state import Event, Record, Store

MAX_RECORDS = 100


class ItemFailure(Exception):
    """One item of a batch failed; the batch goes on with the next one."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _parse_target(item: Any) -> tuple[str, str, str]:
    """The item's (type, system, id), or an `ItemFailure` saying what is wrong."""
    if not isinstance(item, dict):
        raise ItemFailure("VALIDATION_ERROR", "each record must be a JSON object")
    entity_type = item.get("type")
    if not isinstance(entity_type, str) or not entity_type:
        raise ItemFailure("VALIDATION_ERROR", "type is required and must be a string")
    if not catalog.is_known_type(entity_type):
        raise ItemFailure("UNKNOWN_ENTITY_TYPE", f"unknown entity type {entity_type!r}")
    ref = item.get("systemRef")
    if not isinstance(ref, dict):
        raise ItemFailure("VALIDATION_ERROR", "systemRef is required and must be an object")
    system, system_id = ref.get("system"), ref.get("id")
    if not (isinstance(system, str) and system and isinstance(system_id, str) and system_id):
        raise ItemFailure("VALIDATION_ERROR", "systemRef.system and systemRef.id must be non-empty strings")
    return entity_type, system, system_id


def _parse_attributes(item: dict[str, Any]) -> dict[str, Any]:
    # Stored as given: the schemas describe fields but are not enforced (the contract fixes
    # no attribute validation), so partial or extra attributes are accepted.
    attributes = item.get("attributes", {})
    if attributes is None:
        return {}
    if not isinstance(attributes, dict):
        raise ItemFailure("VALIDATION_ERROR", "attributes must be an object")
    return attributes


def _change(store: Store, record: Record, operation: str, now: datetime) -> list[Event]:
    record.version += 1
    record.updated_at = now
    return fan_out(store, record, operation, now)


def _upsert(store: Store, item: Any, now: datetime) -> tuple[str, Record, list[Event]]:
    entity_type, system, system_id = _parse_target(item)
    attributes = _parse_attributes(item)
    record = store.find_record(entity_type, system, system_id)
    if record is None:
        record = Record(
            id=store.ids.new("rec_"),
            type=entity_type,
            system=system,
            system_id=system_id,
            attributes=dict(attributes),
            active=True,
            version=1,
            created_at=now,
            updated_at=now,
        )
        store.add_record(record)
        return "CREATED", record, fan_out(store, record, "CREATE", now)
    record.attributes.update(attributes)
    record.active = True  # upserting a soft-deleted record brings it back
    return "UPDATED", record, _change(store, record, "UPDATE", now)


def _update(store: Store, item: Any, now: datetime) -> tuple[str, Record, list[Event]]:
    entity_type, system, system_id = _parse_target(item)
    attributes = _parse_attributes(item)
    record = store.find_record(entity_type, system, system_id)
    if record is None:
        raise ItemFailure("RECORD_NOT_FOUND", f"no {entity_type} with systemRef {system}/{system_id}")
    record.attributes.update(attributes)
    return "UPDATED", record, _change(store, record, "UPDATE", now)


def _delete(store: Store, item: Any, now: datetime) -> tuple[str, Record, list[Event]]:
    entity_type, system, system_id = _parse_target(item)
    record = store.find_record(entity_type, system, system_id)
    if record is None:
        raise ItemFailure("RECORD_NOT_FOUND", f"no {entity_type} with systemRef {system}/{system_id}")
    if not record.active:
        return "DELETED", record, []  # already deleted: nothing changes, no event
    record.active = False
    return "DELETED", record, _change(store, record, "DELETE", now)


_ACTIONS: dict[str, Callable[[Store, Any, datetime], tuple[str, Record, list[Event]]]] = {
    "upsert": _upsert,
    "update": _update,
    "delete": _delete,
}


def apply_batch(store: Store, action: str, items: list[Any]) -> tuple[dict[str, Any], list[Event]]:
    """Apply `action` (upsert, update or delete) to each item; the contract's summary and the new events."""
    results: list[dict[str, Any]] = []
    events: list[Event] = []
    with store.lock:
        for index, item in enumerate(items):
            try:
                status, record, new_events = _ACTIONS[action](store, item, utc_now())
            except ItemFailure as failure:
                ref = item.get("systemRef") if isinstance(item, dict) else None
                results.append(
                    {
                        "index": index,
                        "status": "FAILED",
                        "id": None,
                        "systemRef": ref if isinstance(ref, dict) else None,
                        "error": {"code": failure.code, "message": failure.message},
                    }
                )
                continue
            events.extend(new_events)
            results.append(
                {
                    "index": index,
                    "status": status,
                    "id": record.id,
                    "systemRef": {"system": record.system, "id": record.system_id},
                    "error": None,
                }
            )
    failed = sum(1 for r in results if r["status"] == "FAILED")
    summary = {"total": len(results), "succeeded": len(results) - failed, "failed": failed}
    return {"summary": summary, "records": results}, events
