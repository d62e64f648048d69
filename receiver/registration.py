"""Registration on start: reconcile the configured subscriptions with what Aiwyn has.

``plan`` is a pure function of Aiwyn's state, the configuration and who we are (``Owner``):
create the missing ones, update in place (same id) the ones whose URL, entity types,
operations or description drifted or that were deactivated, deactivate the ones this
deployment made but no longer configures, leave the rest.

Ours are told by a mark at the end of the description, ``managed by aiwyn-receiver
(instance <AIWYN_RECEIVER_INSTANCE>)``, written on every create and update: a name cannot
tell two deployments sharing one Aiwyn account apart (both default to the same names), and
our URL changes with PUBLIC_URL. One made before the mark existed is ours if it is unmarked,
named with our prefix and delivers to our callback URL; the next update marks it. A
subscription marked for another instance is never touched, whatever its name.

Many processes may start at once; a Redis lock lets one of them work at a time, and each
re-reads the API's state after taking it, so the second finds what the first made and
changes nothing. The lock expires after the longest one API call can take (from the HTTP
settings) and is renewed before every call, so it outlives a slow holder but not a dead one.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from aiwyn_api.client import AiwynClient
from config.logs import redact
from config.states import StepAction
from config.subscriptions import OWNED_PREFIX, SubscriptionSpec
from receiver.secret_store import SecretStore

log = logging.getLogger(__name__)

LOCK_KEY = "aiwyn:lock:registration"
_MARK = re.compile(r"managed by aiwyn-receiver \(instance ([^()]+)\)$")


class RegistrationError(Exception):
    """The configuration cannot be applied (e.g. an entity type Aiwyn does not know)."""


@dataclass(frozen=True)
class Step:
    """One action of a plan."""

    action: StepAction
    name: str
    subscription_id: str | None
    changes: dict[str, Any]

    def describe(self) -> str:
        """One line for the log and the command's output; the callback token shows as ``[token]``."""
        what = ", ".join(f"{key}={value}" for key, value in self.changes.items() if key != "name")
        return redact(f"{self.action:10} {self.name} {self.subscription_id or '(new)'}" + (f"  {what}" if what else ""))


@dataclass(frozen=True)
class Owner:
    """This deployment, as Aiwyn's subscriptions can show it: its instance name and callback URL."""

    instance: str
    callback_url: str

    @property
    def mark(self) -> str:
        return f"managed by aiwyn-receiver (instance {self.instance})"

    def description(self, spec: SubscriptionSpec) -> str:
        return f"{spec.description.rstrip()}; {self.mark}" if spec.description else self.mark

    def marked(self, subscription: dict[str, Any]) -> bool:
        return _instance_of(subscription) == self.instance

    def owns(self, subscription: dict[str, Any]) -> bool:
        """Ours: our mark, or (made before the mark) no mark at all, our name prefix and our callback URL."""
        if _instance_of(subscription) is not None:
            return self.marked(subscription)
        return str(subscription.get("name", "")).startswith(OWNED_PREFIX) and subscription.get("url") == self.callback_url


def _instance_of(subscription: dict[str, Any]) -> str | None:
    found = _MARK.search(subscription.get("description") or "")
    return found.group(1) if found else None


def desired(spec: SubscriptionSpec, owner: Owner) -> dict[str, Any]:
    return {
        "name": spec.name,
        "url": owner.callback_url,
        "entityTypes": list(spec.entity_types),
        "operations": list(spec.operations),
        "description": owner.description(spec),
    }


def _differs(wanted: Any, actual: Any) -> bool:
    if isinstance(wanted, list):  # entity types and operations: order does not matter
        return sorted(wanted) != sorted(actual or [])
    return wanted != actual


def check_catalog(specs: list[SubscriptionSpec], catalog: list[dict[str, Any]], source: str) -> None:
    """Every configured entity type must be one Aiwyn offers (``*`` stands for all), with every configured operation."""
    offered = {entry.get("name"): entry.get("operations") for entry in catalog}
    for spec in specs:
        unknown = sorted(set(spec.entity_types) - set(offered) - {"*"})
        if unknown:
            raise RegistrationError(f"{source}: subscription {spec.name}: entity type(s) {', '.join(unknown)} unknown to Aiwyn (its catalog has {len(offered)})")
        for entity_type in spec.entity_types:
            operations = offered.get(entity_type)
            if operations is None:  # "*", or a catalog entry that does not list its operations
                continue
            for operation in spec.operations:
                if operation not in operations:
                    raise RegistrationError(
                        f"{source}: subscription {spec.name}: operation {operation} is not offered for entity type {entity_type}"
                        f" (Aiwyn's catalog offers {', '.join(operations) or 'none'})"
                    )


