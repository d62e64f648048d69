"""The event as handlers see it: typed, read-only, parsed from the delivery's raw body."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from config.wire import OPERATIONS, field, identifier, operation

_MILLISECONDS_FROM = 10**11  # a Unix time above this is in milliseconds (seconds reach it in the year 5138)
# Limits of what the database and this code can hold: the ledger's and the mirror's columns
# (workers/models.py), a BIGINT version, and nesting that the recursive copies below can walk.
MAX_NESTING = 100
MAX_ENTITY_TYPE = 100
MAX_RECORD_ID = 200
VERSION_RANGE = range(-(2**63), 2**63)


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

    def as_dict(self) -> dict[str, Any]:
        """The record as plain dicts and lists, ready for ``json.dumps``."""
        return {
            "id": self.id, "type": self.type, "version": self.version, "active": self.active,
            "system_ref": plain(self.system_ref), "attributes": plain(self.attributes),
        }  # fmt: skip


@dataclass(frozen=True)
class Event:
    """One change of one Aiwyn record, and which run of the handler this is.

    ``attempt`` counts from 1 within the current set of attempts; ``replay`` is true when the
    run had failed for good and runs again (a replay from the failed list, or Aiwyn's redelivery
    of the event). ``raw`` is the delivery's body, byte for byte (empty for a hand-made event).
    """

    id: str
    subscription_id: str
    entity_type: str
    operation: str
    occurred_at: datetime
    record: Record
    attempt: int = 1
    replay: bool = False
    raw: bytes = dataclass_field(default=b"", repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        """The event as plain dicts and lists, ready for ``json.dumps`` (the time in ISO 8601)."""
        return {
            "id": self.id, "subscription_id": self.subscription_id, "entity_type": self.entity_type,
            "operation": self.operation, "occurred_at": self.occurred_at.isoformat(), "record": self.record.as_dict(),
            "attempt": self.attempt, "replay": self.replay,
        }  # fmt: skip


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
    try:
        return parsed.astimezone(UTC)
    except OverflowError as exc:  # e.g. 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        raise InvalidEvent(f"occurredAt is out of range: {value[:40]!r}") from exc


def nesting(value: Any, limit: int = MAX_NESTING) -> int:
    """How deep lists and objects nest in ``value``, counted without recursion; stops past ``limit``."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        if deepest > limit:
            break
        stack.extend((child, level + 1) for child in children)
    return deepest


def frozen(value: Any) -> Any:
    """Read-only copies, so that a handler cannot change what the next handler sees."""
    if isinstance(value, dict):
        return MappingProxyType({k: frozen(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(frozen(v) for v in value)
    return value


def _entity_type(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidEvent("entityType is missing")
    if len(value) > MAX_ENTITY_TYPE:
        raise InvalidEvent(f"entityType is longer than {MAX_ENTITY_TYPE} characters")
    return value


def _record_id(value: str | None) -> str:
    if not value:
        raise InvalidEvent("record.id is missing")
    if len(value) > MAX_RECORD_ID:
        raise InvalidEvent(f"record.id is longer than {MAX_RECORD_ID} characters")
    return value


def _version(value: Any) -> int | None:
    """An integer version (a numeric string too), or None when the record has none."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise InvalidEvent("record.version is not an integer")
    if value is not None and value not in VERSION_RANGE:
        raise InvalidEvent("record.version is out of range (a signed 64-bit integer)")
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
    entity_type = _entity_type(field(data, "entityType") or record.get("type"))
    op = operation(data.get("operation"))
    if op is None:
        raise InvalidEvent(f"operation is not one of {', '.join(OPERATIONS)}")
    record_id = _record_id(identifier(record.get("id")))
    version = _version(record.get("version"))
    attributes = record.get("attributes") or {}
    system_ref = field(record, "systemRef")
    if not isinstance(attributes, dict) or not (system_ref is None or isinstance(system_ref, dict)):
        raise InvalidEvent("record.attributes or record.systemRef is not an object")
    if nesting(record) > MAX_NESTING:
        raise InvalidEvent(f"record nests deeper than {MAX_NESTING} levels")
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
        raw=body,
    )


def plain(value: Any) -> Any:
    """A frozen mapping or tuple turned back into JSON-ready dicts and lists."""
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [plain(v) for v in value]
    return value
