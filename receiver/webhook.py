"""``POST /webhooks/aiwyn``: refuse what is not proven genuine, queue what is, answer fast.

Cheap refusals come first (size, content type, headers, timestamp), the signature next, and
the body is parsed only once it is proven to come from Aiwyn. A 2xx is given only after the
delivery is in Redis; when Redis cannot take it, 503 makes Aiwyn retry later.
"""

from __future__ import annotations

import hmac
import json
import logging
import time

import redis
from flask import Blueprint, Response, current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

from config.job_contract import MAX_EVENT_ID
from receiver.delivery_queue import Enqueued
from receiver.signatures import NO_MATCH, NO_SECRET, VerificationError, check_headers, check_signature

log = logging.getLogger(__name__)
webhooks = Blueprint("webhooks", __name__)

SUBSCRIPTION_HEADER = "aiwyn-subscription-id"  # assumed in the contract
RETRY_AFTER_SECONDS = "30"


def _answer(status: int, message: str, reason: str, started: float, **extra: str) -> Response:
    # Every refusal is logged (it says which check failed); an accepted delivery only at DEBUG:
    # its ledger row records it anyway, and a log line costs a tenth of the request's time.
    level = logging.DEBUG if status < 400 else logging.WARNING
    if log.isEnabledFor(level):
        log.log(
            level,
            "webhook %s status=%d reason=%r event=%r subscription=%r client=%s ms=%.1f",
            "accepted" if status < 400 else "rejected",
            status,
            reason,
            request.headers.get("webhook-id", "")[:100],
            request.headers.get(SUBSCRIPTION_HEADER, "")[:100],
            request.remote_addr,
            (time.perf_counter() - started) * 1000,
        )
    body = json.dumps({"status": message} if status < 400 else {"error": message})
    return Response(body, status, extra, mimetype="application/json")


def _unavailable(exc: redis.RedisError, started: float) -> Response:
    """Never 2xx unless queued: Aiwyn retries a 503 later, so nothing is lost."""
    return _answer(503, "queue unavailable", f"redis: {type(exc).__name__}", started, **{"Retry-After": RETRY_AFTER_SECONDS})


@webhooks.post("/webhooks/aiwyn")
@webhooks.post("/webhooks/aiwyn/<token>")
def receive(token: str | None = None) -> Response:
    started = time.perf_counter()
    runtime = current_app.extensions["aiwyn"]
    settings = runtime.settings
    # With AIWYN_RECEIVER_CALLBACK_TOKEN, only PUBLIC_URL/webhooks/aiwyn/<token> exists: a second
    # factor beside the signature. The token itself is never logged.
    if (settings.callback_token or token) and not hmac.compare_digest((token or "").encode(), (settings.callback_token or "").encode()):
        return _answer(404, "not found", "wrong or missing callback token", started)
    if request.content_length is not None and request.content_length > settings.max_body_bytes:
        return _answer(413, "body too large", "content-length over the limit", started)
    if request.mimetype != "application/json":
        return _answer(415, "content type must be application/json", "wrong content type", started)
    try:
        body = request.get_data(cache=False)
    except RequestEntityTooLarge:
        return _answer(413, "body too large", "body over the limit", started)

    subscription_id = request.headers.get(SUBSCRIPTION_HEADER, "")
    try:
        signed = check_headers(request.headers, tolerance=settings.timestamp_tolerance)
        if len(signed.event_id) > MAX_EVENT_ID:
            raise VerificationError("webhook-id is too long")
        if not subscription_id:
            raise VerificationError(f"missing {SUBSCRIPTION_HEADER} header")
        secrets = runtime.secrets.secrets_for(subscription_id)
        if secrets is None:
            raise VerificationError("unknown subscription")
        try:
            check_signature(signed, body, secrets)
        except VerificationError as exc:
            # Perhaps the secret was rotated (or the last one expired): look again, at most once per interval.
            fresh = runtime.secrets.refreshed_secrets(subscription_id, secrets) if exc.reason in (NO_MATCH, NO_SECRET) else None
            if fresh is None:
                raise
            check_signature(signed, body, fresh)
    except VerificationError as exc:
        return _answer(401, "signature verification failed", exc.reason, started)
    except redis.RedisError as exc:
        return _unavailable(exc, started)

    event_id = signed.event_id
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return _answer(400, "body is not UTF-8", "body is not UTF-8", started)
    try:
        payload = json.loads(text)
    except (ValueError, RecursionError):  # ValueError: JSONDecodeError, and ints of over 4300 digits
        return _answer(400, "body is not valid JSON", "body is not JSON", started)
    if not isinstance(payload, dict):
        return _answer(400, "body must be a JSON object", "body is not a JSON object", started)
    if payload.get("id", event_id) != event_id:
        return _answer(400, "body id differs from webhook-id", "body id mismatch", started)
    if payload.get("subscriptionId", subscription_id) != subscription_id:
        return _answer(400, f"body subscriptionId differs from {SUBSCRIPTION_HEADER}", "body subscriptionId mismatch", started)

    try:
        outcome = runtime.queue.enqueue(event_id, subscription_id, body)
    except redis.RedisError as exc:
        return _unavailable(exc, started)
    if outcome is Enqueued.DUPLICATE:
        return _answer(200, "duplicate", "already queued or done", started)
    return _answer(202, outcome.value, outcome.value, started)
