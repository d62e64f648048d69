"""A small client for the parts of Aiwyn's API this service calls: auth, subscriptions, secrets, records.

Errors::

    AiwynAPIError            status, code and message of a failed call (never the token)
     └── AiwynUnavailable    the API could not be reached or kept failing after retries

Tokens are fetched on first use and renewed a minute before they expire, or once after a
401 on a token that was valid. 429 and 5xx answers and transport errors are retried with
exponential back-off, honouring ``Retry-After``; a *patient* call (the record listings of a
backfill) waits out every 429 instead of counting it as a failed attempt.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx

from config import Settings

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"  # assumed in the contract: every path starts with it
TOKEN_PATH = API_PREFIX + "/auth/token"
SUBSCRIPTIONS_PATH = API_PREFIX + "/event-subscriptions"
RECORD_TYPES_PATH = API_PREFIX + "/records/types"
_RENEW_MARGIN = 60.0
_MAX_BACKOFF = 30.0


class AiwynAPIError(Exception):
    """A call to Aiwyn's API failed; ``status`` and ``code`` say how (status 0: no answer)."""

    def __init__(self, status: int, code: str, message: str, method: str = "", path: str = "") -> None:
        super().__init__(f"{method} {path} failed: {status} {code}: {message}".strip())
        self.status = status
        self.code = code
        self.message = message


class AiwynUnavailable(AiwynAPIError):
    """No usable answer after every retry: network error, timeout, 429 or 5xx."""


