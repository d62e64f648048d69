"""Registration on start: reconcile the configured subscriptions with what Aiwyn has.

``plan`` is a pure function of Aiwyn's state and the configuration: create the missing ones,
update in place (same id) the ones whose URL, entity types or operations drifted or that
were deactivated, deactivate the ones this service made but no longer configures, leave the
rest. Ours are recognised by the name prefix AND our callback URL, so a subscription of
another integration (or of another deployment of this service) is never touched.

Many processes may start at once; a Redis lock with an expiry lets one of them work at a
time, and each re-reads the API's state after taking it, so the second finds what the first
made and changes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import redis

from config.subscriptions import OWNED_PREFIX, SubscriptionSpec
from receiver.aiwyn_client import AiwynClient
from receiver.secret_store import SecretStore

log = logging.getLogger(__name__)

LOCK_KEY = "aiwyn:lock:registration"


class RegistrationError(Exception):
    """The configuration cannot be applied (e.g. an entity type Aiwyn does not know)."""


@dataclass(frozen=True)
class Step:
    """One action of a plan."""

    action: str  # "create", "update", "deactivate" or "unchanged"
    name: str
    subscription_id: str | None
    changes: dict[str, Any]

    def describe(self) -> str:
        what = ", ".join(f"{key}={value}" for key, value in self.changes.items() if key != "name")
        return f"{self.action:10} {self.name} {self.subscription_id or '(new)'}" + (f"  {what}" if what else "")


def desired(spec: SubscriptionSpec, callback_url: str) -> dict[str, Any]:
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


def is_ours(subscription: dict[str, Any], callback_url: str) -> bool:
    return str(subscription.get("name", "")).startswith(OWNED_PREFIX) and subscription.get("url") == callback_url


def check_entity_types(specs: list[SubscriptionSpec], catalog: list[dict[str, Any]], source: str) -> None:
    """Every configured entity type must be one Aiwyn offers (``*`` stands for all)."""
    known = {entry.get("name") for entry in catalog}
    for spec in specs:
        unknown = sorted(set(spec.entity_types) - known - {"*"})
        if unknown:
            raise RegistrationError(f"{source}: subscription {spec.name}: entity type(s) {', '.join(unknown)} unknown to Aiwyn (its catalog has {len(known)})")


def plan(existing: list[dict[str, Any]], specs: list[SubscriptionSpec], callback_url: str) -> list[Step]:
    """What to do so that Aiwyn holds exactly the configured subscriptions of ours."""
    steps = []
    matched: set[str] = set()
    for spec in specs:
        wanted = desired(spec, callback_url)
        named = [sub for sub in existing if sub.get("name") == spec.name]
        if not named:
            steps.append(Step("create", spec.name, None, wanted))
            continue
        # Prefer one already delivering to us, then an active one, then the newest.
        named.sort(key=lambda sub: (sub.get("url") == callback_url, bool(sub.get("active")), sub.get("createdAt") or ""), reverse=True)
        current = named[0]
        matched.add(current["id"])
        drift = {key: value for key, value in wanted.items() if _differs(value, current.get(key))}
        if not current.get("active"):
            drift["active"] = True
        steps.append(Step("update" if drift else "unchanged", spec.name, current["id"], drift))
    for sub in existing:
        if sub["id"] not in matched and sub.get("active") and is_ours(sub, callback_url):
            steps.append(Step("deactivate", sub["name"], sub["id"], {}))
    return steps


def apply(client: AiwynClient, steps: list[Step]) -> list[Step]:
    """Carry the plan out; returns the steps with the ids of created subscriptions."""
    done = []
    for step in steps:
        if step.action == "create":
            step = Step("create", step.name, client.create_subscription(step.changes)["id"], step.changes)
        elif step.action == "update":
            client.update_subscription(step.subscription_id, step.changes)
        elif step.action == "deactivate":
            client.deactivate_subscription(step.subscription_id)
        done.append(step)
        log.info("subscription %s", step.describe())
    return done


def register_subscriptions(
    client: AiwynClient,
    redis_client: redis.Redis,
    specs: list[SubscriptionSpec],
    callback_url: str,
    store: SecretStore,
    *,
    source: str = "the subscriptions file",
    dry_run: bool = False,
    lock_timeout: int = 120,
) -> list[Step]:
    """Reconcile under the lock, then share the active subscriptions' secrets through Redis."""
    check_entity_types(specs, client.catalog(), source)
    with redis_client.lock(LOCK_KEY, timeout=lock_timeout, blocking_timeout=lock_timeout + 30):
        steps = plan(client.list_subscriptions(include_inactive=True), specs, callback_url)
        if dry_run:
            return steps
        steps = apply(client, steps)
        for step in steps:
            if step.action != "deactivate":
                store.store(step.subscription_id, client.signing_secrets(step.subscription_id))
    return steps


def deactivate_ours(client: AiwynClient, callback_url: str) -> list[Step]:
    """The uninstall: stop every delivery of ours (a deliberate command, never part of a restart)."""
    steps = [Step("deactivate", sub["name"], sub["id"], {}) for sub in client.list_subscriptions(include_inactive=False) if is_ours(sub, callback_url)]
    return apply(client, steps)
