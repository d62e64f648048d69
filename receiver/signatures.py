"""Standard Webhooks ``v1`` verification: usable on its own, with no web framework in it.

A delivery is genuine when any signature in ``webhook-signature`` matches, under any current
secret of its subscription, the bytes ``{webhook-id}.{webhook-timestamp}.{body}``, and its
timestamp is within the tolerance of our clock in either direction (a replayed old delivery
and one signed "in the future" are both refused). Every parse failure becomes a
``VerificationError`` with a reason; nothing else escapes, so no input can make a caller 500.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

SECRET_PREFIX = "whsec_"
NO_MATCH = "no signature matches a current secret"
MAX_SIGNATURES = 16  # Aiwyn sends one per active secret; more is junk we refuse to loop over.


class VerificationError(Exception):
    """The delivery is not proven genuine; ``reason`` says which check failed (safe to log)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def decode_secret(secret: str) -> bytes:
    """The HMAC key inside a ``whsec_`` secret."""
    encoded = secret[len(SECRET_PREFIX) :] if secret.startswith(SECRET_PREFIX) else secret
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise VerificationError("a signing secret is not valid base64") from exc


def sign(key: bytes, event_id: str, timestamp: int, body: bytes) -> str:
    """The ``v1,<base64>`` signature of one delivery, as Aiwyn computes it."""
    digest = hmac.new(key, _signed_content(event_id, timestamp, body), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def _signed_content(event_id: str, timestamp: int, body: bytes) -> bytes:
    return f"{event_id}.{timestamp}.".encode() + body


def parse_timestamp(raw: str | None, now: float, tolerance: int) -> int:
    """The ``webhook-timestamp`` as an int, refused when absent, malformed or out of tolerance."""
    if not raw:
        raise VerificationError("missing webhook-timestamp header")
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 12):
        raise VerificationError("webhook-timestamp is not a Unix time in seconds")
    timestamp = int(raw)
    if timestamp < now - tolerance:
        raise VerificationError("webhook-timestamp is too old")
    if timestamp > now + tolerance:
        raise VerificationError("webhook-timestamp is too far in the future")
    return timestamp


def _v1_signatures(header: str) -> list[bytes]:
    candidates = header.split(" ")
    if len(candidates) > MAX_SIGNATURES:
        raise VerificationError("webhook-signature lists too many signatures")
    found = []
    for candidate in candidates:
        version, _, encoded = candidate.partition(",")
        if version != "v1" or not encoded:
            continue  # another scheme, or junk: only a matching v1 signature can pass
        try:
            found.append(base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError):
            continue
    return found


@dataclass(frozen=True)
class SignedHeaders:
    """The parts of a delivery's headers that a signature check needs, already validated."""

    event_id: str
    timestamp: int
    signatures: tuple[bytes, ...]


def check_headers(headers: Mapping[str, str], *, tolerance: int = 300, now: float | None = None) -> SignedHeaders:
    """The cheap half of verification: headers present, well-formed, and fresh; no secret needed."""
    event_id = headers.get("webhook-id")
    if not event_id:
        raise VerificationError("missing webhook-id header")
    header = headers.get("webhook-signature")
    if not header:
        raise VerificationError("missing webhook-signature header")
    timestamp = parse_timestamp(headers.get("webhook-timestamp"), time.time() if now is None else now, tolerance)
    signatures = _v1_signatures(header)
    if not signatures:
        raise VerificationError("webhook-signature has no v1 signature")
    return SignedHeaders(event_id, timestamp, tuple(signatures))


def check_signature(signed: SignedHeaders, body: bytes, secrets: Iterable[str]) -> None:
    """The costly half: one listed signature must match one secret, compared in constant time."""
    keys = [decode_secret(secret) for secret in secrets]
    if not keys:
        raise VerificationError("no signing secret is known for this subscription")
    content = _signed_content(signed.event_id, signed.timestamp, body)
    matched = False
    for key in keys:
        expected = hmac.new(key, content, hashlib.sha256).digest()
        for signature in signed.signatures:
            # Keep comparing after a match so timing does not tell which secret matched.
            matched |= hmac.compare_digest(expected, signature)
    if not matched:
        raise VerificationError(NO_MATCH)


def verify(
    headers: Mapping[str, str],
    body: bytes,
    secrets: Iterable[str],
    *,
    tolerance: int = 300,
    now: float | None = None,
) -> None:
    """Raise ``VerificationError`` unless the delivery is fresh and signed by one of ``secrets``.

    ``headers`` is any case-insensitive mapping, or a plain dict with lower-case names.
    """
    check_signature(check_headers(headers, tolerance=tolerance, now=now), body, secrets)
