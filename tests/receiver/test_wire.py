"""The wire profiles and tolerant reading at the endpoint: what a reasonable sender sends is queued,
what is forged, tampered or stale is refused in every profile, and each refusal is kept, safely."""

from __future__ import annotations

import base64
import json
import logging
import time
from dataclasses import replace

import pytest
import redis
from flask.testing import FlaskClient

from config import Settings, from_env
from config.job_contract import deliveries_key, unpack_delivery
from config.wire import PROFILES, wire_for
from receiver import create_app, rejections
from receiver.secret_store import canonical
from receiver.signatures import decode_secret, sign

KEY = b"w" * 32
SECRET = "whsec_" + base64.b64encode(KEY).decode()
SUB = "sub_WIRE0001"


def body_of(event_id: str = "evt_W1", **changes: object) -> bytes:
    body = {"id": event_id, "subscriptionId": SUB, "entityType": "client", "operation": "CREATE",
            "occurredAt": "2026-11-23T10:00:00.123Z", "record": {"id": "rec_1", "type": "client", "version": 1}}  # fmt: skip
    return json.dumps({k: v for k, v in (body | changes).items() if v is not None}).encode()


def signed(profile: str = "standard", *, event_id: str = "evt_W1", body: bytes | None = None, at: int | None = None, key: bytes = KEY,
           subscription: str | None = SUB) -> tuple[dict[str, str], bytes]:  # fmt: skip
    body = body_of(event_id) if body is None else body
    at = int(time.time()) if at is None else at
    id_header, ts_header, sig_header = PROFILES[profile]
    headers = {"Content-Type": "application/json", id_header: event_id, ts_header: str(at), sig_header: sign(key, event_id, at, body)}
    if subscription is not None:
        headers["aiwyn-subscription-id"] = subscription
    return headers, body


def app_for(settings: Settings, secrets: list[dict[str, object]] | None = None, **changes: object) -> FlaskClient:
    app = create_app(replace(settings, **changes))
    app.extensions["aiwyn"].secrets.store(SUB, secrets or [{"secret": SECRET, "algorithm": "v1", "expiresAt": None}])
    return app.test_client()


def queued(settings: Settings, connection: redis.Redis) -> list[tuple[str, str, bytes]]:
    return [unpack_delivery(item) for item in connection.lrange(deliveries_key(settings.queue_name), 0, -1)]


def test_svix_deliveries_are_refused_until_the_profile_is_set_and_rejections_name_the_setting(settings: Settings, redis_client: redis.Redis) -> None:
    headers, body = signed("svix")
    answer = app_for(settings).post("/webhooks/aiwyn", data=body, headers=headers)
    assert answer.status_code == 401 and queued(settings, redis_client) == []
    kept = rejections.recent(redis_client)
    assert [r.reason for r in kept] == ["missing webhook-id header"]
    assert "set AIWYN_RECEIVER_WIRE_PROFILE=svix" in " ".join(rejections.diagnose(kept, wire_for(settings)))

    assert app_for(settings, wire_profile="svix").post("/webhooks/aiwyn", data=body, headers=headers).status_code == 202
    assert queued(settings, redis_client) == [("evt_W1", SUB, body)]


def test_one_header_can_be_renamed_on_its_own(settings: Settings, redis_client: redis.Redis) -> None:
    headers, body = signed()
    headers["x-aiwyn-signature"] = headers.pop("webhook-signature")
    assert app_for(settings).post("/webhooks/aiwyn", data=body, headers=headers).status_code == 401
    hints = rejections.diagnose(rejections.recent(redis_client), wire_for(settings))
    assert "set AIWYN_RECEIVER_HEADER_SIGNATURE=x-aiwyn-signature" in " ".join(hints)
    assert app_for(settings, header_signature="x-aiwyn-signature").post("/webhooks/aiwyn", data=body, headers=headers).status_code == 202


@pytest.mark.parametrize("header_setting", ["aiwyn-subscription-id", ""])
def test_without_a_subscription_header_the_signed_body_names_it(settings: Settings, redis_client: redis.Redis, header_setting: str) -> None:
    headers, body = signed(subscription=None)
    assert app_for(settings, header_subscription=header_setting).post("/webhooks/aiwyn", data=body, headers=headers).status_code == 202
    assert queued(settings, redis_client) == [("evt_W1", SUB, body)]


def test_an_empty_subscription_setting_ignores_the_header(settings: Settings, redis_client: redis.Redis) -> None:
    headers, body = signed(subscription="sub_SOMETHING_ELSE")
    assert app_for(settings, header_subscription="").post("/webhooks/aiwyn", data=body, headers=headers).status_code == 202
    assert queued(settings, redis_client) == [("evt_W1", SUB, body)]


