"""The endpoint with a real Redis: what is queued, what is refused, and with which status."""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
import redis
from flask.testing import FlaskClient
from rq import Queue

from config import Settings
from config.job_contract import DRAIN_DELIVERIES, JOB_SERIALIZER, MAX_EVENT_ID, deliveries_key, unpack_delivery
from devstack.services import free_port, start_redis
from receiver import create_app
from receiver.signatures import decode_secret, sign

SECRET = "whsec_" + base64.b64encode(b"s" * 32).decode()
SUB = "sub_TEST00000001"


def delivery(event_id: str = "evt_A1", *, secret: str = SECRET, at: float | None = None, body: bytes | None = None,
             subscription: str = SUB) -> tuple[dict[str, str], bytes]:  # fmt: skip
    body = body if body is not None else json.dumps(
        {"id": event_id, "subscriptionId": subscription, "entityType": "client", "operation": "CREATE",
         "occurredAt": "2026-11-23T10:00:00.123Z", "record": {"id": "rec_1", "type": "client", "version": 1}}
    ).encode()  # fmt: skip
    at = int(time.time() if at is None else at)
    headers = {
        "Content-Type": "application/json",
        "webhook-id": event_id,
        "webhook-timestamp": str(at),
        "webhook-signature": sign(decode_secret(secret), event_id, at, body),
        "aiwyn-subscription-id": subscription,
    }
    return headers, body


@pytest.fixture
def client(settings: Settings, redis_client: redis.Redis) -> FlaskClient:
    app = create_app(settings)
    app.extensions["aiwyn"].secrets.store(SUB, [{"secret": SECRET, "algorithm": "v1", "expiresAt": None}])
    return app.test_client()


def queued(settings: Settings, redis_client: redis.Redis) -> list[tuple[str, str, bytes]]:
    return [unpack_delivery(item) for item in redis_client.lrange(deliveries_key(settings.queue_name), 0, -1)]


def test_a_genuine_delivery_is_queued_with_the_contracts_arguments(client: FlaskClient, settings: Settings, redis_client: redis.Redis) -> None:
    headers, body = delivery()
    answer = client.post("/webhooks/aiwyn", data=body, headers=headers)
    assert answer.status_code == 202
    assert queued(settings, redis_client) == [("evt_A1", SUB, body)]
    [job] = Queue(settings.queue_name, connection=redis_client, serializer=JOB_SERIALIZER).jobs
    assert (job.func_name, job.args) == (DRAIN_DELIVERIES, [settings.queue_name])  # JSON: a list


def test_the_longest_webhook_id_the_ledger_can_hold_is_accepted(client: FlaskClient, settings: Settings, redis_client: redis.Redis) -> None:
    event_id = "evt_" + "x" * (MAX_EVENT_ID - 4)
    headers, body = delivery(event_id)
    assert client.post("/webhooks/aiwyn", data=body, headers=headers).status_code == 202
    assert queued(settings, redis_client) == [(event_id, SUB, body)]


def test_a_duplicate_is_acknowledged_and_not_queued_twice(client: FlaskClient, settings: Settings, redis_client: redis.Redis) -> None:
    headers, body = delivery()
    assert client.post("/webhooks/aiwyn", data=body, headers=headers).status_code == 202
    again_headers, _ = delivery(at=time.time() + 1, body=body)  # Aiwyn re-signs every attempt
    answer = client.post("/webhooks/aiwyn", data=body, headers=again_headers)
    assert answer.status_code == 200 and answer.json == {"status": "duplicate"}
    assert queued(settings, redis_client) == [("evt_A1", SUB, body)]
    assert Queue(settings.queue_name, connection=redis_client).count == 1


def _unsigned() -> tuple[dict[str, str], bytes]:
    headers, body = delivery()
    del headers["webhook-signature"]
    return headers, body


def _without_subscription(body: bytes = b'{"id": "evt_A1"}') -> tuple[dict[str, str], bytes]:
    headers, body = delivery(body=body)
    del headers["aiwyn-subscription-id"]
    return headers, body


def _with(**changes: str) -> tuple[dict[str, str], bytes]:
    headers, body = delivery()
    headers.update(changes)
    return headers, body


