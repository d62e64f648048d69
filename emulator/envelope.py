"""The contract's JSON envelope (§1) around every `/api/v1` answer, the error that produces one,
and the one way request bodies are read."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify, request

from .clock import iso_seconds, utc_now

API_VERSION = "1.0.0"


class APIError(Exception):
    """A failed API call: HTTP status, the contract's error code, a message and optional details."""

    def __init__(self, status: int, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details


def _meta(success: bool, message: str) -> dict[str, Any]:
    return {
        "success": success,
        "message": message,
        "timestamp": iso_seconds(utc_now()),
        "version": API_VERSION,
    }


def ok(data: Any, status: int = 200, message: str = "OK") -> tuple[Response, int]:
    """A successful answer: `data` wrapped with `error: null` and `meta.success: true`."""
    return jsonify({"data": data, "error": None, "meta": _meta(True, message)}), status


def fail(error: APIError) -> tuple[Response, int]:
    """A failed answer: `data: null`, the error object and `meta.success: false`."""
    body = {
        "data": None,
        "error": {"code": error.code, "message": error.message, "details": error.details},
        "meta": _meta(False, error.message),
    }
    return jsonify(body), error.status


def json_object() -> dict[str, Any]:
    """The request's JSON body, which must be an object."""
    body = request.get_json(force=True, silent=True)
    if not isinstance(body, dict):
        raise APIError(400, "VALIDATION_ERROR", "the body must be a JSON object")
    return body
