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
from config.wire import wire_for

log = logging.getLogger(__name__)

# The contract's default paths; a deployment's own come from config/wire.py (AIWYN_RECEIVER_API_PREFIX...).
API_PREFIX = "/api/v1"
TOKEN_PATH = API_PREFIX + "/auth/token"
SUBSCRIPTIONS_PATH = API_PREFIX + "/event-subscriptions"
RECORD_TYPES_PATH = API_PREFIX + "/records/types"
_MAX_PAGES = 1000  # of the subscription list: a cursor that never ends is the API's bug, not a loop of ours
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
        self.wire = wire_for(settings)
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
        path = self.wire.subscriptions_path + "/catalog"
        return _objects(self._call("GET", path), "entityTypes", {"name": str, "operations": list}, "GET", path)

    def list_subscriptions(self, include_inactive: bool = True) -> list[dict[str, Any]]:
        """Every subscription, following ``nextCursor`` when the API pages the list."""
        path = self.wire.subscriptions_path
        found: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(_MAX_PAGES):
            params = {"includeInactive": "true"} if include_inactive else {}
            if cursor:
                params["cursor"] = cursor
            data = self._call("GET", path, params=params or None)
            found += [_with_string_id(item) for item in _objects(data, "subscriptions", {"id": (str, int)}, "GET", path)]
            following = data.get("nextCursor")
            if not following or following == cursor:
                return found
            cursor = str(following)
        raise AiwynAPIError(200, "INVALID_RESPONSE", f"the subscription list did not end after {_MAX_PAGES} pages", "GET", path)

    def create_subscription(self, fields: dict[str, Any]) -> dict[str, Any]:
        path = self.wire.subscriptions_path
        return _subscription(self._call("POST", path, json=fields), "POST", path)

    def get_subscription(self, subscription_id: str) -> dict[str, Any]:
        path = f"{self.wire.subscriptions_path}/{subscription_id}"
        return _subscription(self._call("GET", path), "GET", path)

    def update_subscription(self, subscription_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        path = f"{self.wire.subscriptions_path}/{subscription_id}"
        return _subscription(self._call("PUT", path, json=fields), "PUT", path)

    def deactivate_subscription(self, subscription_id: str) -> None:
        self._call("DELETE", f"{self.wire.subscriptions_path}/{subscription_id}")

    def signing_secrets(self, subscription_id: str) -> list[dict[str, Any]]:
        path = f"{self.wire.subscriptions_path}/{subscription_id}/secret"
        fields = {"secret": str, "algorithm": (str, type(None)), "expiresAt": (str, type(None))}
        return _objects(self._call("GET", path), "secrets", fields, "GET", path)

    def get(self, path: str, params: dict[str, str] | None = None) -> Any:
        """A read of any path, its ``data`` unchecked: for ``probe``, which describes what it finds."""
        return self._call("GET", path, params=params)

    def fetch_token(self) -> None:
        """Get a fresh access token now (``probe`` checks the token endpoint on its own)."""
        with self._lock:
            self._token = None
        self._access_token()

    # -- records -----------------------------------------------------------------------------------

    def record_types(self) -> list[dict[str, Any]]:
        """``/records/types``: every active entity type, custom ones too, with its ``recordsUrl``."""
        path = self.wire.record_types_path
        return _objects(self._call("GET", path), "entityTypes", {"name": str}, "GET", path)

    def record_schema(self, entity_type: str) -> list[dict[str, Any]]:
        """``/records/schema/{type}``: the type's fields (``name``, ``type``, ...), for the typed views."""
        path = f"{self.wire.api_prefix}/records/schema/{entity_type}"
        return _objects(self._call("GET", path), "fields", {"name": str, "type": str}, "GET", path)

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
            response = self._send(method, path, attempt, patient=patient, headers={"Authorization": f"Bearer {self._access_token(patient)}"}, **kwargs)
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

    def _access_token(self, patient: bool = False) -> str:
        """The current token, fetched or renewed when due; a patient call's fetch waits out 429s too."""
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
            token_path = self.wire.token_path
            while (response := self._send("POST", token_path, attempt, patient=patient, data=form)) is None or response is _WAITED:
                attempt += response is None
            if response.status_code != 200:
                try:
                    error = response.json().get("error", "invalid_client")
                except (ValueError, AttributeError):
                    error = "invalid_response"
                raise AiwynAPIError(response.status_code, str(error)[:100], "could not get an access token", "POST", token_path)
            try:
                body = response.json()
                if isinstance(body, dict) and "access_token" not in body and isinstance(body.get("data"), dict):
                    body = body["data"]  # an enveloped token answer
                self._token = str(body["access_token"])
                expires_in = float(body.get("expires_in", 3600))
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise AiwynAPIError(response.status_code, "INVALID_RESPONSE", "token answer is malformed", "POST", token_path) from exc
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
    found = shape(items) if isinstance(items, list) else shape(data)
    raise AiwynAPIError(200, "INVALID_RESPONSE", f"answer has no well-formed {key!r} list (found {found})", method, path)


def _subscription(data: Any, method: str, path: str) -> dict[str, Any]:
    """A subscription object, its id as a string; anything else is an ``AiwynAPIError`` naming what came."""
    if isinstance(data, dict) and isinstance(data.get("id"), (str, int)) and not isinstance(data.get("id"), bool):
        return _with_string_id(data)
    raise AiwynAPIError(200, "INVALID_RESPONSE", f"answer is not a subscription with an id (found {shape(data)})", method, path)


def _with_string_id(item: dict[str, Any]) -> dict[str, Any]:
    return item if isinstance(item["id"], str) else {**item, "id": str(item["id"])}


def shape(value: Any) -> str:
    """What an answer looked like, in a few words and without its values: for error messages."""
    if isinstance(value, dict):
        keys = sorted(str(k) for k in value)
        return "an object with " + (", ".join(keys[:8]) + (", ..." if len(keys) > 8 else "") if keys else "no keys")
    if isinstance(value, list):
        if not value:
            return "an empty list"
        return f"a list of {len(value)}, the first {shape(value[0])}"
    return "null" if value is None else f"a {type(value).__name__}"
