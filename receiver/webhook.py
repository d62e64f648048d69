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
from dataclasses import dataclass
from typing import TYPE_CHECKING

import redis
from flask import Blueprint, Response, request
from werkzeug.exceptions import RequestEntityTooLarge

from config.job_contract import MAX_EVENT_ID
from config.wire import field, identifier
from receiver import rejections
from receiver.app import Runtime, current_runtime
from receiver.delivery_queue import Enqueued, NotReplicated
from receiver.incoming import Incoming
from receiver.signatures import VerificationError, check_headers

if TYPE_CHECKING:
    from config import Settings

log = logging.getLogger(__name__)
webhooks = Blueprint("webhooks", __name__)

RETRY_AFTER_SECONDS = "30"
WEBHOOK_PATH = "/webhooks/aiwyn"


@dataclass(frozen=True)
class Answer:
    """What the endpoint answers: a status, a JSON body and any extra headers."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


def _answer(runtime: Runtime, incoming: Incoming, status: int, message: str, reason: str, started: float, **extra: str) -> Answer:
    # Every refusal is logged (it says which check failed); an accepted delivery only at DEBUG:
    # its ledger row records it anyway, and a log line costs a tenth of the request's time.
    level = logging.DEBUG if status < 400 else logging.WARNING
    subscription = incoming.subscription or (incoming.headers.get(runtime.wire.header_subscription, "") if runtime.wire.header_subscription else "")
    if log.isEnabledFor(level):
        log.log(
            level,
            # %r everywhere a value comes from the request: a forged header (X-Forwarded-For behind
            # ProxyFix too) cannot add fields or lines to the log.
            "webhook %s status=%d reason=%r event=%r subscription=%r client=%r ms=%.1f",
            "accepted" if status < 400 else "rejected",
            status,
            reason,
            incoming.headers.get(runtime.wire.header_id, "")[:100],
            subscription[:100],
            incoming.remote_addr,
            (time.perf_counter() - started) * 1000,
        )
    if status >= 400:  # an accepted delivery is counted by the script that stores it
        runtime.counts.rejected(status, reason, time.perf_counter() - started)
    if status >= 400 and status != 503:  # a 503 is Redis failing: nowhere to keep it
        _remember(runtime, incoming, status, reason, subscription)
    body = json.dumps({"status": message} if status < 400 else {"error": message}).encode()
    return Answer(status, body, tuple(extra.items()))


def _remember(runtime: Runtime, incoming: Incoming, status: int, reason: str, subscription: str) -> None:
    """Keep the refusal for ``python -m receiver rejections``; a Redis error only loses the note."""
    try:
        rejection = rejections.describe_request(
            incoming.all_headers(), runtime.wire, status=status, reason=reason, subscription_id=subscription, body_bytes=incoming.content_length
        )
        rejections.remember(runtime.redis, rejection)
    except redis.RedisError as exc:
        log.debug("rejection not kept: %s", type(exc).__name__)


def _subscription_in(body: bytes) -> tuple[str, object]:
    """The body's subscriptionId (string or integer) and the parsed body; ("", None) when unreadable.

    Read before the signature only to choose the secrets; the signature covers the body, so a
    subscription named here binds as a header would."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return "", None
    if not isinstance(payload, dict):
        return "", payload
    return identifier(field(payload, "subscriptionId")) or "", payload


