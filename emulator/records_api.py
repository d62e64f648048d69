"""Records (contract §5, §5b): batch upsert, update and soft delete, entity types, schemas, listing and reads."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, request

from . import catalog
from .custom_types import is_active_type, records_url, schema_of, schema_url
from .envelope import APIError, json_object, ok
from .listing import CursorError, decode_cursor, encode_cursor, to_micros
from .records import MAX_RECORDS, apply_batch
from .runtime import current_runtime

DEFAULT_LIMIT = 100
MAX_LIMIT = 500

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
    """The live entity types: the standard ones, then active custom ones."""
    root = request.url_root.rstrip("/")
    store = current_runtime().store
    with store.lock:
        named = [(name, catalog.display_name(name), False) for name in catalog.STANDARD_TYPES]
        named += [(c.name, c.display_name, True) for c in store.custom_types.values() if c.active]
    types = [
        {
            "name": name,
            "displayName": display,
            "isCustom": is_custom,
            "schemaUrl": schema_url(root, name),
            "recordsUrl": records_url(root, name),
        }
        for name, display, is_custom in named
    ]
    return ok({"entityTypes": types})


@bp.get("/schema/<entity_type>")
def schema_view(entity_type: str) -> tuple[Response, int]:
    """The fields of one live entity type."""
    schema = schema_of(current_runtime().store, entity_type)
    if schema is None:
        raise APIError(404, "UNKNOWN_ENTITY_TYPE", f"unknown entity type {entity_type!r}")
    return ok(schema)


def _bad_query(field: str, why: str) -> APIError:
    return APIError(400, "VALIDATION_ERROR", f"{field} {why}", {"fields": {field: why}})


def _limit() -> int:
    raw = request.args.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    if not raw.strip().isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise _bad_query("limit", f"must be a whole number from 1 to {MAX_LIMIT}")
    return int(raw)


def _since_micros() -> int | None:
    raw = request.args.get("updatedSince")
    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise _bad_query("updatedSince", "must be an ISO 8601 date-time such as 2026-11-23T10:00:00.000Z") from None
    return to_micros(moment if moment.tzinfo else moment.replace(tzinfo=UTC))


def _require_live(entity_type: str) -> None:
    if not is_active_type(current_runtime().store, entity_type):
        raise APIError(404, "UNKNOWN_ENTITY_TYPE", f"unknown entity type {entity_type!r}")


@bp.get("/<entity_type>")
def list_view(entity_type: str) -> tuple[Response, int]:
    """One page of a type's records by (updatedAt, id); `nextCursor` is null on the last page."""
    limit, since = _limit(), _since_micros()
    cursor = request.args.get("cursor")
    try:
        after = decode_cursor(cursor) if cursor else None
    except CursorError as exc:
        raise _bad_query("cursor", str(exc)) from None
    include_inactive = request.args.get("includeInactive", "").lower() == "true"
    store = current_runtime().store
    with store.lock:
        _require_live(entity_type)
        ids, next_key, total = store.index.page(
            entity_type, after=after, since_micros=since, limit=limit, include_inactive=include_inactive
        )
        records = [store.records[record_id].to_listing_json() for record_id in ids]
    # `total` goes beyond the contract (an emulator extension, optional for the receiver): it lets a
    # backfill say "n of about m" here; against an API without it, the estimate is a lower bound.
    return ok({"records": records, "nextCursor": encode_cursor(next_key) if next_key else None, "total": total})


@bp.get("/<entity_type>/<record_id>")
def read_view(entity_type: str, record_id: str) -> tuple[Response, int]:
    """One record of a live type, inactive or not."""
    store = current_runtime().store
    with store.lock:
        _require_live(entity_type)
        record = store.records.get(record_id)
        if record is None or record.type != entity_type:
            raise APIError(404, "RECORD_NOT_FOUND", f"no {entity_type} record {record_id}")
        return ok(record.to_listing_json())