class AiwynClient:
    """Thread-safe client; one per process, built from the settings."""

    def __init__(
        self,
        settings: Settings,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        settings.require_api()
        self._settings = settings
        self._http = httpx.Client(
            base_url=settings.aiwyn_base_url or "",
            timeout=settings.http_timeout,
            transport=transport,
            headers={"User-Agent": "aiwyn-webhook-receiver"},
        )
        self._sleep = sleep
        self._lock = threading.Lock()
        self._token: str | None = None
        self._token_expires = 0.0

    @property
    def longest_call(self) -> float:
        """Seconds one method may take at worst: every retry timing out after its back-off, a token fetch before, all twice after a 401."""
        retries = self._settings.http_retries
        one_request = (retries + 1) * self._settings.http_timeout + retries * _MAX_BACKOFF
        return 4 * one_request

    def close(self) -> None:
        self._http.close()

    # -- subscriptions -------------------------------------------------------------------------

    def catalog(self) -> list[dict[str, Any]]:
        return self._call("GET", SUBSCRIPTIONS_PATH + "/catalog")["entityTypes"]

    def list_subscriptions(self, include_inactive: bool = True) -> list[dict[str, Any]]:
        params = {"includeInactive": "true"} if include_inactive else None
        data = self._call("GET", SUBSCRIPTIONS_PATH, params=params)
        return _objects(data, "subscriptions", {"id": str}, "GET", SUBSCRIPTIONS_PATH)

    def create_subscription(self, fields: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", SUBSCRIPTIONS_PATH, json=fields)

    def get_subscription(self, subscription_id: str) -> dict[str, Any]:
        return self._call("GET", f"{SUBSCRIPTIONS_PATH}/{subscription_id}")

    def update_subscription(self, subscription_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        return self._call("PUT", f"{SUBSCRIPTIONS_PATH}/{subscription_id}", json=fields)

    def deactivate_subscription(self, subscription_id: str) -> None:
        self._call("DELETE", f"{SUBSCRIPTIONS_PATH}/{subscription_id}")

    def signing_secrets(self, subscription_id: str) -> list[dict[str, Any]]:
        path = f"{SUBSCRIPTIONS_PATH}/{subscription_id}/secret"
        return _objects(self._call("GET", path), "secrets", {"secret": str, "expiresAt": (str, type(None))}, "GET", path)

    # -- records -----------------------------------------------------------------------------------

    def record_types(self) -> list[dict[str, Any]]:
        """``/records/types``: every active entity type, custom ones too, with its ``recordsUrl``."""
        return _objects(self._call("GET", RECORD_TYPES_PATH), "entityTypes", {"name": str}, "GET", RECORD_TYPES_PATH)

    def list_records(self, records_url: str, params: dict[str, str]) -> Any:
        """One page of a type's listing (contract §5b, assumed): the raw ``data``, checked by the caller."""
        return self._call("GET", self._same_origin(records_url), params=params, patient=True)

    def _same_origin(self, url: str) -> str:
        """A ``recordsUrl`` may be absolute; our token is sent only to the API we were given."""
        parts = urlsplit(url)
        if not parts.scheme:
            return url
        ours = urlsplit(self._settings.aiwyn_base_url or "")
        if (parts.scheme, parts.netloc) != (ours.scheme, ours.netloc):
            raise AiwynAPIError(0, "FOREIGN_URL", f"recordsUrl points at {parts.scheme}://{parts.netloc}, not at AIWYN_BASE_URL", "GET", parts.path)
        return url

    # -- plumbing ------------------------------------------------------------------------------

    def _call(self, method: str, path: str, patient: bool = False, **kwargs: Any) -> Any:
        renewed = False
        attempt = 0
        while True:
            response = self._send(method, path, attempt, patient=patient, headers={"Authorization": f"Bearer {self._access_token()}"}, **kwargs)
            if response is _WAITED:
                continue  # a 429 waited out: it is the API's pace, not a failure
            if response is None:
                attempt += 1
                continue
            if response.status_code == 401 and not renewed:
                renewed = True  # the token expired early (or was revoked): renew once and retry
                with self._lock:
                    self._token = None
                continue
            if response.status_code == 204:
                return None
            return _unwrap(response, method, path)

    def _send(self, method: str, path: str, attempt: int, patient: bool = False, **kwargs: Any) -> Any:
        """One attempt; ``None`` means "retry after the back-off already slept", ``_WAITED`` the same
        for a 429 that a patient call does not count."""
        retries = self._settings.http_retries
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            if attempt >= retries:
                raise AiwynUnavailable(0, "NETWORK_ERROR", type(exc).__name__, method, path) from exc
            self._backoff(attempt, None, method, path, type(exc).__name__)
            return None
        if response.status_code == 429 and patient:
            self._backoff(min(attempt, 3), response.headers.get("Retry-After"), method, path, "429")
            return _WAITED
        if response.status_code == 429 or response.status_code >= 500:
            if attempt >= retries:
                code, message = _error_of(response)
                raise AiwynUnavailable(response.status_code, code, message, method, path)
            self._backoff(attempt, response.headers.get("Retry-After"), method, path, str(response.status_code))
            return None
        return response

    def _backoff(self, attempt: int, retry_after: str | None, method: str, path: str, why: str) -> None:
        delay = min(_MAX_BACKOFF, 0.5 * 2**attempt)
        if retry_after and retry_after.isdigit():
            delay = min(_MAX_BACKOFF, float(retry_after))
        log.warning("aiwyn api %s %s: %s, retrying in %.1fs", method, path, why, delay)
        self._sleep(delay)

    def _access_token(self) -> str:
        with self._lock:
            if self._token and time.monotonic() < self._token_expires - _RENEW_MARGIN:
                return self._token
            settings = self._settings
            if settings.aiwyn_client_id and settings.aiwyn_client_secret:
                form = {
                    "grant_type": "client_credentials",
                    "client_id": settings.aiwyn_client_id,
                    "client_secret": settings.aiwyn_client_secret,
                }
            else:
                form = {"grant_type": "api_key", "api_key": settings.aiwyn_api_key or ""}
            attempt = 0
            while (response := self._send("POST", TOKEN_PATH, attempt, data=form)) is None:
                attempt += 1
            if response.status_code != 200:
                try:
                    error = response.json().get("error", "invalid_client")
                except ValueError:
                    error = "invalid_response"
                raise AiwynAPIError(response.status_code, str(error), "could not get an access token", "POST", TOKEN_PATH)
            try:
                body = response.json()
                self._token = str(body["access_token"])
                expires_in = float(body.get("expires_in", 3600))
            except (ValueError, KeyError, TypeError) as exc:
                raise AiwynAPIError(response.status_code, "INVALID_RESPONSE", "token answer is malformed", "POST", TOKEN_PATH) from exc
            self._token_expires = time.monotonic() + expires_in
            return self._token


_WAITED = object()


def _error_of(response: httpx.Response) -> tuple[str, str]:
    try:
        error = response.json().get("error") or {}
        return str(error.get("code", "HTTP_ERROR")), str(error.get("message", response.reason_phrase))
    except (ValueError, AttributeError):
        return "HTTP_ERROR", response.reason_phrase


def _unwrap(response: httpx.Response, method: str, path: str) -> Any:
    """The ``data`` of an enveloped answer, or an ``AiwynAPIError`` built from its ``error``."""
    if response.is_success:
        try:
            return response.json()["data"]
        except (ValueError, KeyError, TypeError) as exc:
            raise AiwynAPIError(response.status_code, "INVALID_RESPONSE", "answer has no data envelope", method, path) from exc
    code, message = _error_of(response)
    raise AiwynAPIError(response.status_code, code, message, method, path)


def _objects(data: Any, key: str, fields: dict[str, type | tuple[type, ...]], method: str, path: str) -> list[dict[str, Any]]:
    """``data[key]`` as a list of objects whose ``fields`` have the given types (a missing one is
    ``None``); anything else is an ``AiwynAPIError``, which callers handle, never a 500 in a request."""
    items = data.get(key) if isinstance(data, dict) else None
    if isinstance(items, list) and all(isinstance(item, dict) and all(isinstance(item.get(name), kinds) for name, kinds in fields.items()) for item in items):
        return items
    raise AiwynAPIError(200, "INVALID_RESPONSE", f"answer has no well-formed {key!r} list", method, path)
