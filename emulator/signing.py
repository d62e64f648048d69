"""Standard Webhooks signing (contract §4), written apart from the receiver's verifier.

The signed content is `{webhook-id}.{webhook-timestamp}.{raw body}`.
- `v1`: HMAC-SHA256 keyed with the base64-decoded part of a `whsec_` secret.
- `v1a`: Ed25519; the subscription's secret as listed is `whpk_` + base64 of the public key,
  and only the emulator holds the private key.
The header lists one `<version>,<base64>` per current secret, space-separated.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Iterable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

SECRET_PREFIX = "whsec_"
PUBLIC_KEY_PREFIX = "whpk_"
SECRET_BYTES = 32
ALGORITHMS = ("v1", "v1a")


def new_secret(algorithm: str = "v1") -> tuple[str, bytes | None]:
    """A fresh secret as listed by the API, and the private key that signs with it (`v1a` only)."""
    if algorithm == "v1a":
        private = Ed25519PrivateKey.generate()
        public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        raw_private = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return PUBLIC_KEY_PREFIX + base64.b64encode(public).decode("ascii"), raw_private
    return SECRET_PREFIX + base64.b64encode(os.urandom(SECRET_BYTES)).decode("ascii"), None


def _key(secret: str) -> bytes:
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("a v1 secret starts with whsec_")
    return base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)


def _content(message_id: str, timestamp: int, body: bytes) -> bytes:
    return f"{message_id}.{timestamp}.".encode() + body


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """One `v1,<base64 HMAC-SHA256>` signature of the delivery."""
    digest = hmac.new(_key(secret), _content(message_id, timestamp, body), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def sign_v1a(private_key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """One `v1a,<base64 Ed25519>` signature of the delivery."""
    signature = Ed25519PrivateKey.from_private_bytes(private_key).sign(_content(message_id, timestamp, body))
    return "v1a," + base64.b64encode(signature).decode("ascii")


def signature_header(secrets: Iterable[tuple[str, bytes | None]], message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value from (listed secret, private key or None) pairs."""
    return " ".join(
        sign_v1a(private, message_id, timestamp, body) if private is not None else sign(value, message_id, timestamp, body)
        for value, private in secrets
    )
