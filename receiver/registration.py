"""Registration on start: make each configured subscription exist at Aiwyn, pointing at us.

Many processes may start at once; a Redis lock with an expiry lets one of them work at a time,
and each re-reads the API's state after taking it, so the second finds what the first made
and creates nothing. A subscription is matched by its configured name; one that drifted
(another URL, types, operations, or inactive) is updated in place, keeping its id.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import redis

from config.subscriptions import SubscriptionSpec
from receiver.aiwyn_client import AiwynClient
from receiver.secret_store import SecretStore

log = logging.getLogger(__name__)

LOCK_KEY = "aiwyn:lock:registration"


@dataclass(frozen=True)
class Registered:
    """What registration did for one configured subscription."""

    name: str
    subscription_id: str
    action: str  # "created", "updated" or "unchanged"


def register_subscriptions(
    client: AiwynClient,
    redis_client: redis.Redis,
    specs: list[SubscriptionSpec],
    callback_url: str,
    store: SecretStore,
    *,
    lock_timeout: int = 120,
) -> list[Registered]:
    """Create or update the configured subscriptions, then share their secrets through Redis."""
    with redis_client.lock(LOCK_KEY, timeout=lock_timeout, blocking_timeout=lock_timeout + 30):
        existing = client.list_subscriptions(include_inactive=True)
        results = [_ensure(client, existing, spec, callback_url) for spec in specs]
        for result in results:
            store.store(result.subscription_id, client.signing_secrets(result.subscription_id))
    for result in results:
        log.info("subscription %s %s (%s)", result.name, result.action, result.subscription_id)
    return results


def _desired(spec: SubscriptionSpec, callback_url: str) -> dict[str, Any]:
    return {
        "name": spec.name,
        "url": callback_url,
        "entityTypes": list(spec.entity_types),
        "operations": list(spec.operations),
        "description": spec.description,
    }


def _differs(wanted: Any, actual: Any) -> bool:
    if isinstance(wanted, list):  # entity types and operations: order does not matter
        return sorted(wanted) != sorted(actual or [])
    return wanted != actual


def _ensure(client: AiwynClient, existing: list[dict[str, Any]], spec: SubscriptionSpec, callback_url: str) -> Registered:
    desired = _desired(spec, callback_url)
    named = [sub for sub in existing if sub.get("name") == spec.name]
    if not named:
        created = client.create_subscription(desired)
        return Registered(spec.name, created["id"], "created")
    # Prefer one already delivering to us, then any active one, then the newest.
    named.sort(key=lambda sub: (sub.get("url") == callback_url, bool(sub.get("active")), sub.get("createdAt") or ""), reverse=True)
    current = named[0]
    drift = {key: value for key, value in desired.items() if _differs(value, current.get(key))}
    if not current.get("active"):
        drift["active"] = True
    if not drift:
        return Registered(spec.name, current["id"], "unchanged")
    client.update_subscription(current["id"], drift)
    return Registered(spec.name, current["id"], "updated")
