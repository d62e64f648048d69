"""Record upsert, update and soft delete (contract §5), one item at a time, with their events.

Each item succeeds or fails on its own; a successful change bumps the record's `version`
and fans out events in the same critical section, so event order follows version order.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from .custom_types import is_active_type
from .events import fan_out
from .state import Event, Record, Store

MAX_RECORDS = 100


class ItemFailure(Exception):
    """One item of a batch failed; the batch goes on with the next one."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _parse_type(store: Store, item: Any) -> str:
    """The item's live entity type, or an `ItemFailure` saying what is wrong."""
    if not isinstance(item, dict):
        raise ItemFailure("VALIDATION_ERROR", "each record must be a JSON object")
    entity_type = item.get("type")
    if not isinstance(entity_type, str) or not entity_type:
        raise ItemFailure("VALIDATION_ERROR", "type is required and must be a string")
    if not is_active_type(store, entity_type):
        raise ItemFailure("UNKNOWN_ENTITY_TYPE", f"unknown entity type {entity_type!r}")
    return entity_type


def _parse_ref(item: dict[str, Any], *, required: bool) -> tuple[str, str] | None:
    """The item's (system, id); None only when the ref may be absent (upsert) and is missing or null."""
    ref = item.get("systemRef")
    if ref is None and not required:
        return None
    if not isinstance(ref, dict):
        raise ItemFailure("VALIDATION_ERROR", "systemRef is required and must be an object")
    system, system_id = ref.get("system"), ref.get("id")
    if not (isinstance(system, str) and system and isinstance(system_id, str) and system_id):
        raise ItemFailure("VALIDATION_ERROR", "systemRef.system and systemRef.id must be non-empty strings")
    return system, system_id


def _parse_target(store: Store, item: Any) -> tuple[str, str, str]:
    """The item's (type, system, id) for update and delete, where systemRef is required."""
    entity_type = _parse_type(store, item)
    ref = _parse_ref(item, required=True)
    assert ref is not None
    return entity_type, ref[0], ref[1]


def _parse_attributes(item: dict[str, Any]) -> dict[str, Any]:
    # Stored as given: the schemas describe fields but are not enforced (the contract fixes
    # no attribute validation), so partial or extra attributes are accepted.
    attributes = item.get("attributes", {})
    if attributes is None:
        return {}
    if not isinstance(attributes, dict):
        raise ItemFailure("VALIDATION_ERROR", "attributes must be an object")
    return attributes


def change_record(store: Store, record: Record, operation: str, now: datetime, *, deliver: bool = True) -> list[Event]:
    """Count a change made to `record` (a new version at `now`, moved in the listing); its events unless `deliver` is False."""
    record.version += 1
    record.updated_at = now
    store.reindex(record)
    return fan_out(store, record, operation, now) if deliver else []


def _upsert(store: Store, item: Any, now: datetime) -> tuple[str, Record, list[Event]]:
    entity_type = _parse_type(store, item)
    ref = _parse_ref(item, required=False)
    attributes = _parse_attributes(item)
    record = store.find_record(entity_type, *ref) if ref is not None else None
    if record is None:
        record = Record(
            id=store.ids.new("rec_"),
            type=entity_type,
            system=ref[0] if ref else None,
            system_id=ref[1] if ref else None,
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
    return "UPDATED", record, change_record(store, record, "UPDATE", now)


def _update(store: Store, item: Any, now: datetime) -> tuple[str, Record, list[Event]]:
    entity_type, system, system_id = _parse_target(store, item)
    attributes = _parse_attributes(item)
    record = store.find_record(entity_type, system, system_id)
    if record is None:
        raise ItemFailure("RECORD_NOT_FOUND", f"no {entity_type} with systemRef {system}/{system_id}")
    record.attributes.update(attributes)
    return "UPDATED", record, change_record(store, record, "UPDATE", now)


def _delete(store: Store, item: Any, now: datetime) -> tuple[str, Record, list[Event]]:
    entity_type, system, system_id = _parse_target(store, item)
    record = store.find_record(entity_type, system, system_id)
    if record is None:
        raise ItemFailure("RECORD_NOT_FOUND", f"no {entity_type} with systemRef {system}/{system_id}")
    if not record.active:
        return "DELETED", record, []  # already deleted: nothing changes, no event
    record.active = False
    return "DELETED", record, change_record(store, record, "DELETE", now)


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
                status, record, new_events = _ACTIONS[action](store, item, store.next_stamp())
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
                    "systemRef": record.system_ref,
                    "error": None,
                }
            )
    failed = sum(1 for r in results if r["status"] == "FAILED")
    summary = {"total": len(results), "succeeded": len(results) - failed, "failed": failed}
    return {"summary": summary, "records": results}, events
