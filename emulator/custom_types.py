"""Custom record types (contract §5): their definitions, validation, and which entity types are live.

A standard type is always live; a custom one while it is active. Every check "may records of
this type be written, listed, subscribed to or delivered" goes through `is_active_type`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import catalog

if TYPE_CHECKING:
    from .state import Store

NAME_PATTERN = re.compile(r"^[a-z][A-Za-z0-9]{1,62}$")
FIELD_NAME_PATTERN = re.compile(r"^[a-z][A-Za-z0-9]{0,62}$")
FIELD_TYPES = ("string", "text", "integer", "decimal", "boolean", "date", "datetime", "email", "phone", "reference")
# Path segments of /api/v1/records/... that a type name would shadow: treated as taken names.
RESERVED_NAMES = frozenset({"types", "schema", "custom"})


class DefinitionError(Exception):
    """A bad definition; `fields` maps each bad field (e.g. `fields[0].type`) to why."""

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__("invalid fields: " + ", ".join(fields))
        self.fields = fields


@dataclass
class CustomType:
    """One custom record type; its records stay stored while it is inactive."""

    id: str
    name: str
    display_name: str
    description: str | None
    active: bool
    fields: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self, root: str) -> dict[str, Any]:
        """The contract's definition; `root` is the emulator's base URL."""
        return {
            "id": self.id,
            "name": self.name,
            "displayName": self.display_name,
            "description": self.description,
            "isCustom": True,
            "active": self.active,
            "fields": [dict(f) for f in self.fields],
            "recordsUrl": records_url(root, self.name),
            "schemaUrl": schema_url(root, self.name),
        }


def records_url(root: str, name: str) -> str:
    """Where a type's records are listed (contract §5b)."""
    return f"{root}/api/v1/records/{name}"


def schema_url(root: str, name: str) -> str:
    """Where a type's schema is served."""
    return f"{root}/api/v1/records/schema/{name}"


def is_active_type(store: Store, name: str) -> bool:
    """Whether records of `name` may be written, listed, subscribed to and delivered now."""
    if catalog.is_known_type(name):
        return True
    custom = store.custom_types.get(name)
    return custom is not None and custom.active


def is_any_type(store: Store, name: str) -> bool:
    """Whether `name` is a standard type or a custom one, active or not (its records are kept)."""
    return catalog.is_known_type(name) or name in store.custom_types


def active_type_names(store: Store) -> list[str]:
    """Standard types, then active custom ones in creation order."""
    with store.lock:
        custom = [c.name for c in store.custom_types.values() if c.active]
    return [*catalog.STANDARD_TYPES, *custom]


def schema_of(store: Store, name: str) -> dict[str, Any] | None:
    """The `data` of `GET /records/schema/{name}`, or None if `name` is not live."""
    if catalog.is_known_type(name):
        return catalog.schema(name)
    with store.lock:
        custom = store.custom_types.get(name)
        if custom is None or not custom.active:
            return None
        return {"entityType": name, "fields": [dict(f) for f in custom.fields]}


def check_name(name: Any) -> str | None:
    """Why `name` is malformed, or None; a taken name is a conflict, not reported here."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        return "must match ^[a-z][A-Za-z0-9]{1,62}$"
    return None


def is_taken(store: Store, name: str) -> bool:
    """A standard type, a reserved path segment or an existing custom type (active or not)."""
    return catalog.is_known_type(name) or name in RESERVED_NAMES or name in store.custom_types


def parse_definition(store: Store, body: dict[str, Any], *, own_name: str) -> dict[str, Any]:
    """The changes `body` asks for (displayName, description, fields, active), validated; raises `DefinitionError`."""
    problems: dict[str, str] = {}
    changes: dict[str, Any] = {}
    if "displayName" in body:
        value = body["displayName"]
        if isinstance(value, str) and value.strip():
            changes["display_name"] = value.strip()
        else:
            problems["displayName"] = "must be a non-empty string"
    if "description" in body:
        value = body["description"]
        if value is None or isinstance(value, str):
            changes["description"] = value
        else:
            problems["description"] = "must be a string or null"
    if "active" in body:
        if isinstance(body["active"], bool):
            changes["active"] = body["active"]
        else:
            problems["active"] = "must be true or false"
    if "fields" in body:
        fields, field_problems = _parse_fields(store, body["fields"], own_name)
        problems.update(field_problems)
        changes["fields"] = fields
    if problems:
        raise DefinitionError(problems)
    return changes


def _parse_fields(store: Store, value: Any, own_name: str) -> tuple[list[dict[str, Any]], dict[str, str]]:
    if not isinstance(value, list):
        return [], {"fields": "must be a list of field objects"}
    problems: dict[str, str] = {}
    fields = []
    seen: set[str] = set()
    for position, item in enumerate(value):
        where = f"fields[{position}]"
        if not isinstance(item, dict):
            problems[where] = "must be an object"
            continue
        parsed, item_problems = _parse_field(store, item, position, own_name)
        problems.update({f"{where}.{key}": why for key, why in item_problems.items()})
        if parsed["name"] in seen:
            problems[f"{where}.name"] = "is used by another field"
        seen.add(parsed["name"])
        fields.append(parsed)
    return fields, problems


def _parse_field(store: Store, item: dict[str, Any], position: int, own_name: str) -> tuple[dict[str, Any], dict[str, str]]:
    """One schema field with defaults filled in, and what is wrong with it."""
    problems: dict[str, str] = {}
    name = item.get("name")
    if not isinstance(name, str) or not FIELD_NAME_PATTERN.match(name):
        problems["name"] = "is required and must match ^[a-z][A-Za-z0-9]{0,62}$"
    kind = item.get("type")
    if kind not in FIELD_TYPES:
        problems["type"] = "must be one of " + ", ".join(FIELD_TYPES)
    required = item.get("required", False)
    if not isinstance(required, bool):
        problems["required"] = "must be true or false"
    nullable = item.get("nullable", not required if isinstance(required, bool) else True)
    if not isinstance(nullable, bool):
        problems["nullable"] = "must be true or false"
    display = item.get("displayName")
    if display is None:
        display = catalog.display_name(name) if isinstance(name, str) else None
    elif not isinstance(display, str) or not display.strip():
        problems["displayName"] = "must be a non-empty string"
    description = item.get("description")
    if description is not None and not isinstance(description, str):
        problems["description"] = "must be a string or null"
    target = item.get("referencedEntityType")
    if kind == "reference":
        if not isinstance(target, str) or not (target == own_name or is_any_type(store, target)):
            problems["referencedEntityType"] = "must name an entity type when type is reference"
    elif target is not None:
        problems["referencedEntityType"] = "must be null unless type is reference"
    rank = item.get("rank", position + 1)
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        problems["rank"] = "must be a whole number >= 1"
    parsed = {
        "name": name,
        "displayName": display,
        "type": kind,
        "required": required,
        "nullable": nullable,
        "description": description,
        "referencedEntityType": target if kind == "reference" else None,
        "rank": rank,
    }
    return parsed, problems
