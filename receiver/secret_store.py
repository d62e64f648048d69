"""Signing secrets of our subscriptions: in memory for the request path, in Redis for sharing.

The steady state makes no API call and no Redis call: secrets are served from memory. Only a
miss (unknown subscription id) or a signature that matches no known secret (a rotation) looks
again, first in Redis (another process may have refreshed it), then at Aiwyn; the API call
is throttled to once per interval across all processes through a Redis key, so a flood of
forged requests can never make us hammer Aiwyn. It runs in a background thread, never on the
request path: the request that needs it is answered 401 at once (Aiwyn retries), so a slow
Aiwyn cannot hold requests, nor a forged flood keep them waiting. Misses reload all of Redis at most once a
second per process; a signature that matches nothing reads only its subscription's entry (one
HGET), so neither flood costs Redis or the CPU much.

Secrets rest in Redis encrypted with Fernet (``AIWYN_RECEIVER_SECRETS_KEY``): a copy of Redis
(a backup, a replica, a ``MONITOR``) does not give away the keys that make deliveries genuine.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import redis
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from aiwyn_api.client import AiwynAPIError, AiwynClient
from config import Settings
from config.metrics_contract import SECRET_FETCHES_KEY
from config.wire import SECRET_PREFIXES, scheme_for_algorithm
from receiver.signatures import NoMatchingSecret, SignedHeaders, VerificationError, check_signature, decode_secret, key_problem

log = logging.getLogger(__name__)

SECRETS_KEY = "aiwyn:secrets"  # hash: subscription id -> Fernet token of a JSON list of {"secret", "algorithm", "expiresAt"}
_THROTTLE_KEY = "aiwyn:secrets:refreshed:"  # + subscription id, or "*" for the whole list
_REDIS_RELOAD_SECONDS = 1.0
UNKNOWN_SUBSCRIPTION = "unknown subscription"


def cipher_for(keys: tuple[str, ...]) -> MultiFernet:
    """Encrypt with the first key, decrypt with any: list a new key first to rotate the key."""
    return MultiFernet([Fernet(key) for key in keys])


class SecretStore:
    """Where the receiver gets the current secrets of a subscription."""

    def __init__(
        self,
        redis_client: redis.Redis,
        client_factory: Callable[[], AiwynClient],
        callback_url: str | None,
        refresh_interval: int,
        cipher: MultiFernet,
    ) -> None:
        self._redis = redis_client
        self._cipher = cipher
        self._reloaded_at = float("-inf")
        self._client_factory = client_factory
        self._client: AiwynClient | None = None
        self._callback_url = callback_url
        self._interval = refresh_interval
        self._lock = threading.Lock()
        self._miss_lock = threading.Lock()
        self._memory: dict[str, list[dict[str, Any]]] = {}
        self._background: threading.Thread | None = None
        self._background_lock = threading.Lock()

    @classmethod
    def for_settings(cls, settings: Settings, redis_client: redis.Redis, client_factory: Callable[[], AiwynClient]) -> SecretStore:
        """The store of a web or release process; raises ``SettingsError`` without a secrets key or PUBLIC_URL
        (without it, every active subscription of the Aiwyn account would be trusted as ours)."""
        return cls(
            redis_client,
            client_factory,
            settings.callback_url,
            settings.secrets_refresh_interval,
            cipher_for(settings.require_secrets_key()),
        )

    def __repr__(self) -> str:
        return f"SecretStore({len(self._memory)} subscription(s))"

    @property
    def loaded(self) -> bool:
        """True once the secrets of at least one subscription are known."""
        return bool(self._memory)

    def secrets_for(self, subscription_id: str) -> list[str] | None:
        """Current secrets of a subscription, or ``None`` when it is not one of ours."""
        entries = self._memory.get(subscription_id)
        if entries is None:
            # One Redis reload at a time per process; Aiwyn is asked in the background, if at all.
            with self._miss_lock:
                entries = self._memory.get(subscription_id)
                if entries is None and time.monotonic() - self._reloaded_at > _REDIS_RELOAD_SECONDS:
                    self.reload_from_redis()
                    entries = self._memory.get(subscription_id)
            if entries is None:
                self._refresh_later("*", self.refresh_all)
        return None if entries is None else _current(entries)

    def verify(self, signed: SignedHeaders, body: bytes, subscription_id: str) -> None:
        """Check the signature under the subscription's current secrets; ``VerificationError`` if none proves it.

        When none matched, the secrets may have been rotated: look once more (Redis now, Aiwyn in
        the background, at most once per interval) and check again."""
        secrets = self.secrets_for(subscription_id)
        if secrets is None:
            raise VerificationError(UNKNOWN_SUBSCRIPTION)
        try:
            check_signature(signed, body, secrets)
        except NoMatchingSecret:
            fresh = self.refreshed_secrets(subscription_id, secrets)
            if fresh is None:
                raise
            check_signature(signed, body, fresh)

    def refreshed_secrets(self, subscription_id: str, tried: list[str]) -> list[str] | None:
        """After no secret matched: newer secrets from Redis, else ``None`` (and a throttled refresh from Aiwyn, in the background)."""
        self._reload_one(subscription_id)
        entries = self._memory.get(subscription_id)
        if entries is not None and set(_current(entries)) != set(tried):
            return _current(entries)
        self._refresh_later(subscription_id, lambda: self._fetch_one(subscription_id))
        return None

    def _fetch_one(self, subscription_id: str) -> None:
        try:
            fetched = self._api().signing_secrets(subscription_id)
        except AiwynAPIError as exc:
            log.warning("secrets refresh for %r failed: %s %s", subscription_id[:100], exc.status, exc.code)
            self._count_fetch("error")
            return
        self._count_fetch("ok")
        self._store({subscription_id: fetched})

    def _refresh_later(self, scope: str, work: Callable[[], object]) -> None:
        """Start ``work`` in a thread unless one is running, at most once per interval per scope across processes."""
        with self._background_lock:
            if self._background is not None and self._background.is_alive():
                return
            if not self._may_call_api(scope):
                return
            self._background = threading.Thread(target=self._run, args=(work,), name="secrets-refresh", daemon=True)
            self._background.start()

    @staticmethod
    def _run(work: Callable[[], object]) -> None:
        try:
            work()
        except redis.RedisError as exc:
            log.warning("secrets refresh failed: Redis %s", type(exc).__name__)
        except Exception:  # a bug must not die unseen in a thread
            log.exception("secrets refresh failed")

    def settle(self, timeout: float = 10.0) -> None:
        """Wait for a refresh in flight (for commands and tests; requests never wait)."""
        background = self._background
        if background is not None:
            background.join(timeout)

    def reload_from_redis(self) -> None:
        raw = self._redis.hgetall(SECRETS_KEY)
        self._reloaded_at = time.monotonic()
        loaded = {key.decode(): entries for key, token in raw.items() if (entries := self._decrypt(key.decode(), token)) is not None}
        with self._lock:
            # Merge, not replace: a Redis restarted empty must not make us forget what we know.
            self._memory = {**self._memory, **loaded}

    def _reload_one(self, subscription_id: str) -> None:
        token = self._redis.hget(SECRETS_KEY, subscription_id)
        entries = None if token is None else self._decrypt(subscription_id, token)
        if entries is not None:
            with self._lock:
                self._memory = {**self._memory, subscription_id: entries}

    def _decrypt(self, subscription_id: str, token: bytes) -> list[dict[str, Any]] | None:
        try:
            return json.loads(self._cipher.decrypt(token))
        except InvalidToken:
            # Written under another key (or not by us): ignored, and refreshed from Aiwyn on need.
            log.warning("cached secrets of %r cannot be decrypted with AIWYN_RECEIVER_SECRETS_KEY; ignored", subscription_id[:100])
            return None

    def refresh_all(self) -> int:
        """Learn our active subscriptions, fetch the secrets of new ones, forget the rest. Returns how many are ours.

        Known subscriptions keep their secrets: a rotation is noticed by a signature that does
        not match (``refreshed_secrets``), so a list refresh never costs a secret call each.
        Subscriptions not delivering to us any more stop verifying in this process; those
        deleted or deactivated are dropped from Redis too, for every process. Only those: a
        process with an outdated ``PUBLIC_URL`` must not wipe the secrets the others use.
        """
        try:
            client = self._api()
            active = [sub for sub in client.list_subscriptions(include_inactive=False) if sub.get("active")]
            ours = {sub["id"] for sub in active if self._callback_url is None or sub.get("url") == self._callback_url}
            fetched = {sub_id: client.signing_secrets(sub_id) for sub_id in ours if sub_id not in self._memory}
        except AiwynAPIError as exc:
            log.warning("secrets refresh failed: %s %s", exc.status, exc.code)
            self._count_fetch("error")
            return 0
        self._count_fetch("ok")
        self._store(fetched)
        # Only ids this process knew before the list call: one that registration stores meanwhile is kept.
        dead = set(self._memory) - {sub["id"] for sub in active}
        if dead:
            self._redis.hdel(SECRETS_KEY, *dead)
        with self._lock:
            self._memory = {sub_id: entries for sub_id, entries in self._memory.items() if sub_id in ours}
        return len(ours)

    def store(self, subscription_id: str, secrets: list[dict[str, Any]]) -> None:
        """Keep secrets fetched elsewhere (by registration) for every process."""
        self._store({subscription_id: secrets})

    def _store(self, fetched: dict[str, list[dict[str, Any]]]) -> None:
        if not fetched:
            return
        entries = {sub_id: [e for s in secrets if (e := canonical(sub_id, s)) is not None] for sub_id, secrets in fetched.items()}
        tokens = {k: self._cipher.encrypt(json.dumps(v).encode()) for k, v in entries.items()}
        self._redis.hset(SECRETS_KEY, mapping=tokens)
        with self._lock:
            self._memory = {**self._memory, **entries}

    def _count_fetch(self, outcome: str) -> None:
        """For /metrics (``aiwyn_secret_fetches_total``); a Redis error loses only the count."""
        try:
            self._redis.hincrby(SECRET_FETCHES_KEY, outcome, 1)
        except redis.RedisError:
            pass

    def _may_call_api(self, scope: str) -> bool:
        return bool(self._redis.set(_THROTTLE_KEY + scope, "1", nx=True, ex=self._interval))

    def _api(self) -> AiwynClient:
        with self._lock:
            if self._client is None:
                self._client = self._client_factory()
            return self._client


def canonical(subscription_id: str, entry: dict[str, Any]) -> dict[str, Any] | None:
    """A secret as the verifier takes it: its scheme from its ``algorithm`` (``v1``/``hmac-sha256``,
    ``v1a``/``ed25519``; absent means ``v1``), never guessed from the key, and the scheme's prefix
    added when Aiwyn sent the bare key. A key whose prefix contradicts its algorithm, or an unknown
    algorithm, is refused and logged (without the key): verifying with it could only fail."""
    label = entry.get("algorithm") or "v1"
    scheme = scheme_for_algorithm(label)
    secret = str(entry.get("secret") or "")
    if scheme is None:
        log.warning("a signing secret of %r has the unknown algorithm %r: ignored", subscription_id[:100], str(label)[:40])
        return None
    others = [prefix for other, prefix in SECRET_PREFIXES.items() if other != scheme]
    if any(secret.startswith(prefix) for prefix in others):
        log.error("a signing secret of %r is labelled %r but its key is of another scheme: refused", subscription_id[:100], str(label)[:40])
        return None
    if not secret.startswith(SECRET_PREFIXES[scheme]):
        secret = SECRET_PREFIXES[scheme] + secret
    try:
        problem = key_problem(scheme, decode_secret(secret))
    except VerificationError as exc:
        problem = exc.reason
    if problem:
        log.error("a signing secret of %r is refused: %s", subscription_id[:100], problem)
        return None
    expires = entry.get("expiresAt")
    if expires:
        parsed = _parse_time(expires)
        if parsed is None:
            log.warning("a signing secret of %r has an expiresAt that is not a time (%r): ignored", subscription_id[:100], str(expires)[:40])
            return None
        expires = parsed.isoformat()
    return {"secret": secret, "algorithm": scheme, "expiresAt": expires or None}


def _current(entries: list[dict[str, Any]]) -> list[str]:
    """The unexpired secrets; one whose expiry cannot be read (cached by an older version) is skipped with a warning."""
    now = datetime.now(UTC)
    current = []
    for entry in entries:
        expires = entry.get("expiresAt")
        parsed = _parse_time(expires) if expires else None
        if expires and parsed is None:
            log.warning("a cached signing secret has an expiresAt that is not a time: skipped")
            continue
        if parsed is None or parsed > now:
            current.append(entry["secret"])
    return current


def _parse_time(value: object) -> datetime | None:
    """An ISO 8601 time, aware; one without a zone is read as UTC. None when it is not a time."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed
