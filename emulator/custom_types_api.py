"""Custom record types (contract §5): list, create, read, update and deactivate definitions."""

from __future__ import annotations

from flask import Blueprint, Response, request

from . import catalog
from .custom_types import CustomType, DefinitionError, check_name, is_taken, parse_definition
from .envelope import APIError, json_object, ok
from .ids import short_id
from .runtime import current_runtime
from .state import Store

bp = Blueprint("custom_types", __name__, url_prefix="/api/v1/records/custom")


def _root() -> str:
    return request.url_root.rstrip("/")


def _invalid(fields: dict[str, str]) -> APIError:
    return APIError(400, "VALIDATION_ERROR", "invalid fields: " + ", ".join(fields), {"fields": fields})


def _find(store: Store, name: str) -> CustomType:
    custom = store.custom_types.get(name)
    if custom is None:
        raise APIError(404, "UNKNOWN_ENTITY_TYPE", f"no custom record type {name!r}")
    return custom


@bp.get("")
def list_view() -> tuple[Response, int]:
    """Active definitions in creation order; inactive ones too with `includeInactive=true`."""
    include_inactive = request.args.get("includeInactive", "").lower() == "true"
    store = current_runtime().store
    with store.lock:
        types = [c.to_json(_root()) for c in store.custom_types.values() if include_inactive or c.active]
    return ok({"customTypes": types})


@bp.post("")
def create_view() -> tuple[Response, int]:
    """Define a type (201); a taken name, a standard type's included, is 409 CONFLICT."""
    body = json_object()
    name = body.get("name")
    problem = check_name(name)
    store = current_runtime().store
    with store.lock:
        try:
            changes = parse_definition(store, body, own_name=name if isinstance(name, str) else "")
        except DefinitionError as exc:
            raise _invalid({**({"name": problem} if problem else {}), **exc.fields}) from None
        if problem:
            raise _invalid({"name": problem})
        if is_taken(store, name):
            raise APIError(409, "CONFLICT", f"the entity type name {name!r} is taken", {"name": name})
        custom = CustomType(
            id=short_id("ctype_"),
            name=name,
            display_name=changes.get("display_name", catalog.display_name(name)),
            description=changes.get("description"),
            active=changes.get("active", True),
            fields=changes.get("fields", []),
        )
        store.custom_types[name] = custom
        return ok(custom.to_json(_root()), 201)


@bp.get("/<name>")
def read_view(name: str) -> tuple[Response, int]:
    """One definition, active or not."""
    store = current_runtime().store
    with store.lock:
        return ok(_find(store, name).to_json(_root()))


@bp.put("/<name>")
def update_view(name: str) -> tuple[Response, int]:
    """Change only the given displayName, description, fields, active; `active: true` brings a type back."""
    body = json_object()
    if "name" in body and body["name"] != name:
        raise _invalid({"name": "cannot be changed"})
    store = current_runtime().store
    with store.lock:
        custom = _find(store, name)
        try:
            changes = parse_definition(store, body, own_name=name)
        except DefinitionError as exc:
            raise _invalid(exc.fields) from None
        for attribute, value in changes.items():
            setattr(custom, attribute, value)
        return ok(custom.to_json(_root()))


@bp.delete("/<name>")
def deactivate_view(name: str) -> tuple[str, int]:
    """Deactivate (204): the type leaves types, catalog and deliveries; its records stay stored."""
    store = current_runtime().store
    with store.lock:
        _find(store, name).active = False
    return "", 204