@pytest.mark.parametrize(
    ("request_", "status", "reason"),
    [
        pytest.param(lambda: _unsigned(), 401, "missing webhook-signature header", id="unsigned"),
        pytest.param(lambda: delivery(secret="whsec_" + base64.b64encode(b"x" * 32).decode()), 401, "no signature matches", id="forged"),
        pytest.param(lambda: delivery(at=time.time() - 3600), 401, "webhook-timestamp is too old", id="stale"),
        pytest.param(lambda: delivery(subscription="sub_UNKNOWN"), 401, "unknown subscription", id="unknown-subscription"),
        pytest.param(lambda: _without_subscription(), 401, "no subscription named: missing aiwyn-subscription-id header", id="no-subscription"),
        pytest.param(lambda: _without_subscription(b'{"subscriptionId": "sub_UNKNOWN"}'), 401, "unknown subscription", id="unknown-body-subscription"),
        pytest.param(lambda: _with(**{"Content-Type": "text/plain"}), 415, "wrong content type", id="content-type"),
        pytest.param(lambda: delivery(body=b"not json at all"), 400, "body is not JSON", id="not-json"),
        pytest.param(lambda: delivery(body=b"[1, 2]"), 400, "body is not a JSON object", id="json-array"),
        pytest.param(lambda: delivery(body=b'{"n": ' + b"1" * 5000 + b"}"), 400, "body is not JSON", id="int-too-long"),
        pytest.param(lambda: delivery(body=b"[" * 200_000 + b"]" * 200_000), 400, "body is not JSON", id="too-deep"),
        pytest.param(lambda: delivery(body=b'{"id": "evt_A1", "subscriptionId": "sub_OTHER"}'), 400, "body subscriptionId mismatch", id="subscription-mismatch"),
        pytest.param(lambda: delivery(body=b'{"id": "evt_A1", "name": "\xff\xfe"}'), 400, "body is not UTF-8", id="not-utf8"),
        pytest.param(lambda: _with(**{"webhook-timestamp": "1e9"}), 401, "webhook-timestamp is not a Unix time", id="ts-not-integer"),
        pytest.param(lambda: _with(**{"webhook-timestamp": "9" * 30}), 401, "webhook-timestamp is not a Unix time", id="ts-huge"),
        pytest.param(lambda: _with(**{"webhook-signature": "v1,@@@ junk v2,AAAA"}), 401, "no well-formed v1 or v1a signature", id="signature-junk"),
        pytest.param(lambda: _with(**{"webhook-signature": " ".join(["v1,AAAA"] * 17)}), 401, "too many signatures", id="signature-list-too-long"),
        pytest.param(lambda: _with(**{"webhook-id": ""}), 401, "missing webhook-id header", id="no-id"),
        pytest.param(lambda: delivery("evt_" + "x" * 197), 401, "webhook-id is too long", id="id-too-long"),  # 201, one over the ledger's column
        pytest.param(lambda: delivery(body=b'{"pad": "' + b"x" * (1024 * 1024) + b'"}'), 413, "over the limit", id="too-large"),
    ],
)
def test_refused_requests_queue_nothing(
    client: FlaskClient, settings: Settings, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture,
    request_: Callable[[], tuple[dict[str, str], bytes]], status: int, reason: str,
) -> None:  # fmt: skip
    headers, body = request_()  # signed now, not at collection: the file may run minutes later
    with caplog.at_level(logging.INFO, logger="receiver.webhook"):
        answer = client.post("/webhooks/aiwyn", data=body, headers=headers)
    assert answer.status_code == status
    assert queued(settings, redis_client) == []
    assert any(reason in message and f"status={status}" in message for message in caplog.messages), caplog.messages
    assert not any(SECRET[6:] in message for message in caplog.messages)


def test_a_subscription_whose_secrets_all_expired_looks_for_new_ones(settings: Settings, redis_client: redis.Redis) -> None:
    app = create_app(settings)
    app.extensions["aiwyn"].secrets.store(SUB, [{"secret": SECRET, "algorithm": "v1", "expiresAt": "2020-01-01T00:00:00Z"}])
    create_app(settings).extensions["aiwyn"].secrets.store(SUB, [{"secret": SECRET, "algorithm": "v1", "expiresAt": None}])  # another process
    headers, body = delivery()
    assert app.test_client().post("/webhooks/aiwyn", data=body, headers=headers).status_code == 202


