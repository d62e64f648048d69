"""The token endpoint (contract §2) and the bearer check in front of every other `/api/v1` call.

Credentials are compared in constant time; neither credentials nor tokens are ever logged.
"""

from __future__ import annotations

import hmac
import math
from typing import Any

from flask import Blueprint, Response, jsonify, request

from .envelope import APIError
from .runtime import current_runtime

TOKEN_PATH = "/api/v1/auth/token"

bp = Blueprint("auth", __name__)


def _same(given: Any, expected: str) -> bool:
    return isinstance(given, str) and hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def _oauth_error(status: int, error: str, description: str) -> tuple[Response, int]:
    response = jsonify({"error": error, "error_description": description})
    response.headers["Cache-Control"] = "no-store"
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Basic realm="aiwyn-emulator"'
    return response, status


@bp.post(TOKEN_PATH)
def token() -> tuple[Response, int]:
    """Exchange client credentials or an API key for a bearer token (plain RFC 6749 JSON)."""
    runtime = current_runtime()
    settings = runtime.settings
    form: Any = request.get_json(silent=True) if request.is_json else request.form
    if not isinstance(form, dict) and not hasattr(form, "get"):
        return _oauth_error(400, "invalid_request", "body must be a JSON object or a form")
    grant = form.get("grant_type")
    if grant == "client_credentials":
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        if not client_id or not client_secret:
            return _oauth_error(400, "invalid_request", "client_id and client_secret are required")
        # Both comparisons always run, so timing does not tell which one failed.
        valid = _same(client_id, settings.client_id) & _same(client_secret, settings.client_secret)
    elif grant == "api_key":
        api_key = form.get("api_key")
        if not api_key:
            return _oauth_error(400, "invalid_request", "api_key is required")
        valid = _same(api_key, settings.api_key)
    elif not grant:
        return _oauth_error(400, "invalid_request", "grant_type is required")
    else:
        return _oauth_error(400, "unsupported_grant_type", "use client_credentials or api_key")
    if not valid:
        return _oauth_error(401, "invalid_client", "wrong credentials")
    tokens = runtime.tokens
    response = jsonify({"access_token": tokens.issue(), "token_type": "Bearer", "expires_in": math.ceil(tokens.ttl)})
    response.headers["Cache-Control"] = "no-store"
    return response, 200


def require_bearer() -> None:
    """Before every `/api/v1` request but the token endpoint: raise a 401 `APIError` without a valid token."""
    if not request.path.startswith("/api/v1/") or request.path == TOKEN_PATH:
        return
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise APIError(401, "UNAUTHORIZED", "missing bearer token")
    problem = current_runtime().tokens.check(token)
    if problem == "expired":
        raise APIError(401, "UNAUTHORIZED", "access token expired")
    if problem is not None:
        raise APIError(401, "UNAUTHORIZED", "unknown access token")
