"""No input makes the verifier raise anything but its own error, nor the endpoint answer 5xx."""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import replace

import pytest
import redis
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config import Settings
from config.wire import PROFILES
from receiver import create_app
from receiver.signatures import VerificationError, decode_secret, sign, verify

SECRET = "whsec_" + base64.b64encode(b"h" * 32).decode()
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF), max_size=200)
headers = st.fixed_dictionaries(
    {},
    optional={
        "webhook-id": header_text,
        "webhook-timestamp": st.one_of(header_text, st.integers(-(2**70), 2**70).map(str)),
        "webhook-signature": st.one_of(header_text, st.lists(st.sampled_from(["v1,", "v1a,", "v1,AAAA", "v1,%%", " "]), max_size=20).map("".join)),
        "aiwyn-subscription-id": st.one_of(header_text, st.just("sub_H")),
    },
)


def in_profile(headers: dict[str, str], profile: str) -> dict[str, str]:
    """The same headers under the profile's names (the hostile inputs run in every profile)."""
    names = dict(zip(PROFILES["standard"], PROFILES[profile], strict=True))
    return {names.get(k, k): v for k, v in headers.items()}


@pytest.mark.parametrize("profile", sorted(PROFILES))
@given(headers=headers, body=st.binary(max_size=300))
def test_the_verifier_only_ever_raises_verification_error(profile: str, headers: dict[str, str], body: bytes) -> None:
    from config.wire import Wire

    wire = Wire(profile, *PROFILES[profile])
    try:
        verify(in_profile(headers, profile), body, [SECRET], wire=wire)
    except VerificationError as exc:
        assert exc.reason


@pytest.fixture(params=sorted(PROFILES))
def profile(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def client(settings: Settings, redis_client: redis.Redis, profile: str) -> FlaskClient:
    app = create_app(replace(settings, wire_profile=profile))
    app.extensions["aiwyn"].secrets.store("sub_H", [{"secret": SECRET, "algorithm": "v1"}])
    return app.test_client()


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(headers=headers, body=st.binary(max_size=300), content_type=st.sampled_from(["application/json", "text/plain", ""]))
def test_the_endpoint_answers_4xx_to_anything_unsigned(client: FlaskClient, profile: str, headers: dict[str, str], body: bytes, content_type: str) -> None:
    sent = {k: v.encode("utf-8", "surrogateescape").decode("latin-1") for k, v in in_profile(headers, profile).items()} | {"Content-Type": content_type}
    answer = client.post("/webhooks/aiwyn", data=body, headers=sent)
    assert 400 <= answer.status_code < 500


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.one_of(
        st.binary(max_size=300),
        st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20), lambda inner: st.lists(inner) | st.dictionaries(st.text(max_size=8), inner), max_leaves=20).map(
            lambda value: json.dumps(value).encode()
        ),
        st.dictionaries(st.sampled_from(["id", "subscriptionId", "record", "operation"]), st.text(max_size=12)).map(lambda value: json.dumps(value).encode()),
    )
)
def test_a_signed_body_of_any_shape_is_queued_or_refused_never_a_5xx(client: FlaskClient, profile: str, body: bytes) -> None:
    at = int(time.time())
    event_id = f"evt_{uuid.uuid4().hex}"
    headers = {"Content-Type": "application/json", "webhook-id": event_id, "webhook-timestamp": str(at),
               "webhook-signature": sign(decode_secret(SECRET), event_id, at, body), "aiwyn-subscription-id": "sub_H"}  # fmt: skip
    answer = client.post("/webhooks/aiwyn", data=body, headers=in_profile(headers, profile))
    assert answer.status_code in (200, 202, 400), (answer.status_code, answer.json)
