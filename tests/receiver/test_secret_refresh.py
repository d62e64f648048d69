"""A flood of forged or misaddressed deliveries never makes us hammer Aiwyn; secrets rest encrypted."""

from __future__ import annotations

import base64
import logging
import math
import os
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import redis

from config import Settings
from devstack.services import start_emulator
from receiver import create_app
from receiver.secret_store import SECRETS_KEY
from receiver.signatures import decode_secret, sign
from tests.e2e.stack import base_env

SECRET_ROUTE = "GET /api/v1/event-subscriptions/<subscription_id>/secret"
LIST_ROUTE = "GET /api/v1/event-subscriptions"


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = base_env() | {"EMULATOR_CLIENT_ID": "c", "EMULATOR_CLIENT_SECRET": "s", "EMULATOR_RETRY_SCHEDULE": "60"}
    process, url = start_emulator(env, tmp_path_factory.mktemp("emulator") / "emulator.log")
    yield url
    process.stop()


def api(url: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=10)
    token = client.post("/api/v1/auth/token", data={"grant_type": "client_credentials", "client_id": "c", "client_secret": "s"})
    client.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
    return client


def calls(url: str) -> dict[str, int]:
    return httpx.get(f"{url}/_emulator/api-calls", timeout=5).json()["calls"]


