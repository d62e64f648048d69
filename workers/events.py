"""The event as handlers see it: typed, read-only, parsed from the delivery's raw body."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from config.wire import OPERATIONS, field, identifier, operation

_MILLISECONDS_FROM = 10**11  # a Unix time above this is in milliseconds (seconds reach it in the year 5138)


class InvalidEvent(ValueError):
    """The body is not an event this service understands; retrying cannot help."""


@dataclass(frozen=True)
class Record:
    id: str
    type: str
    version: int | None
    active: bool
    system_ref: Mapping[str, Any] | None
    attributes: Mapping[str, Any]


@dataclass(frozen=True)
class Event:
    """One change of one Aiwyn record."""

    id: str
    subscription_id: str
    entity_type: str
    operation: str
    occurred_at: datetime
    record: Record


def parse_time(value: Any) -> datetime:
    """An ISO-8601 time (Aiwyn sends milliseconds and a ``Z``), or Unix seconds or milliseconds
    as a number or a string of digits, as an aware UTC datetime."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value / 1000 if value >= _MILLISECONDS_FROM else value, UTC)
        except (ValueError, OverflowError, OSError) as exc:
            raise InvalidEvent(f"occurredAt is not a time: {value!r}") from exc
    if not isinstance(value, str):
        raise InvalidEvent("occurredAt is missing")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidEvent(f"occurredAt is not a time: {value[:40]!r}") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def frozen(value: Any) -> Any:
    """Read-only copies, so that a handler cannot change what the next handler sees."""
    if isinstance(value, dict):
        return MappingProxyType({k: frozen(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(frozen(v) for v in value)
    return value


def parse_event(body: bytes, event_id: str, subscription_id: str) -> Event:
    """Check the body's shape and build the event; ``InvalidEvent`` names what is wrong.

    Tolerant of what a reasonable sender sends (config/wire.py): snake_case names, integer ids,
    a numeric string version, operations in any case or as CREATED/UPDATED/DELETED."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise InvalidEvent("body is not JSON") from exc
    if not isinstance(data, dict):
        raise InvalidEvent("body is not a JSON object")
    record = data.get("record")
    if not isinstance(record, dict):
        raise InvalidEvent("record is missing")
    entity_type = field(data, "entityType") or record.get("type")
    op = operation(data.get("operation"))
    record_id = identifier(record.get("id"))
    version = record.get("version")
    if isinstance(version, str) and version.strip().isdigit():
        version = int(version.strip())
    if not isinstance(entity_type, str) or not entity_type:
        raise InvalidEvent("entityType is missing")
    if op is None:
        raise InvalidEvent(f"operation is not one of {', '.join(OPERATIONS)}")
    if not record_id:
        raise InvalidEvent("record.id is missing")
    if version is not None and (not isinstance(version, int) or isinstance(version, bool)):
        raise InvalidEvent("record.version is not an integer")
    attributes = record.get("attributes") or {}
    system_ref = field(record, "systemRef")
    if not isinstance(attributes, dict) or not (system_ref is None or isinstance(system_ref, dict)):
        raise InvalidEvent("record.attributes or record.systemRef is not an object")
    return Event(
        id=event_id,
        subscription_id=identifier(field(data, "subscriptionId")) or subscription_id,
        entity_type=entity_type,
        operation=op,
        occurred_at=parse_time(field(data, "occurredAt")),
        record=Record(
            id=record_id,
            type=record.get("type") or entity_type,
            version=version,
            # A DELETE is a soft delete whatever the record says.
            active=False if op == "DELETE" else bool(record.get("active", True)),
            system_ref=frozen(system_ref),
            attributes=frozen(attributes),
        ),
    )


def plain(value: Any) -> Any:
    """A frozen mapping or tuple turned back into JSON-ready dicts and lists."""
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [plain(v) for v in value]
    return value
