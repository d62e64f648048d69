"""Records (contract §5): batch upsert, update and soft delete, entity types and their schemas."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, request

from . import catalog
from .envelope import APIError, json_object, ok
from .records import MAX_RECORDS, apply_batch
from .runtime import current_runtime

bp = Blueprint("records", __name__, url_prefix="/api/v1/records")


def _items() -> list[Any]:
    """The `records` list of the body; more than 100 items refuse the whole request (413)."""
    items = json_object().get("records")
    if not isinstance(items, list) or not items:
        raise APIError(400, "VALIDATION_ERROR", "records must be a non-empty list", {"fields": {"records": "must be a non-empty list"}})
    if len(items) > MAX_RECORDS:
        raise APIError(
            413,
            "TOO_MANY_RECORDS",
            f"at most {MAX_RECORDS} records a request, got {len(items)}",
            {"limit": MAX_RECORDS, "received": len(items)},
        )
    return items


def _run(action: str) -> tuple[dict[str, Any], int]:
    runtime = current_runtime()
    data, events = apply_batch(runtime.store, action, _items())
    runtime.sender.submit(events)
    return data, data["summary"]["failed"]


def _message(failed: int) -> str:
    return "OK" if failed == 0 else f"{failed} record(s) failed"


@bp.post("")
def upsert_view() -> tuple[Response, int]:
    """Create each record, or update it when its systemRef matches a stored one."""
    data, failed = _run("upsert")
    return ok(data, message=_message(failed))


@bp.put("")
def update_view() -> tuple[Response, int]:
    """Update stored records, matched by systemRef; a missing one fails with RECORD_NOT_FOUND."""
    data, failed = _run("update")
    return ok(data, message=_message(failed))


@bp.delete("")
def delete_view() -> tuple[Response | str, int]:
    """Soft-delete records: 204 when every one succeeded, else 200 with the summary."""
    data, failed = _run("delete")
    if failed == 0:
        return "", 204
    return ok(data, message=_message(failed))


@bp.get("/types")
def types_view() -> tuple[Response, int]:
    """The entity types records can have."""
    root = request.url_root.rstrip("/")
    types = [
        {
            "name": name,
            "displayName": catalog.display_name(name),
            "isCustom": False,
            "schemaUrl": f"{root}/api/v1/records/schema/{name}",
            "recordsUrl": f"{root}/api/v1/records",
        }
        for name in catalog.STANDARD_TYPES
    ]
    return ok({"entityTypes": types})


@bp.get("/schema/<entity_type>")
def schema_view(entity_type: str) -> tuple[Response, int]:
    """The fields of one entity type."""
    if not catalog.is_known_type(entity_type):
        raise APIError(404, "UNKNOWN_ENTITY_TYPE", f"unknown entity type {entity_type!r}")
    return ok(catalog.schema(entity_type))