def test_ten_thousand_bad_signatures_cost_at_most_one_secret_fetch_per_interval(emulator: str, settings: Settings, redis_client: redis.Redis) -> None:
    httpx.post(f"{emulator}/_emulator/reset", timeout=5)
    client = api(emulator)
    settings = replace(settings, aiwyn_base_url=emulator, aiwyn_client_id="c", aiwyn_client_secret="s", secrets_refresh_interval=1)
    sub = client.post("/api/v1/event-subscriptions", json={"name": "flood", "url": settings.callback_url, "entityTypes": ["client"], "operations": ["CREATE"]}).json()["data"]
    # Two web processes' worth of apps (memory of their own, one Redis): the throttle is shared.
    webs = [create_app(settings).test_client() for _ in range(2)]
    forged = base64.b64encode(os.urandom(32))
    started = time.monotonic()
    statuses = set()
    for n in range(10_000):
        at = int(time.time())
        body = b'{"id": "evt_%d"}' % n
        headers = {"Content-Type": "application/json", "webhook-id": f"evt_{n}", "webhook-timestamp": str(at),
                   "webhook-signature": sign(forged, f"evt_{n}", at, body), "aiwyn-subscription-id": sub["id"] if n % 2 else f"sub_forged_{n}"}  # fmt: skip
        statuses.add(webs[n // 2 % 2].post("/webhooks/aiwyn", data=body, headers=headers).status_code)
    elapsed = time.monotonic() - started
    assert statuses == {401}
    allowed = math.ceil(elapsed / settings.secrets_refresh_interval) + 1
    made = calls(emulator)
    # Half named our subscription with a forged signature, half named subscriptions that do not exist.
    assert 1 <= made.get(SECRET_ROUTE, 0) <= allowed, (made, elapsed)
    assert made.get(LIST_ROUTE, 0) <= allowed, (made, elapsed)
    print(f"10,000 forged requests in {elapsed:.1f} s -> Aiwyn calls: {made}")


def test_secrets_rest_encrypted_in_redis(emulator: str, settings: Settings, redis_client: redis.Redis, tmp_path: Path) -> None:
    httpx.post(f"{emulator}/_emulator/reset", timeout=5)
    client = api(emulator)
    settings = replace(settings, aiwyn_base_url=emulator, aiwyn_client_id="c", aiwyn_client_secret="s")
    sub = client.post("/api/v1/event-subscriptions", json={"name": "enc", "url": settings.callback_url, "entityTypes": ["client"], "operations": ["CREATE"]}).json()["data"]
    secret = client.get(f"/api/v1/event-subscriptions/{sub['id']}/secret").json()["data"]["secrets"][0]["secret"]
    store = create_app(settings).extensions["aiwyn"].secrets
    assert store.secrets_for(sub["id"]) is None  # unknown: fetched in the background, the request is not held
    store.settle()
    assert store.secrets_for(sub["id"]) == [secret]
    stored = b"".join(redis_client.hgetall(SECRETS_KEY).values())
    assert stored and secret.encode() not in stored and secret[6:].encode() not in stored
    assert secret not in repr(store)
    # Another process with the same key reads them; one with another key cannot.
    assert create_app(settings).extensions["aiwyn"].secrets.secrets_for(sub["id"]) == [secret]
    other = replace(settings, secrets_key=("ZmFrZWtleWZha2VrZXlmYWtla2V5ZmFrZWtleWZha2U=",), aiwyn_base_url="http://127.0.0.1:9")
    redis_client.set("aiwyn:secrets:refreshed:*", "1", ex=60)  # and no API to fall back on
    assert create_app(other).extensions["aiwyn"].secrets.secrets_for(sub["id"]) is None


def signed(secret: str, event_id: str, subscription_id: str) -> tuple[dict[str, str], bytes]:
    at = int(time.time())
    body = b'{"id": "%s"}' % event_id.encode()
    return {"Content-Type": "application/json", "webhook-id": event_id, "webhook-timestamp": str(at),
            "webhook-signature": sign(decode_secret(secret), event_id, at, body), "aiwyn-subscription-id": subscription_id}, body  # fmt: skip


def test_a_forged_signature_reads_only_its_subscriptions_secrets_from_redis(settings: Settings, redis_client: redis.Redis) -> None:
    old, new, forged = ("whsec_" + base64.b64encode(bytes([n]) * 32).decode() for n in (1, 2, 3))
    app = create_app(settings)
    app.extensions["aiwyn"].secrets.store("sub_F", [{"secret": old, "algorithm": "v1"}])
    web = app.test_client()
    other_process = create_app(settings).extensions["aiwyn"].secrets
    redis_client.config_resetstat()
    for n in range(50):
        headers, body = signed(forged, f"evt_{n}", "sub_F")
        assert web.post("/webhooks/aiwyn", data=body, headers=headers).status_code == 401
    # A rotation that another process stored in Redis is still found at once, by the same single read.
    other_process.store("sub_F", [{"secret": new, "algorithm": "v1"}])
    headers, body = signed(new, "evt_new", "sub_F")
    assert web.post("/webhooks/aiwyn", data=body, headers=headers).status_code == 202
    stats = redis_client.info("commandstats")
    assert "cmdstat_hgetall" not in stats, stats["cmdstat_hgetall"]
    assert stats["cmdstat_hget"]["calls"] == 51


def test_a_deactivated_subscription_is_forgotten_once_the_list_is_refreshed(
    emulator: str, settings: Settings, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    httpx.post(f"{emulator}/_emulator/reset", timeout=5)
    client = api(emulator)
    settings = replace(settings, aiwyn_base_url=emulator, aiwyn_client_id="c", aiwyn_client_secret="s")
    kept, dropped = (
        client.post("/api/v1/event-subscriptions", json={"name": name, "url": settings.callback_url, "entityTypes": ["client"], "operations": ["CREATE"]}).json()["data"]["id"]
        for name in ("kept", "dropped")
    )
    secret = client.get(f"/api/v1/event-subscriptions/{dropped}/secret").json()["data"]["secrets"][0]["secret"]
    app = create_app(settings)
    store, web = app.extensions["aiwyn"].secrets, app.test_client()
    assert store.refresh_all() == 2
    headers, body = signed(secret, "evt_1", dropped)
    assert web.post("/webhooks/aiwyn", data=body, headers=headers).status_code == 202

    assert client.delete(f"/api/v1/event-subscriptions/{dropped}").status_code == 204
    assert store.refresh_all() == 1
    assert redis_client.hkeys(SECRETS_KEY) == [kept.encode()]
    for process in (web, create_app(settings).test_client()):  # this process, and one that starts now
        headers, body = signed(secret, "evt_2", dropped)
        with caplog.at_level(logging.INFO, logger="receiver.webhook"):
            assert process.post("/webhooks/aiwyn", data=body, headers=headers).status_code == 401
        assert "reason='unknown subscription'" in caplog.messages[-1]

    # A process still running with an outdated PUBLIC_URL forgets in its own memory only.
    stale = create_app(replace(settings, public_url="http://127.0.0.1:1", allow_http=True)).extensions["aiwyn"].secrets
    assert stale.refresh_all() == 0
    assert redis_client.hkeys(SECRETS_KEY) == [kept.encode()]
