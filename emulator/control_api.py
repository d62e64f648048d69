"""The emulator's own paths under `/_emulator` (contract §6): delivery log, events, records, faults.

No authentication and plain JSON (no envelope), so nothing here can pass for Aiwyn's API.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from . import catalog
from .clock import iso_millis
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
    """Sender counters; `pending == 0` means every delivery has ended."""
    return jsonify(current_runtime().sender.stats())


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
    if wanted is not None and not catalog.is_known_type(wanted):
        raise ControlError(400, f"unknown entity type {wanted!r}")
    store = current_runtime().store
    with store.lock:
        records = [
            {**r.to_json(), "createdAt": iso_millis(r.created_at), "updatedAt": iso_millis(r.updated_at)}
            for r in store.records.values()
            if wanted in (None, r.type)
        ]
    return jsonify({"records": records})


@bp.get("/faults")
def faults_view() -> Response:
    """The faults in force."""
    return jsonify(current_runtime().store.faults.to_json())


_FAULT_FIELDS = {
    "duplicate": ("duplicate", bool),
    "reorder": ("reorder", bool),
    "reorderWindowMs": ("reorder_window_ms", int),
    "delayMs": ("delay_ms", int),
}


@bp.put("/faults")
def set_faults_view() -> Response:
    """Change the given faults; the others stay. New events follow them at once."""
    body: Any = request.get_json(force=True, silent=True)
    if not isinstance(body, dict):
        raise ControlError(400, "the body must be a JSON object")
    changes = {}
    for key, value in body.items():
        if key not in _FAULT_FIELDS:
            raise ControlError(400, f"unknown fault {key!r}; known: {', '.join(_FAULT_FIELDS)}")
        attribute, kind = _FAULT_FIELDS[key]
        if kind is int and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ControlError(400, f"{key} must be a whole number >= 0")
        if kind is bool and not isinstance(value, bool):
            raise ControlError(400, f"{key} must be true or false")
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