class _Refused(Exception):
    """A refusal the view answers as is: its status, the message for the sender, the reason logged."""

    def __init__(self, status: int, message: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.message, self.reason = status, message, reason


def handle(runtime: Runtime, incoming: Incoming, token: str | None = None) -> Answer:
    """One delivery, from the request's environ to the answer; no Flask needed (see ``receiver.webhook_route``)."""
    started = time.perf_counter()
    try:
        body = _admitted_body(runtime.settings, incoming, token)
        event_id, subscription_id, parsed = _verified(runtime, incoming, body)
        _check_payload(body, parsed, subscription_id)
        outcome = runtime.queue.enqueue(event_id, subscription_id, body, started)
    except _Refused as refusal:
        return _answer(runtime, incoming, refusal.status, refusal.message, refusal.reason, started)
    except VerificationError as exc:
        return _answer(runtime, incoming, 401, "signature verification failed", exc.reason, started)
    except redis.RedisError as exc:
        # Never 2xx unless queued (and on enough replicas): Aiwyn retries a 503 later, so nothing is lost.
        reason = f"redis: {exc}" if isinstance(exc, NotReplicated) else f"redis: {type(exc).__name__}"
        return _answer(runtime, incoming, 503, "queue unavailable", reason, started, **{"Retry-After": RETRY_AFTER_SECONDS})
    if outcome is Enqueued.DUPLICATE:
        return _answer(runtime, incoming, 200, "duplicate", "already queued or done", started)
    return _answer(runtime, incoming, 202, outcome.value, outcome.value, started)


@webhooks.post(WEBHOOK_PATH)
@webhooks.post(WEBHOOK_PATH + "/<token>")
def receive(token: str | None = None) -> Response:
    """The same endpoint through Flask, for a request the WSGI route in front did not take."""
    answer = handle(current_runtime(), Incoming(request.environ), token)
    return Response(answer.body, answer.status, dict(answer.headers), mimetype="application/json")


def _admitted_body(settings: Settings, incoming: Incoming, token: str | None) -> bytes:
    """The cheap refusals, before any secret is looked at: the callback token, size and content type."""
    # With AIWYN_RECEIVER_CALLBACK_TOKEN, only PUBLIC_URL/webhooks/aiwyn/<token> exists: a second
    # factor beside the signature. The token itself is never logged.
    if (settings.callback_token or token) and not hmac.compare_digest((token or "").encode(), (settings.callback_token or "").encode()):
        raise _Refused(404, "not found", "wrong or missing callback token")
    length = incoming.content_length
    if length is not None and length > settings.max_body_bytes:
        raise _Refused(413, "body too large", "content-length over the limit")
    if incoming.mimetype != "application/json":
        raise _Refused(415, "content type must be application/json", "wrong content type")
    try:
        return incoming.body(settings.max_body_bytes)
    except RequestEntityTooLarge:
        raise _Refused(413, "body too large", "body over the limit") from None


def _verified(runtime: Runtime, incoming: Incoming, body: bytes) -> tuple[str, str, object]:
    """The event id, the subscription and the body if it was parsed to find it; ``VerificationError`` otherwise."""
    wire = runtime.wire
    subscription_id = incoming.headers.get(wire.header_subscription, "") if wire.header_subscription else ""
    parsed: object = None
    signed = check_headers(incoming.headers, tolerance=runtime.settings.timestamp_tolerance, wire=wire)
    if len(signed.event_id) > MAX_EVENT_ID:
        raise VerificationError(f"{wire.header_id} is too long")
    if not subscription_id:
        # No header (or none configured): the body may name it, whatever the setting.
        subscription_id, parsed = _subscription_in(body)
        if not subscription_id:
            where = f"{wire.header_subscription} header" if wire.header_subscription else "header (none is configured)"
            raise VerificationError(f"no subscription named: missing {where} and no subscriptionId in the body")
        incoming.subscription = subscription_id
    runtime.secrets.verify(signed, body, subscription_id)
    return signed.event_id, subscription_id, parsed


def _check_payload(body: bytes, parsed: object, subscription_id: str) -> None:
    """A genuine body must still be a UTF-8 JSON object naming no other subscription."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise _Refused(400, "body is not UTF-8", "body is not UTF-8") from None
    try:
        payload = parsed if parsed is not None else json.loads(text)
    except (ValueError, RecursionError):  # ValueError: JSONDecodeError, and ints of over 4300 digits
        raise _Refused(400, "body is not valid JSON", "body is not JSON") from None
    if not isinstance(payload, dict):
        raise _Refused(400, "body must be a JSON object", "body is not a JSON object")
    # The body's own id may differ from the delivery's (a sender's message id): the ledger keys
    # on the header's and keeps the body. The subscription must agree, compared as strings.
    named = field(payload, "subscriptionId")
    if named is not None and identifier(named) != subscription_id:
        raise _Refused(400, "body subscriptionId differs from the delivery's subscription", "body subscriptionId mismatch")
