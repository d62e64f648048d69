"""The emulator's own paths under `/_emulator` (contract §6): delivery log, events, records, faults, seeding.

No authentication and plain JSON (no envelope), so nothing here can pass for Aiwyn's API.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from .control_records import MAX_SEED, seed, silent_change
from .custom_types import is_active_type, is_any_type
from .runtime import current_runtime
from .state import Faults

bp = Blueprint("control", __name__, url_prefix="/_emulator")


class ControlError(Exception):
    """A bad request to a control path; answered as `{"error": {"code", "message"}}`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@bp.errorhandler(ControlError)
def _control_error(error: ControlError) -> tuple[Response, int]:
    code = "NOT_FOUND" if error.status == 404 else "VALIDATION_ERROR"
    return jsonify({"error": {"code": code, "message": error.message}}), error.status


@bp.get("/health")
def health_view() -> Response:
    """Answers as soon as the emulator serves requests."""
    return jsonify({"ok": True})


@bp.get("/stats")
def stats_view() -> Response:
    """Sender counters; `pending == 0` means every delivery has ended. `rateLimited`: calls answered 429."""
    runtime = current_runtime()
    return jsonify({**runtime.sender.stats(), "rateLimited": runtime.store.limiter.refused})


@bp.get("/api-calls")
def api_calls_view() -> Response:
    """How many calls of the contract's API each route has had, e.g. `GET /api/v1/event-subscriptions/<subscription_id>/secret`."""
    store = current_runtime().store
    with store.lock:
        return jsonify({"calls": dict(store.api_calls)})


@bp.get("/subscriptions/<subscription_id>/deliveries")
def deliveries_view(subscription_id: str) -> Response:
    """Every delivery attempt for one subscription, oldest first."""
    store = current_runtime().store
    with store.lock:
        if subscription_id not in store.subscriptions:
            raise ControlError(404, f"no subscription {subscription_id}")
        attempts = [a.to_json() for a in store.attempts.get(subscription_id, [])]
    return jsonify({"subscriptionId": subscription_id, "deliveries": attempts})


@bp.get("/events")
def events_view() -> Response:
    """Every event produced (optionally of one `subscriptionId`), with its outcome so far."""
    wanted = request.args.get("subscriptionId")
    store = current_runtime().store
    with store.lock:
        events = [e.to_json() for e in store.events.values() if wanted in (None, e.subscription_id)]
    return jsonify({"events": events})


@bp.get("/records")
def records_view() -> Response:
    """Current state of stored records (optionally of one `type`), inactive ones included."""
    wanted = request.args.get("type")
    store = current_runtime().store
    if wanted is not None and not is_any_type(store, wanted):
        raise ControlError(400, f"unknown entity type {wanted!r}")
    with store.lock:
        records = [r.to_listing_json() for r in store.records.values() if wanted in (None, r.type)]
    return jsonify({"records": records})


def _body() -> dict[str, Any]:
    body: Any = request.get_json(force=True, silent=True)
    if not isinstance(body, dict):
        raise ControlError(400, "the body must be a JSON object")
    return body


@bp.post("/seed")
def seed_view() -> Response:
    """Create `count` records of `type` at once (for tests and benchmarks); CREATE events as usual."""
    body = _body()
    entity_type, count, template = body.get("type"), body.get("count"), body.get("attributes", {})
    runtime = current_runtime()
    if not isinstance(entity_type, str) or not is_active_type(runtime.store, entity_type):
        raise ControlError(400, f"type must be a live entity type, got {entity_type!r}")
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_SEED:
        raise ControlError(400, f"count must be a whole number from 1 to {MAX_SEED}")
    if template is None:
        template = {}
    if not isinstance(template, dict):
        raise ControlError(400, "attributes must be an object")
    runtime.sender.submit(seed(runtime.store, entity_type, count, template))
    return jsonify({"created": count})


@bp.put("/records/<record_id>")
def change_record_view(record_id: str) -> Response:
    """Change a record (version + 1, updatedAt now); with `"deliver": false` no event is made, as if all were lost."""
    body = _body()
    attributes, active, deliver = body.get("attributes", {}), body.get("active"), body.get("deliver", True)
    if attributes is None:
        attributes = {}
    if not isinstance(attributes, dict):
        raise ControlError(400, "attributes must be an object")
    if active is not None and not isinstance(active, bool):
        raise ControlError(400, "active must be true or false")
    if not isinstance(deliver, bool):
        raise ControlError(400, "deliver must be true or false")
    runtime = current_runtime()
    with runtime.store.lock:
        record = runtime.store.records.get(record_id)
        if record is None:
            raise ControlError(404, f"no record {record_id}")
        events = silent_change(runtime.store, record, attributes, active, deliver)
        data = record.to_listing_json()
    runtime.sender.submit(events)
    return jsonify(data)


@bp.delete("/records/<record_id>")
def remove_record_view(record_id: str) -> tuple[str, int]:
    """With `hard=true`: forget a record entirely, without an event (Aiwyn no longer lists it)."""
    if request.args.get("hard", "").lower() != "true":
        raise ControlError(400, "only hard=true is supported here; DELETE /api/v1/records soft-deletes")
    store = current_runtime().store
    with store.lock:
        record = store.records.get(record_id)
        if record is None:
            raise ControlError(404, f"no record {record_id}")
        store.remove_record(record)
    return "", 204


@bp.get("/faults")
def faults_view() -> Response:
    """The faults in force."""
    return jsonify(current_runtime().store.faults.to_json())


_FAULT_FIELDS = {
    "duplicate": ("duplicate", bool),
    "reorder": ("reorder", bool),
    "reorderWindowMs": ("reorder_window_ms", int),
    "delayMs": ("delay_ms", int),
    "rateLimitPerSecond": ("rate_limit_per_second", int),
    "dialect": ("dialect", str),
    "noSubscriptionHeader": ("no_subscription_header", bool),
    "timestampMillis": ("timestamp_millis", bool),
    "integerIds": ("integer_ids", bool),
    "snakeCase": ("snake_case", bool),
    "pastTenseOperations": ("past_tense_operations", bool),
    "separateMessageId": ("separate_message_id", bool),
}
DIALECTS = ("standard", "svix")


@bp.put("/faults")
def set_faults_view() -> Response:
    """Change the given faults; the others stay. New events follow them at once."""
    body = _body()
    changes = {}
    for key, value in body.items():
        if key not in _FAULT_FIELDS:
            raise ControlError(400, f"unknown fault {key!r}; known: {', '.join(_FAULT_FIELDS)}")
        attribute, kind = _FAULT_FIELDS[key]
        if kind is int and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ControlError(400, f"{key} must be a whole number >= 0")
        if kind is bool and not isinstance(value, bool):
            raise ControlError(400, f"{key} must be true or false")
        if kind is str and value not in DIALECTS:
            raise ControlError(400, f"{key} must be one of {', '.join(DIALECTS)}")
        changes[attribute] = value
    store = current_runtime().store
    with store.lock:
        store.faults = store.faults.updated(**changes)
        faults: Faults = store.faults
    return jsonify(faults.to_json())


@bp.post("/reset")
def reset_view() -> tuple[str, int]:
    """Forget subscriptions, records, events and the log; faults go back to the start-up ones."""
    runtime = current_runtime()
    # Both under the store lock, so an attempt in flight cannot log into the fresh state.
    with runtime.store.lock:
        runtime.store.clear()
        runtime.sender.reset()
    return "", 204
