"""Bearer tokens: opaque random strings kept only as SHA-256 digests, each with its expiry."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time


class TokenIssuer:
    """Issues bearer tokens that expire `ttl` seconds after issue."""

    def __init__(self, ttl: float) -> None:
        self._ttl = ttl
        self._lock = threading.Lock()
        self._expiry: dict[bytes, float] = {}

    @property
    def ttl(self) -> float:
        """Seconds a token lives."""
        return self._ttl

    def issue(self) -> str:
        """A new token."""
        token = secrets.token_urlsafe(32)
        now = time.monotonic()
        with self._lock:
            # Expired tokens are kept an hour longer so a late caller hears "expired", not "unknown".
            self._expiry = {k: t for k, t in self._expiry.items() if t + 3600 > now}
            self._expiry[_digest(token)] = now + self._ttl
        return token

    def check(self, token: str) -> str | None:
        """None if `token` is valid now, else why not (`unknown`, `expired`)."""
        with self._lock:
            expires = self._expiry.get(_digest(token))
        if expires is None:
            return "unknown"
        return "expired" if time.monotonic() >= expires else None


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()
