"""Secrets the verifier must not trust, and secrets it must still read (issue 14, findings 2, 5, 10)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import datetime

import pytest
import redis
from flask.testing import FlaskClient
from standardwebhooks.webhooks import Webhook

from config import Settings
from receiver import create_app
from receiver.secret_store import SECRETS_KEY, canonical, cipher_for
from receiver.signatures import VerificationError, verify
from tests.conftest import TEST_SECRETS_KEY
from tests.receiver.test_webhook import SECRET, SUB, delivery

# The vector every Standard Webhooks library tests (libraries/python/tests, javascript/src/index.test.ts, ...).
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_PAYLOAD = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

IDENTITY = bytes.fromhex("01" + "00" * 31)  # the neutral point: order 1
SMALL_ORDER = [
    pytest.param(bytes(32), id="order-4"),
    pytest.param(IDENTITY, id="order-1"),
    pytest.param(bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"), id="order-8"),
    pytest.param(bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"), id="order-8b"),
    pytest.param(bytes.fromhex("ec" + "ff" * 30 + "7f"), id="order-2"),
]


def signed(key: bytes, event_id: str = "evt_1", body: bytes = b"{}", at: int | None = None) -> dict[str, str]:
    at = int(time.time()) if at is None else at
    digest = hmac.new(key, f"{event_id}.{at}.".encode() + body, hashlib.sha256).digest()
    return {"webhook-id": event_id, "webhook-timestamp": str(at), "webhook-signature": "v1," + base64.b64encode(digest).decode()}


def test_the_standard_webhooks_vector_verifies() -> None:
    headers = {"webhook-id": VECTOR_ID, "webhook-timestamp": str(VECTOR_TIMESTAMP), "webhook-signature": VECTOR_SIGNATURE}
    verify(headers, VECTOR_PAYLOAD, [VECTOR_SECRET], now=VECTOR_TIMESTAMP)
    assert Webhook(VECTOR_SECRET).sign(VECTOR_ID, datetime.fromtimestamp(VECTOR_TIMESTAMP), VECTOR_PAYLOAD.decode()) == VECTOR_SIGNATURE


def test_an_unpadded_base64_secret_is_accepted_as_the_reference_accepts_it() -> None:
    key = b"k" * 25  # base64 of 25 bytes ends in "=="
    unpadded = "whsec_" + base64.b64encode(key).decode().rstrip("=")
    headers = signed(key)
    verify(headers, b"{}", [unpadded])
    Webhook(unpadded).verify(b"{}", headers)  # the reference agrees


@pytest.mark.parametrize("key", [pytest.param(b"", id="empty"), pytest.param(b"abc", id="3-bytes"), pytest.param(b"x" * 23, id="23-bytes")])
def test_a_short_hmac_key_verifies_nothing(key: bytes) -> None:
    with pytest.raises(VerificationError) as caught:
        verify(signed(key), b"{}", ["whsec_" + base64.b64encode(key).decode()])
    assert caught.value.reason == "a v1 secret is shorter than 24 bytes"


@pytest.mark.parametrize("key", SMALL_ORDER)
def test_a_small_order_ed25519_key_verifies_nothing(key: bytes) -> None:
    # With the neutral point as public key, R = neutral and S = 0 "verify" any message in OpenSSL.
    forged = {"webhook-id": "evt_1", "webhook-timestamp": str(int(time.time())), "webhook-signature": "v1a," + base64.b64encode(IDENTITY + bytes(32)).decode()}
    with pytest.raises(VerificationError) as caught:
        verify(forged, b"{}", ["whpk_" + base64.b64encode(key).decode()])
    assert caught.value.reason == "a v1a public key is of small order"


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        pytest.param({"secret": "whsec_", "algorithm": "v1"}, "a v1 secret is shorter than 24 bytes", id="empty-v1"),
        pytest.param({"secret": "whsec_YWJj", "algorithm": "v1"}, "a v1 secret is shorter than 24 bytes", id="3-byte-v1"),
        pytest.param({"secret": base64.b64encode(IDENTITY).decode(), "algorithm": "v1a"}, "a v1a public key is of small order", id="small-order-v1a"),
        pytest.param({"secret": "whpk_" + base64.b64encode(b"p" * 31).decode(), "algorithm": "v1a"}, "a v1a public key is not 32 bytes", id="31-byte-v1a"),
        pytest.param({"secret": "whsec_" + base64.b64encode(b"p" * 32).decode(), "algorithm": "v1a"}, "labelled 'v1a' but its key is of another scheme", id="prefix-contradicts"),
    ],
)
def test_an_unusable_secret_from_the_api_is_refused_with_a_logged_reason(entry: dict, why: str, caplog: pytest.LogCaptureFixture) -> None:
    assert canonical("sub_1", entry) is None
    assert why in caplog.text


@pytest.fixture
def client(settings: Settings, redis_client: redis.Redis) -> FlaskClient:
    return create_app(settings).test_client()


def post(client: FlaskClient) -> int:
    headers, body = delivery()
    return client.post("/webhooks/aiwyn", data=body, headers=headers).status_code


def test_a_naive_expiry_is_read_as_utc_not_a_500(client: FlaskClient) -> None:
    store = client.application.extensions["aiwyn"].secrets
    store.store(SUB, [{"secret": SECRET, "algorithm": "v1", "expiresAt": "2999-01-01T00:00:00"}])
    assert post(client) == 202
    store.store(SUB, [{"secret": SECRET, "algorithm": "v1", "expiresAt": "2001-01-01T00:00:00"}])  # expired, in UTC
    assert store.secrets_for(SUB) == []


def test_a_cached_secret_the_receiver_cannot_read_is_skipped_with_a_warning_not_a_500(
    settings: Settings, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    # As an older version cached them: a naive expiry (a 500 before) beside one that is no time at all.
    entries = [{"secret": SECRET, "algorithm": "v1", "expiresAt": "2999-01-01T00:00:00"}, {"secret": "whsec_" + "b" * 40, "algorithm": "v1", "expiresAt": "soon"}]
    redis_client.hset(SECRETS_KEY, SUB, cipher_for((TEST_SECRETS_KEY,)).encrypt(json.dumps(entries).encode()))
    client = create_app(settings).test_client()
    assert post(client) == 202
    assert "expiresAt that is not a time: skipped" in caplog.text
