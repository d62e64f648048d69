"""The Flask app factory: one emulator (state, tokens, sender) behind the contract's routes."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from . import auth, control_api, custom_types_api, records_api, subscriptions_api
from .envelope import APIError, fail
from .runtime import Runtime, current_runtime
from .sender import Sender
from .settings import Settings
from .state import Faults, Store
from .tokens import TokenIssuer

logger = logging.getLogger("emulator")

MAX_BODY_BYTES = 10 * 1024 * 1024

_HTTP_CODES = {
    400: "VALIDATION_ERROR",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
}


def create_app(settings: Settings, *, start_sender: bool = True) -> Flask:
    """Build an emulator app; its sender threads start now unless `start_sender` is False.

    Stop them with `app.extensions["emulator"].sender.stop()` (EmulatorServer does it).
    """
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.json.sort_keys = False  # type: ignore[attr-defined]
    store = Store(
        Faults(
            duplicate=settings.duplicate,
            reorder=settings.reorder,
            reorder_window_ms=settings.reorder_window_ms,
            delay_ms=settings.delay_ms,
            rate_limit_per_second=settings.rate_limit_per_second,
            dialect=settings.dialect,
        )
    )
    runtime = Runtime(settings, store, TokenIssuer(settings.token_ttl), Sender(settings, store))
    app.extensions["emulator"] = runtime

    app.before_request(_rate_limit)  # first: a refused call is neither counted nor applied
    app.before_request(_count_api_call)
    app.before_request(auth.require_bearer)
    for blueprint in (auth.bp, subscriptions_api.bp, custom_types_api.bp, records_api.bp, control_api.bp):
        app.register_blueprint(blueprint)
    app.register_error_handler(APIError, fail)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)
    if start_sender:
        runtime.sender.start()
    return app


def _rate_limit() -> tuple[Response, int] | None:
    """The rate-limit fault: a call of /api/v1 above the limit is answered 429 with Retry-After."""
    if not request.path.startswith("/api/"):
        return None
    store = current_runtime().store
    wait = store.limiter.admit(store.faults.rate_limit_per_second)
    if wait == 0:
        return None
    limit = store.faults.rate_limit_per_second
    response, status = fail(APIError(429, "RATE_LIMITED", f"more than {limit} calls a second; retry after {wait} s", {"retryAfter": wait}))
    response.headers["Retry-After"] = str(wait)
    return response, status


def _count_api_call() -> None:
    """Count served calls of the contract's API by route (429s are not), so a test can see how often a client calls."""
    if request.path.startswith("/api/") and request.url_rule is not None:
        store = current_runtime().store
        with store.lock:
            key = f"{request.method} {request.url_rule.rule}"
            store.api_calls[key] = store.api_calls.get(key, 0) + 1


def _http_error(error: HTTPException) -> tuple[Response, int]:
    """Routing and protocol errors: enveloped under /api/v1, plain JSON elsewhere."""
    status = error.code or 500
    code = _HTTP_CODES.get(status, "HTTP_ERROR")
    message = error.description or error.name
    if request.path.startswith("/api/"):
        response, status = fail(APIError(status, code, message))
    else:
        response = jsonify({"error": {"code": code, "message": message}})
    for name, value in error.get_headers():
        if name.lower() != "content-type":  # keeps e.g. the Allow header of a 405
            response.headers[name] = value
    return response, status


def _unexpected_error(error: Exception) -> tuple[Response, int]:
    """A bug: logged with its traceback, answered as a 500 envelope."""
    logger.exception("unhandled error on %s %s", request.method, request.path)
    return fail(APIError(500, "INTERNAL_ERROR", "internal error in the emulator"))