def test_a_delivery_naming_no_known_subscription_anywhere_is_401(settings: Settings, redis_client: redis.Redis) -> None:
    client = app_for(settings)
    for body in (body_of(subscriptionId=None), body_of(subscriptionId="sub_NOT_OURS"), b"not json"):
        headers, body = signed(subscription=None, body=body)
        assert client.post("/webhooks/aiwyn", data=body, headers=headers).status_code == 401
    assert queued(settings, redis_client) == []


def test_a_millisecond_timestamp_is_accepted_and_held_to_the_same_window(settings: Settings, redis_client: redis.Redis) -> None:
    client = app_for(settings)
    headers, body = signed(at=int(time.time() * 1000))
    assert client.post("/webhooks/aiwyn", data=body, headers=headers).status_code == 202
    headers, body = signed(event_id="evt_W2", at=int((time.time() - 3600) * 1000))
    answer = client.post("/webhooks/aiwyn", data=body, headers=headers)
    assert answer.status_code == 401
    assert rejections.recent(redis_client)[0].reason == "webhook-timestamp is too old"


def test_a_body_id_other_than_the_webhook_id_is_queued_under_the_webhook_id(settings: Settings, redis_client: redis.Redis) -> None:
    body = body_of("evt_OWN_ID")
    headers, body = signed(event_id="msg_DELIVERY", body=body)
    assert app_for(settings).post("/webhooks/aiwyn", data=body, headers=headers).status_code == 202
    assert queued(settings, redis_client) == [("msg_DELIVERY", SUB, body)]


def test_integer_ids_are_compared_as_strings(settings: Settings, redis_client: redis.Redis) -> None:
    body = body_of(subscriptionId=4711)
    headers, body = signed(body=body, subscription="4711")
    app = create_app(settings)
    app.extensions["aiwyn"].secrets.store("4711", [{"secret": SECRET, "algorithm": "v1"}])
    assert app.test_client().post("/webhooks/aiwyn", data=body, headers=headers).status_code == 202
    headers, body = signed(event_id="evt_W2", body=body_of("evt_W2", subscriptionId=4712), subscription="4711")
    assert app.test_client().post("/webhooks/aiwyn", data=body, headers=headers).status_code == 400


@pytest.mark.parametrize("profile", sorted(PROFILES))
@pytest.mark.parametrize(
    "attack",
    [
        pytest.param("forged", id="forged"),
        pytest.param("tampered", id="tampered"),
        pytest.param("stale", id="stale"),
        pytest.param("stale-ms", id="stale-ms"),
        pytest.param("future", id="future"),
        pytest.param("body-subscription-swapped", id="body-subscription-swapped"),
    ],
)
def test_forged_tampered_and_stale_deliveries_are_refused_in_every_profile(settings: Settings, redis_client: redis.Redis, profile: str, attack: str) -> None:
    client = app_for(settings, wire_profile=profile)
    if attack == "forged":
        headers, body = signed(profile, key=b"f" * 32)
    elif attack == "tampered":
        headers, body = signed(profile)
        body = body.replace(b'"version": 1', b'"version": 9')
    elif attack == "stale":
        headers, body = signed(profile, at=int(time.time()) - 301)
    elif attack == "stale-ms":
        headers, body = signed(profile, at=int((time.time() - 301) * 1000))
    elif attack == "future":
        headers, body = signed(profile, at=int(time.time()) + 301)
    else:  # the header says one subscription, the signed body another: never queued
        headers, body = signed(profile, body=body_of(subscriptionId="sub_OTHER"))
    answer = client.post("/webhooks/aiwyn", data=body, headers=headers)
    assert answer.status_code in (400, 401)
    assert queued(settings, redis_client) == []


@pytest.mark.parametrize(
    ("entry", "verifies"),
    [
        pytest.param({"secret": base64.b64encode(KEY).decode(), "algorithm": "v1"}, True, id="v1-without-whsec"),
        pytest.param({"secret": SECRET, "algorithm": "hmac-sha256"}, True, id="hmac-sha256-label"),
        pytest.param({"secret": SECRET, "algorithm": "HMAC-SHA256"}, True, id="label-in-capitals"),
        pytest.param({"secret": SECRET}, True, id="no-label-is-v1"),
        pytest.param({"secret": SECRET, "algorithm": "v1a"}, False, id="whsec-labelled-ed25519"),
        pytest.param({"secret": SECRET, "algorithm": "rsa"}, False, id="unknown-algorithm"),
    ],
)
def test_the_scheme_comes_from_the_secrets_algorithm(settings: Settings, redis_client: redis.Redis, entry: dict[str, str], verifies: bool) -> None:
    headers, body = signed()
    answer = app_for(settings, [entry]).post("/webhooks/aiwyn", data=body, headers=headers)
    assert answer.status_code == (202 if verifies else 401)


