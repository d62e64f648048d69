"""The registration plan as a pure function: what is ours, what drifted, what is left alone; the catalog check; the lock."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import pytest
import redis

from aiwyn_api.client import AiwynClient
from config import Settings
from config.subscriptions import SubscriptionSpec
from receiver.registration import LOCK_KEY, Owner, RegistrationError, check_catalog, plan, register_subscriptions

URL = "https://hooks.example.test/webhooks/aiwyn"
OWNER = Owner("default", URL)
MARK = "managed by aiwyn-receiver (instance default)"
SPEC = SubscriptionSpec("aiwyn-receiver-mirror", ("client", "contact"), ("CREATE", "UPDATE", "DELETE"), "Mirror")


def sub(id: str, name: str = "aiwyn-receiver-mirror", *, url: str = URL, types: tuple[str, ...] = ("contact", "client"),
        operations: tuple[str, ...] = ("CREATE", "UPDATE", "DELETE"), description: str | None = f"Mirror; {MARK}", active: bool = True) -> dict[str, Any]:  # fmt: skip
    return {"id": id, "name": name, "url": url, "entityTypes": list(types), "operations": list(operations),
            "description": description, "active": active, "createdAt": "2026-11-23T10:00:00Z"}  # fmt: skip


def actions(existing: list[dict[str, Any]], specs: tuple[SubscriptionSpec, ...] = (SPEC,)) -> list[tuple[str, str | None, dict[str, Any]]]:
    return [(step.action, step.subscription_id, step.changes) for step in plan(existing, list(specs), OWNER)]


def test_a_missing_subscription_is_created_with_our_mark() -> None:
    ((action, sub_id, changes),) = actions([])
    assert (action, sub_id) == ("create", None)
    assert changes == {"name": "aiwyn-receiver-mirror", "url": URL, "entityTypes": ["client", "contact"],
                       "operations": ["CREATE", "UPDATE", "DELETE"], "description": f"Mirror; {MARK}"}  # fmt: skip


def test_the_signature_algorithm_is_asked_for_on_creation_only() -> None:
    ed25519 = replace(SPEC, signature_algorithm="v1a")
    ((action, _, changes),) = actions([], (ed25519,))
    assert (action, changes["signatureAlgorithm"]) == ("create", "v1a")
    assert actions([sub("s1")], (ed25519,)) == [("unchanged", "s1", {})]  # Aiwyn takes it at creation only


def test_a_subscription_as_configured_is_left_unchanged() -> None:
    assert actions([sub("s1")]) == [("unchanged", "s1", {})]


@pytest.mark.parametrize(
    ("current", "drift"),
    [
        pytest.param(sub("s1", url="https://old.example/webhooks/aiwyn"), {"url": URL}, id="url"),
        pytest.param(sub("s1", types=("client",)), {"entityTypes": ["client", "contact"]}, id="entity-types"),
        pytest.param(sub("s1", operations=("CREATE",)), {"operations": ["CREATE", "UPDATE", "DELETE"]}, id="operations"),
        pytest.param(sub("s1", active=False), {"active": True}, id="reactivation"),
    ],
)
def test_drift_of_ours_is_updated_in_place(current: dict[str, Any], drift: dict[str, Any]) -> None:
    assert actions([current]) == [("update", "s1", drift)]


def test_one_no_longer_configured_is_deactivated_and_an_inactive_one_left_as_is() -> None:
    gone, already = sub("s2", "aiwyn-receiver-staff"), sub("s3", "aiwyn-receiver-old", active=False)
    assert actions([sub("s1"), gone, already]) == [("unchanged", "s1", {}), ("deactivate", "s2", {})]


def test_one_no_longer_configured_is_deactivated_when_public_url_changed_in_the_same_release() -> None:
    old = "https://old.example/webhooks/aiwyn"
    existing = [sub("s1", url=old), sub("s2", "aiwyn-receiver-staff", url=old, types=("staff",))]
    assert actions(existing) == [("update", "s1", {"url": URL}), ("deactivate", "s2", {})]


@pytest.mark.parametrize(
    "foreign",
    [
        pytest.param(sub("f1", url="https://other.example/webhooks/aiwyn", description=None), id="other-url-no-mark"),
        pytest.param(sub("f1", description="managed by aiwyn-receiver (instance eu)"), id="other-instance-our-url"),
        pytest.param(sub("f1", url="https://other.example/webhooks/aiwyn", description="managed by aiwyn-receiver (instance eu)"), id="other-instance"),
        pytest.param(sub("f1", description="managed by aiwyn-receiver (instance default-2)"), id="instance-with-our-name-as-prefix"),
    ],
)
def test_another_deployments_subscription_of_our_name_is_never_touched(foreign: dict[str, Any]) -> None:
    ((action, sub_id, changes),) = actions([foreign])
    assert (action, sub_id, changes["url"]) == ("create", None, URL)  # ours beside it
    staff = SubscriptionSpec("aiwyn-receiver-staff", ("staff",), ("CREATE",))
    assert [a for a, _, _ in actions([foreign], (staff,))] == ["create"]  # and not deactivated either


def test_a_legacy_one_with_our_prefix_and_url_but_no_mark_is_adopted_and_marked() -> None:
    legacy = sub("s1", description="Mirror")
    assert actions([legacy]) == [("update", "s1", {"description": f"Mirror; {MARK}"})]
    assert [(a, i) for a, i, _ in actions([sub("s2", "aiwyn-receiver-old", description=None)])] == [("create", None), ("deactivate", "s2")]
    assert actions([sub("x1", "crm-sync", description=None)])[0][0] == "create"  # our URL but not our prefix: not ours


def test_of_two_of_ours_with_one_name_the_marked_one_is_kept_and_the_other_deactivated() -> None:
    assert actions([sub("legacy", description=None), sub("s1")]) == [("unchanged", "s1", {}), ("deactivate", "legacy", {})]


def test_ours_is_told_by_the_mark_and_its_instance_not_by_the_url() -> None:
    assert OWNER.owns(sub("s1")) and OWNER.owns(sub("s1", url="https://old.example", description=MARK))
    assert not Owner("eu", URL).owns(sub("s1"))


CATALOG = [{"name": "client", "operations": ["CREATE", "UPDATE", "DELETE"]}, {"name": "staff", "operations": ["CREATE", "UPDATE"]}]


def test_an_operation_not_offered_for_a_type_is_named_with_the_type_and_the_file() -> None:
    check_catalog([SubscriptionSpec("aiwyn-receiver-a", ("client", "staff"), ("CREATE", "UPDATE"))], CATALOG, "subs.toml")
    check_catalog([SubscriptionSpec("aiwyn-receiver-all", ("*",), ("DELETE",))], CATALOG, "subs.toml")
    with pytest.raises(RegistrationError) as caught:
        check_catalog([SubscriptionSpec("aiwyn-receiver-a", ("client", "staff"), ("CREATE", "DELETE"))], CATALOG, "subs.toml")
    assert str(caught.value) == "subs.toml: subscription aiwyn-receiver-a: operation DELETE is not offered for entity type staff (Aiwyn's catalog offers CREATE, UPDATE)"


def test_an_entity_type_unknown_to_the_catalog_is_named() -> None:
    with pytest.raises(RegistrationError, match="subs.toml: subscription aiwyn-receiver-a: entity type\\(s\\) invoice unknown to Aiwyn"):
        check_catalog([SubscriptionSpec("aiwyn-receiver-a", ("client", "invoice"), ("CREATE",))], CATALOG, "subs.toml")


class SlowAiwyn:
    """An Aiwyn whose every call takes longer than a third of the lock's expiry; records the lock's TTL at each call."""

    longest_call = 1.0

    def __init__(self, redis_client: redis.Redis) -> None:
        self.redis = redis_client
        self.ttls: list[int] = []
        self.created: list[str] = []

    def _call(self) -> None:
        self.ttls.append(self.redis.pttl(LOCK_KEY))
        time.sleep(0.4)

    def catalog(self) -> list[dict[str, Any]]:
        return CATALOG

    def list_subscriptions(self, include_inactive: bool) -> list[dict[str, Any]]:
        self._call()
        return []

    def create_subscription(self, fields: dict[str, Any]) -> dict[str, Any]:
        self._call()
        self.created.append(fields["name"])
        return {"id": f"s{len(self.created)}"}

    def signing_secrets(self, subscription_id: str) -> list[dict[str, Any]]:
        self._call()
        return []


class NoStore:
    def store(self, subscription_id: str, secrets: list[dict[str, Any]]) -> None:
        pass


def test_the_lock_expires_after_the_longest_call_and_is_renewed_before_each(redis_client: redis.Redis) -> None:
    aiwyn = SlowAiwyn(redis_client)
    specs = [SubscriptionSpec("aiwyn-receiver-a", ("client",), ("CREATE",)), SubscriptionSpec("aiwyn-receiver-b", ("staff",), ("CREATE",))]
    steps = register_subscriptions(aiwyn, redis_client, specs, OWNER, NoStore())  # type: ignore[arg-type]
    assert [step.action for step in steps] == ["create", "create"] and len(aiwyn.ttls) == 5  # 2 s of calls under a 1 s lock
    assert all(700 <= ttl <= 1000 for ttl in aiwyn.ttls), aiwyn.ttls
    assert redis_client.exists(LOCK_KEY) == 0


def test_the_longest_call_follows_the_http_settings(settings: Settings) -> None:
    client = AiwynClient(replace(settings, http_timeout=2.0, http_retries=1))
    assert client.longest_call == 4 * (2 * 2.0 + 30)  # four requests (token, call, after a 401 both again), each retried once
    client.close()
