"""Event subscriptions (contract §3): catalog, list, create, read, update, deactivate, secrets."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Response, request

from . import catalog
from .clock import utc_now
from .custom_types import active_type_names, is_active_type
from .envelope import APIError, json_object, ok
from .ids import short_id
from .runtime import current_runtime
from .signing import ALGORITHMS
from .state import SigningSecret, Subscription

bp = Blueprint("subscriptions", __name__, url_prefix="/api/v1/event-subscriptions")


def _check_name(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return "must be a non-empty string"
    return None


def _check_url(value: Any) -> str | None:
    if not isinstance(value, str):
        return "must be an absolute http or https URL"
    try:
        parts = urlsplit(value)
    except ValueError:
        return "must be an absolute http or https URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an absolute http or https URL"
    return None


def _check_entity_types(value: Any) -> str | None:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        return 'must be a non-empty list of entity type names, or ["*"]'
    if "*" in value:
        return None if value == ["*"] else '"*" cannot be combined with other types'
    store = current_runtime().store
    unknown = [v for v in value if not is_active_type(store, v)]
    if unknown:
        return "unknown entity types: " + ", ".join(unknown)
    return None


def _check_operations(value: Any) -> str | None:
    if not isinstance(value, list) or not value or not all(v in catalog.OPERATIONS for v in value):
        return "must be a non-empty list drawn from CREATE, UPDATE, DELETE"
    return None


def _check_description(value: Any) -> str | None:
    return None if value is None or isinstance(value, str) else "must be a string or null"


def _check_algorithm(value: Any) -> str | None:
    return None if value in ALGORITHMS else "must be v1 (HMAC-SHA256) or v1a (Ed25519)"


def _check_active(value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


_CHECKS = {
    "name": _check_name,
    "url": _check_url,
    "entityTypes": _check_entity_types,
    "operations": _check_operations,
    "description": _check_description,
    "signatureAlgorithm": _check_algorithm,
}
REQUIRED = ("name", "url", "entityTypes", "operations")


def _validate(body: dict[str, Any], *, creating: bool) -> None:
    """Raise a 400 `VALIDATION_ERROR` whose `details.fields` names every bad field."""
    checks = dict(_CHECKS) if creating else {**_CHECKS, "active": _check_active}
    problems = {}
    for field, check in checks.items():
        if field in body:
            problem = check(body[field])
            if problem:
                problems[field] = problem
        elif creating and field in REQUIRED:
            problems[field] = "is required"
    if problems:
        names = ", ".join(problems)
        raise APIError(400, "VALIDATION_ERROR", f"invalid fields: {names}", {"fields": problems})


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _find(subscription_id: str) -> Subscription:
    subscription = current_runtime().store.subscriptions.get(subscription_id)
    if subscription is None:
        raise APIError(404, "NOT_FOUND", f"no subscription {subscription_id}")
    return subscription


@bp.get("/catalog")
def catalog_view() -> tuple[Response, int]:
    """Every live entity type (active custom ones included) that can be subscribed to, with its operations."""
    names = active_type_names(current_runtime().store)
    types = [{"name": n, "operations": list(catalog.OPERATIONS)} for n in names]
    return ok({"entityTypes": types})


@bp.get("")
def list_view() -> tuple[Response, int]:
    """Active subscriptions; inactive ones too with `includeInactive=true`."""
    include_inactive = request.args.get("includeInactive", "").lower() == "true"
    store = current_runtime().store
    with store.lock:
        subscriptions = [s.to_json() for s in store.subscriptions.values() if include_inactive or s.active]
    return ok({"subscriptions": subscriptions})


@bp.post("")
def create_view() -> tuple[Response, int]:
    """Create a subscription with a fresh signing secret of its algorithm (`v1` unless asked)."""
    body = json_object()
    _validate(body, creating=True)
    now = utc_now()
    subscription = Subscription(
        id=short_id("sub_"),
        name=body["name"].strip(),
        url=body["url"],
        entity_types=_unique(body["entityTypes"]),
        operations=_unique(body["operations"]),
        description=body.get("description"),
        active=True,
        created_at=now,
        updated_at=now,
        secrets=[SigningSecret.fresh(body.get("signatureAlgorithm", "v1"), now)],
    )
    store = current_runtime().store
    with store.lock:
        store.subscriptions[subscription.id] = subscription
        data = subscription.to_json()
    return ok(data, 201)


@bp.get("/<subscription_id>")
def read_view(subscription_id: str) -> tuple[Response, int]:
    """One subscription, inactive or not."""
    store = current_runtime().store
    with store.lock:
        return ok(_find(subscription_id).to_json())


@bp.put("/<subscription_id>")
def update_view(subscription_id: str) -> tuple[Response, int]:
    """Change only the given fields (`active` included); deactivating cancels waiting deliveries."""
    body = json_object()
    _validate(body, creating=False)
    runtime = current_runtime()
    with runtime.store.lock:
        subscription = _find(subscription_id)
        if "name" in body:
            subscription.name = body["name"].strip()
        if "url" in body:
            subscription.url = body["url"]
        if "entityTypes" in body:
            subscription.entity_types = _unique(body["entityTypes"])
        if "operations" in body:
            subscription.operations = _unique(body["operations"])
        if "description" in body:
            subscription.description = body["description"]
        if "active" in body:
            subscription.active = body["active"]
        subscription.updated_at = utc_now()
        data = subscription.to_json()
    if not data["active"]:
        runtime.sender.cancel_subscription(subscription_id)
    return ok(data)


@bp.delete("/<subscription_id>")
def deactivate_view(subscription_id: str) -> tuple[str, int]:
    """Deactivate: no new events, and waiting deliveries end as cancelled."""
    runtime = current_runtime()
    with runtime.store.lock:
        subscription = _find(subscription_id)
        if subscription.active:
            subscription.active = False
            subscription.updated_at = utc_now()
    runtime.sender.cancel_subscription(subscription_id)
    return "", 204


@bp.get("/<subscription_id>/secret")
def secret_view(subscription_id: str) -> tuple[Response, int]:
    """The secrets that currently sign this subscription's deliveries, newest first."""
    store = current_runtime().store
    now = utc_now()
    with store.lock:
        secrets = [s.to_json() for s in _find(subscription_id).current_secrets(now)]
    return ok({"secrets": secrets})


@bp.post("/<subscription_id>/secret/rotate")
def rotate_view(subscription_id: str) -> tuple[Response, int]:
    """Add a new secret in front; the current ones keep signing for the grace period."""
    runtime = current_runtime()
    now = utc_now()
    grace_end = now + timedelta(seconds=runtime.settings.secret_grace)
    with runtime.store.lock:
        subscription = _find(subscription_id)
        kept = subscription.current_secrets(now)
        for secret in kept:
            if secret.expires_at is None or secret.expires_at > grace_end:
                secret.expires_at = grace_end
        algorithm = subscription.secrets[0].algorithm if subscription.secrets else "v1"
        subscription.secrets = [SigningSecret.fresh(algorithm, now), *kept]
        subscription.updated_at = now
        secrets = [s.to_json() for s in subscription.current_secrets(now)]
    return ok({"secrets": secrets})