def test_an_ed25519_key_under_either_label_verifies_and_one_labelled_hmac_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    public = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    encoded = base64.b64encode(public).decode()
    assert canonical(SUB, {"secret": encoded, "algorithm": "ed25519"}) == {"secret": "whpk_" + encoded, "algorithm": "v1a", "expiresAt": None}
    assert canonical(SUB, {"secret": "whpk_" + encoded, "algorithm": "v1a"})["algorithm"] == "v1a"
    with caplog.at_level(logging.ERROR, logger="receiver.secret_store"):
        assert canonical(SUB, {"secret": "whpk_" + encoded, "algorithm": "v1"}) is None
    assert any("refused" in message and encoded not in message for message in caplog.messages)


def test_rejections_keep_no_secret_no_signature_and_no_body(settings: Settings, redis_client: redis.Redis) -> None:
    client = app_for(settings)
    for n in range(rejections.KEEP + 20):
        headers, body = signed(event_id=f"evt_{n}", key=b"f" * 32, body=body_of(f"evt_{n}", record={"id": "rec_1", "attributes": {"name": "Private Name"}}))
        client.post("/webhooks/aiwyn", data=body, headers=headers)
    stored = redis_client.lrange(rejections.KEY, 0, -1)
    assert len(stored) == rejections.KEEP
    text = b" ".join(stored).decode()
    assert "Private Name" not in text and headers["webhook-signature"].split(",")[1][:20] not in text and SECRET[6:] not in text
    newest = rejections.recent(redis_client)[0]
    assert (newest.status, newest.reason, newest.event_id, newest.subscription_id) == (401, "no signature matches a current secret", f"evt_{rejections.KEEP + 19}", SUB)
    assert {"webhook-id", "webhook-signature", "webhook-timestamp", "aiwyn-subscription-id"} <= set(newest.headers)
    assert newest.body_bytes == len(body)
    assert f"every signature fails for {SUB}: its secret changed, run register" in " ".join(rejections.diagnose(rejections.recent(redis_client), wire_for(settings)))


def test_an_accepted_delivery_keeps_no_rejection(settings: Settings, redis_client: redis.Redis) -> None:
    headers, body = signed()
    assert app_for(settings).post("/webhooks/aiwyn", data=body, headers=headers).status_code == 202
    assert redis_client.llen(rejections.KEY) == 0


def test_a_clock_that_is_off_is_named() -> None:
    now = 1_800_000_000.0
    kept = [
        rejections.describe_request({"webhook-id": f"evt_{n}", "webhook-timestamp": str(int(now - 7200))}, wire_for(Settings()), status=401,
                                    reason="webhook-timestamp is too old", subscription_id=SUB, body_bytes=10, now=now)  # fmt: skip
        for n in range(3)
    ]
    assert any(hint.startswith("timestamps are 2 h behind") for hint in rejections.diagnose(kept, wire_for(Settings())))


def test_wire_settings_from_the_environment() -> None:
    settings = from_env({"AIWYN_RECEIVER_WIRE_PROFILE": "SVIX", "AIWYN_RECEIVER_HEADER_SUBSCRIPTION": "", "AIWYN_RECEIVER_API_PREFIX": "/v2/"})
    wire = wire_for(settings)
    assert (wire.header_id, wire.header_timestamp, wire.header_signature, wire.header_subscription) == ("svix-id", "svix-timestamp", "svix-signature", "")
    assert (wire.token_path, wire.subscriptions_path, wire.record_types_path) == ("/v2/auth/token", "/v2/event-subscriptions", "/v2/records/types")
    default = wire_for(from_env({"AIWYN_RECEIVER_HEADER_TIMESTAMP": "X-Time", "AIWYN_RECEIVER_TOKEN_PATH": "/oauth/token"}))
    assert (default.header_id, default.header_timestamp, default.header_subscription, default.token_path) == ("webhook-id", "x-time", "aiwyn-subscription-id", "/oauth/token")
    with pytest.raises(Exception, match="AIWYN_RECEIVER_WIRE_PROFILE"):
        from_env({"AIWYN_RECEIVER_WIRE_PROFILE": "soap"})
    assert decode_secret(SECRET) == KEY
