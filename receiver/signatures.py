"""Standard Webhooks verification, ``v1`` and ``v1a``: usable on its own, with no web framework in it.

A delivery is genuine when any signature in ``webhook-signature`` matches, under any current
secret of its subscription, the bytes ``{webhook-id}.{webhook-timestamp}.{body}``, and its
timestamp is within the tolerance of our clock in either direction (a replayed old delivery
and one signed "in the future" are both refused). Every parse failure becomes a
``VerificationError`` with a reason; nothing else escapes, so no input can make a caller 500.

- ``v1``: HMAC-SHA256; the secret is ``whsec_`` + base64 of the key (24 bytes at least: an empty
  or short key is one anyone can guess). Compared in constant time.
- ``v1a``: Ed25519; the secret is ``whpk_`` + base64 of the sender's 32-byte public key, never
  one of small order (such a key verifies signatures anyone can make).
Base64 without its ``=`` padding is accepted, as the Standard Webhooks reference does.
Signatures of other schemes, and undecodable ones, are skipped: another one may still match.
A secret that is not a usable key is skipped too; with none usable left, the reason is given.

    from receiver.signatures import VerificationError, verify

    try:
        verify(request_headers, raw_body, ["whsec_...", "whpk_..."], tolerance=300)
    except VerificationError as exc:
        print("refused:", exc.reason)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from config.wire import DEFAULT_WIRE, ED25519, HMAC, MILLISECONDS_DIGITS, SECONDS_MAX_DIGITS, SECRET_PREFIXES, Wire

SECRET_PREFIX = SECRET_PREFIXES[HMAC]
PUBLIC_KEY_PREFIX = SECRET_PREFIXES[ED25519]
SCHEMES = (HMAC, ED25519)
NO_MATCH = "no signature matches a current secret"
NO_SECRET = "no signing secret is known for this subscription"
MIN_HMAC_KEY_BYTES = 24  # the contract's shortest v1 secret
MAX_SIGNATURES = 16  # Aiwyn sends one per active secret; more is junk we refuse to loop over.


class VerificationError(Exception):
    """The delivery is not proven genuine; ``reason`` says which check failed (safe to log)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NoMatchingSecret(VerificationError):
    """No current secret proves the delivery (none matched, or none is known): a rotated secret may."""


def decode_secret(secret: str) -> bytes:
    """The key inside a ``whsec_`` secret (HMAC key) or a ``whpk_`` one (Ed25519 public key)."""
    for prefix in (SECRET_PREFIX, PUBLIC_KEY_PREFIX):
        if secret.startswith(prefix):
            secret = secret[len(prefix) :]
            break
    try:
        return base64.b64decode(secret + "=" * (-len(secret) % 4), validate=True)  # padding is optional
    except (binascii.Error, ValueError) as exc:
        raise VerificationError("a signing secret is not valid base64") from exc


# Ed25519 over GF(2^255 - 19), only to tell a small-order public key (RFC 8032 5.1.3 decoding).
_P = 2**255 - 19
_D = -121665 * pow(121666, _P - 2, _P) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)


def _ed25519_point(key: bytes) -> tuple[int, int] | None:
    y = int.from_bytes(key, "little") & ((1 << 255) - 1)
    if y >= _P:
        return None  # a non-canonical encoding
    x2 = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P) % _P
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P:
        x = x * _SQRT_M1 % _P
    if (x * x - x2) % _P:
        return None
    if x & 1 != key[31] >> 7:
        if x == 0:
            return None
        x = _P - x
    return x, y


def _double(point: tuple[int, int]) -> tuple[int, int]:
    x, y = point
    k = _D * x * x * y * y % _P
    return (2 * x * y * pow(1 + k, _P - 2, _P) % _P, (y * y + x * x) * pow(1 - k, _P - 2, _P) % _P)


def key_problem(scheme: str, key: bytes) -> str | None:
    """Why this decoded key must not verify anything, or None: a short HMAC key, or an Ed25519
    public key that is not 32 bytes, not a canonical point, or of small order ([8]P is the identity)."""
    if scheme == HMAC:
        return f"a v1 secret is shorter than {MIN_HMAC_KEY_BYTES} bytes" if len(key) < MIN_HMAC_KEY_BYTES else None
    if len(key) != 32:
        return "a v1a public key is not 32 bytes"
    point = _ed25519_point(key)
    if point is None:
        return "a v1a public key is not a canonical Ed25519 point"
    for _ in range(3):
        point = _double(point)
    return "a v1a public key is of small order" if point == (0, 1) else None


def scheme_of(secret: str) -> str:
    """``v1a`` for a ``whpk_`` public key, ``v1`` otherwise (a bare base64 key is taken as ``v1``)."""
    return "v1a" if secret.startswith(PUBLIC_KEY_PREFIX) else "v1"