def plan(existing: list[dict[str, Any]], specs: list[SubscriptionSpec], owner: Owner) -> list[Step]:
    """What to do so that Aiwyn holds exactly the configured subscriptions of ours (and nobody else's is touched)."""
    ours = [sub for sub in existing if owner.owns(sub)]
    steps = []
    kept: set[str] = set()
    for spec in specs:
        wanted = desired(spec, owner)
        named = [sub for sub in ours if sub.get("name") == spec.name]
        if not named:
            if spec.signature_algorithm:  # a create-time choice: an existing subscription keeps its own
                wanted["signatureAlgorithm"] = spec.signature_algorithm
            steps.append(Step(StepAction.CREATE, spec.name, None, wanted))
            continue
        # Prefer a marked one, then one delivering to us, then an active one, then the newest.
        named.sort(
            key=lambda sub: (owner.marked(sub), sub.get("url") == owner.callback_url, bool(sub.get("active")), sub.get("createdAt") or ""),
            reverse=True,
        )
        current = named[0]
        kept.add(current["id"])
        drift = {key: value for key, value in wanted.items() if _differs(value, current.get(key))}
        if not current.get("active"):
            drift["active"] = True
        steps.append(Step(StepAction.UPDATE if drift else StepAction.UNCHANGED, spec.name, current["id"], drift))
    for sub in ours:
        if sub["id"] not in kept and sub.get("active"):
            steps.append(Step(StepAction.DEACTIVATE, sub["name"], sub["id"], {}))
    return steps


def apply(client: AiwynClient, steps: list[Step], before_call: Callable[[], object] = lambda: None) -> list[Step]:
    """Carry the plan out; returns the steps with the ids of created subscriptions."""
    done = []
    for step in steps:
        if step.action != StepAction.UNCHANGED:
            before_call()
        if step.action == StepAction.CREATE:
            step = Step(StepAction.CREATE, step.name, client.create_subscription(step.changes)["id"], step.changes)
        elif step.action == StepAction.UPDATE:
            client.update_subscription(step.subscription_id, step.changes)
        elif step.action == StepAction.DEACTIVATE:
            client.deactivate_subscription(step.subscription_id)
        done.append(step)
        log.info("subscription %s", step.describe())
    return done


def register_subscriptions(
    client: AiwynClient,
    redis_client: redis.Redis,
    specs: list[SubscriptionSpec],
    owner: Owner,
    store: SecretStore,
    *,
    source: str = "the subscriptions file",
    dry_run: bool = False,
) -> list[Step]:
    """Reconcile under the lock, then share the active subscriptions' secrets through Redis."""
    check_catalog(specs, client.catalog(), source)
    # The lock must outlive the slowest single call, so it is renewed before each one; a waiter
    # gives up after the slowest whole run (a list, a write and a secret per subscription, some to spare).
    longest = client.longest_call
    lock = redis_client.lock(LOCK_KEY, timeout=longest, blocking_timeout=longest * (3 + 2 * len(specs)))
    with lock:
        steps = plan(client.list_subscriptions(include_inactive=True), specs, owner)
        if dry_run:
            return steps
        steps = apply(client, steps, lock.reacquire)
        for step in steps:
            if step.action != StepAction.DEACTIVATE:
                lock.reacquire()
                store.store(step.subscription_id, client.signing_secrets(step.subscription_id))
    return steps


def deactivate_ours(client: AiwynClient, owner: Owner) -> list[Step]:
    """The uninstall: stop every delivery of ours (a deliberate command, never part of a restart)."""
    steps = [Step(StepAction.DEACTIVATE, sub["name"], sub["id"], {}) for sub in client.list_subscriptions(include_inactive=False) if owner.owns(sub)]
    return apply(client, steps)
