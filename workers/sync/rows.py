"""A listed record (contract §5b) as a row of ``aiwyn_records``, or the reason it cannot be one."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from workers.database import db_time
from workers.events import MAX_NESTING, InvalidEvent, nesting, parse_time

SOURCE_BACKFILL = "backfill"
SOURCE_RECONCILE = "reconcile"
_BIGINT = 2**63  # the version column's range


def record_key(record: dict[str, Any]) -> str | None:
    """The record's id as the mirror keys it (ids may come as numbers), or None."""
    value = record.get("id")
    if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
        return None
    return str(value)


def _version(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not -_BIGINT <= value < _BIGINT:
        raise InvalidEvent("version is not an integer in range")
    return value


def listed_row(entity_type: str, record: dict[str, Any], dialect: str, now: datetime, source: str) -> dict[str, Any]:
    """The mirror row for a listed record; ``InvalidEvent`` names what makes it unusable.

    The record's ``updatedAt`` stands in for an event's ``occurredAt``: the ordering rule
    compares it with the events' times where a version is missing.
    """
    record_id = record_key(record)
    if record_id is None or len(record_id) > 200:
        raise InvalidEvent("id is missing or too long")
    attributes = record.get("attributes") or {}
    system_ref = record.get("systemRef")
    if not isinstance(attributes, dict) or not (system_ref is None or isinstance(system_ref, dict)):
        raise InvalidEvent("attributes or systemRef is not an object")
    if nesting(record) > MAX_NESTING:
        raise InvalidEvent(f"the record nests deeper than {MAX_NESTING} levels")
    return {
        "entity_type": entity_type,
        "record_id": record_id,
        "system_ref": system_ref,
        "attributes": attributes,
        "active": bool(record.get("active", True)),
        "version": _version(record.get("version")),
        "occurred_at": db_time(parse_time(record.get("updatedAt")), dialect),
        "event_id": None,
        "updated_at": db_time(now, dialect),
        "source": source,
        "inactive_reason": None,
    }