def test_redis_down_answers_503_with_retry_after(settings: Settings, tmp_path: Path) -> None:
    process, url = start_redis(tmp_path / "redis")
    app = create_app(replace(settings, redis_url=url))
    app.extensions["aiwyn"].secrets.store(SUB, [{"secret": SECRET, "algorithm": "v1", "expiresAt": None}])
    process.stop()
    headers, body = delivery()
    answer = app.test_client().post("/webhooks/aiwyn", data=body, headers=headers)
    assert answer.status_code == 503
    assert answer.headers["Retry-After"].isdigit()


def test_health_and_readiness(client: FlaskClient) -> None:
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.json
    assert ready.json["checks"] == {"redis": "ok", "secrets": "ok", "database": "ok"}


def test_readiness_fails_without_redis(settings: Settings) -> None:
    app = create_app(replace(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    ready = app.test_client().get("/readyz")
    assert ready.status_code == 503
    assert ready.json["checks"]["redis"].startswith("unreachable")


def test_with_a_callback_token_only_the_secret_path_exists(settings: Settings, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture) -> None:
    token = "k3y-of-the-callback-path"
    app = create_app(replace(settings, callback_token=token))
    app.extensions["aiwyn"].secrets.store(SUB, [{"secret": SECRET, "algorithm": "v1", "expiresAt": None}])
    client = app.test_client()
    headers, body = delivery()
    with caplog.at_level(logging.DEBUG, logger="receiver.webhook"):
        assert client.post("/webhooks/aiwyn", data=body, headers=headers).status_code == 404
        assert client.post("/webhooks/aiwyn/not-the-token-at-all", data=body, headers=headers).status_code == 404
        assert client.post(f"/webhooks/aiwyn/{token}", data=body, headers=headers).status_code == 202
    assert not any(token in message for message in caplog.messages)
    assert queued(settings, redis_client) == [("evt_A1", SUB, body)]


def test_behind_trusted_proxies_the_log_shows_the_client_the_proxy_saw(settings: Settings, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture) -> None:
    headers, body = delivery()
    headers["X-Forwarded-For"] = "203.0.113.9, 198.51.100.7"  # a forged first hop, then what our proxy saw
    for hops, shown in ((0, "client='127.0.0.1'"), (1, "client='198.51.100.7'")):
        app = create_app(replace(settings, trusted_proxy_hops=hops))
        app.extensions["aiwyn"].secrets.store(SUB, [{"secret": SECRET, "algorithm": "v1", "expiresAt": None}])
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="receiver.webhook"):
            app.test_client().post("/webhooks/aiwyn", data=body, headers=headers, environ_base={"REMOTE_ADDR": "127.0.0.1"})
        assert any(shown in message for message in caplog.messages), caplog.messages


def test_readiness_is_503_once_the_process_is_stopping(client: FlaskClient) -> None:
    from config.lifecycle import stopping

    assert client.get("/readyz").status_code == 200
    stopping.set()
    try:
        answer = client.get("/readyz")
        assert answer.status_code == 503 and answer.json["status"] == "stopping"
    finally:
        stopping.clear()


def test_a_forged_forwarded_address_cannot_forge_log_fields(settings: Settings, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture) -> None:
    headers, body = delivery()
    headers["webhook-signature"] = "v1,AAAA"
    forged = "10.0.0.1 ms=0.1\nwebhook accepted status=202 reason='queued'"  # as a raw HTTP server may pass it on
    app = create_app(replace(settings, trusted_proxy_hops=1))
    app.extensions["aiwyn"].secrets.store(SUB, [{"secret": SECRET, "algorithm": "v1", "expiresAt": None}])
    with caplog.at_level(logging.DEBUG, logger="receiver.webhook"):
        answer = app.test_client().post("/webhooks/aiwyn", data=body, headers=headers, environ_base={"HTTP_X_FORWARDED_FOR": forged})
    assert answer.status_code == 401
    [line] = [m for m in caplog.messages if m.startswith("webhook ")]
    assert "\n" not in line and f"client={forged!r} ms=" in line  # one line, the forged value quoted whole