def sign(key: bytes, event_id: str, timestamp: int, body: bytes) -> str:
    """The ``v1,<base64>`` signature of one delivery, as Aiwyn computes it."""
    digest = hmac.new(key, _signed_content(event_id, timestamp, body), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def sign_v1a(private_key: bytes, event_id: str, timestamp: int, body: bytes) -> str:
    """The ``v1a,<base64>`` signature of one delivery with a raw 32-byte Ed25519 private key (for tests and senders)."""
    signature = Ed25519PrivateKey.from_private_bytes(private_key).sign(_signed_content(event_id, timestamp, body))
    return "v1a," + base64.b64encode(signature).decode("ascii")


def _signed_content(event_id: str, timestamp: int, body: bytes) -> bytes:
    return f"{event_id}.{timestamp}.".encode() + body


def parse_timestamp(raw: str | None, now: float, tolerance: int, name: str = "webhook-timestamp") -> int:
    """The timestamp header as sent (it is what was signed), refused when absent, malformed or
    out of tolerance. Unix seconds; 13 digits are milliseconds, held to the same window."""
    if not raw:
        raise VerificationError(f"missing {name} header")
    if not (raw.isascii() and raw.isdigit() and (len(raw) <= SECONDS_MAX_DIGITS or len(raw) == MILLISECONDS_DIGITS)):
        raise VerificationError(f"{name} is not a Unix time in seconds or milliseconds")
    timestamp = int(raw)
    seconds = timestamp / 1000 if len(raw) == MILLISECONDS_DIGITS else timestamp
    if seconds < now - tolerance:
        raise VerificationError(f"{name} is too old")
    if seconds > now + tolerance:
        raise VerificationError(f"{name} is too far in the future")
    return timestamp


def _signatures(header: str, name: str = "webhook-signature") -> list[tuple[str, bytes]]:
    candidates = header.split(" ")
    if len(candidates) > MAX_SIGNATURES:
        raise VerificationError(f"{name} lists too many signatures")
    found = []
    for candidate in candidates:
        version, _, encoded = candidate.partition(",")
        if version not in SCHEMES or not encoded:
            continue  # another scheme, or junk: only a matching known signature can pass
        try:
            found.append((version, base64.b64decode(encoded, validate=True)))
        except (binascii.Error, ValueError):
            continue
    return found


@dataclass(frozen=True)
class SignedHeaders:
    """The parts of a delivery's headers that a signature check needs, already validated."""

    event_id: str
    timestamp: int
    signatures: tuple[tuple[str, bytes], ...]  # (scheme, decoded signature)


def check_headers(headers: Mapping[str, str], *, tolerance: int = 300, now: float | None = None, wire: Wire = DEFAULT_WIRE) -> SignedHeaders:
    """The cheap half of verification: headers present, well-formed, and fresh; no secret needed.

    ``wire`` names the headers (``webhook-*`` by default, ``svix-*`` in that profile)."""
    event_id = headers.get(wire.header_id)
    if not event_id:
        raise VerificationError(f"missing {wire.header_id} header")
    header = headers.get(wire.header_signature)
    if not header:
        raise VerificationError(f"missing {wire.header_signature} header")
    timestamp = parse_timestamp(headers.get(wire.header_timestamp), time.time() if now is None else now, tolerance, wire.header_timestamp)
    signatures = _signatures(header, wire.header_signature)
    if not signatures:
        raise VerificationError(f"{wire.header_signature} has no well-formed v1 or v1a signature")
    return SignedHeaders(event_id, timestamp, tuple(signatures))


def usable_keys(secrets: Iterable[str]) -> list[tuple[str, bytes]]:
    """(scheme, key) of each secret that is a usable key; ``VerificationError`` with the reason when none is."""
    keys, refused = [], None
    for secret in secrets:
        scheme = scheme_of(secret)
        try:
            key = decode_secret(secret)
        except VerificationError as exc:
            refused = refused or exc.reason
            continue
        problem = key_problem(scheme, key)
        if problem:
            refused = refused or problem
            continue
        keys.append((scheme, key))
    if not keys:
        raise VerificationError(refused) if refused else NoMatchingSecret(NO_SECRET)
    return keys


def check_signature(signed: SignedHeaders, body: bytes, secrets: Iterable[str]) -> None:
    """The costly half: one listed signature must match one usable secret of its scheme."""
    keys = usable_keys(secrets)
    content = _signed_content(signed.event_id, signed.timestamp, body)
    matched = False
    for scheme, key in keys:
        candidates = [signature for version, signature in signed.signatures if version == scheme]
        if scheme == "v1":
            expected = hmac.new(key, content, hashlib.sha256).digest()
            for signature in candidates:
                # Keep comparing after a match so timing does not tell which secret matched.
                matched |= hmac.compare_digest(expected, signature)
        elif candidates:
            matched |= _ed25519_matches(key, candidates, content)
    if not matched:
        raise NoMatchingSecret(NO_MATCH)


def _ed25519_matches(public_key: bytes, signatures: list[bytes], content: bytes) -> bool:
    try:
        verifier = Ed25519PublicKey.from_public_bytes(public_key)
    except ValueError as exc:
        raise VerificationError("a v1a public key is not 32 bytes") from exc
    for signature in signatures:
        try:
            verifier.verify(signature, content)
            return True
        except InvalidSignature:
            continue
    return False


def verify(
    headers: Mapping[str, str],
    body: bytes,
    secrets: Iterable[str],
    *,
    tolerance: int = 300,
    now: float | None = None,
    wire: Wire = DEFAULT_WIRE,
) -> None:
    """Raise ``VerificationError`` unless the delivery is fresh and signed by one of ``secrets``.

    ``headers`` is any case-insensitive mapping, or a plain dict with lower-case names.
    """
    check_signature(check_headers(headers, tolerance=tolerance, now=now, wire=wire), body, secrets)
