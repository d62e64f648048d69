"""Token grants and the bearer check (contract §2)."""

from __future__ import annotations

import time

import httpx
import pytest

CLIENT = {"grant_type": "client_credentials", "client_id": "local-client", "client_secret": "local-secret"}


@pytest.fixture
def http(emulator):
    with httpx.Client(base_url=emulator.base_url, trust_env=False) as client:
        yield client


def test_client_credentials_form_gives_a_bearer_token(http):
    response = http.post("/api/v1/auth/token", data=CLIENT)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in"}  # plain, not enveloped
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert len(body["access_token"]) >= 32
    listed = http.get("/api/v1/event-subscriptions", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert listed.status_code == 200


def test_client_credentials_as_json_and_api_key_grant(http):
    assert http.post("/api/v1/auth/token", json=CLIENT).status_code == 200
    response = http.post("/api/v1/auth/token", data={"grant_type": "api_key", "api_key": "local-api-key"})
    assert response.status_code == 200
    assert response.json()["token_type"] == "Bearer"


@pytest.mark.parametrize(
    "form",
    [
        pytest.param({**CLIENT, "client_secret": "wrong"}, id="wrong-secret"),
        pytest.param({**CLIENT, "client_id": "someone-else"}, id="wrong-client-id"),
        pytest.param({"grant_type": "api_key", "api_key": "wrong"}, id="wrong-api-key"),
    ],
)
def test_wrong_credentials_are_401_invalid_client(http, form):
    response = http.post("/api/v1/auth/token", data=form)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert "access_token" not in response.json()


@pytest.mark.parametrize(
    ("form", "error"),
    [
        pytest.param({"grant_type": "password", "username": "a", "password": "b"}, "unsupported_grant_type", id="unknown-grant"),
        pytest.param({"client_id": "local-client"}, "invalid_request", id="no-grant"),
        pytest.param({"grant_type": "client_credentials", "client_id": "local-client"}, "invalid_request", id="no-secret"),
    ],
)
def test_bad_token_requests_are_400(http, form, error):
    response = http.post("/api/v1/auth/token", data=form)
    assert response.status_code == 400
    assert response.json()["error"] == error


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="missing"),
        pytest.param({"Authorization": "Bearer not-a-token"}, id="unknown"),
        pytest.param({"Authorization": "Basic bG9jYWw6c2VjcmV0"}, id="wrong-scheme"),
    ],
)
def test_calls_without_a_valid_token_are_401_envelopes(http, headers):
    response = http.get("/api/v1/event-subscriptions", headers=headers)
    assert response.status_code == 401
    body = response.json()
    assert body["data"] is None
    assert body["error"]["code"] == "UNAUTHORIZED"
    assert body["meta"]["success"] is False


def test_token_expires_after_its_ttl(make_emulator):
    server = make_emulator(token_ttl=1)
    with httpx.Client(base_url=server.base_url, trust_env=False) as http:
        token = http.post("/api/v1/auth/token", data=CLIENT).json()
        assert token["expires_in"] == 1
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        assert http.get("/api/v1/records/types", headers=headers).status_code == 200
        time.sleep(1.1)
        response = http.get("/api/v1/records/types", headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "UNAUTHORIZED"
        assert "expired" in response.json()["error"]["message"]
        fresh = http.post("/api/v1/auth/token", data=CLIENT).json()["access_token"]
        assert http.get("/api/v1/records/types", headers={"Authorization": f"Bearer {fresh}"}).status_code == 200


def test_emulator_paths_need_no_token(http):
    assert http.get("/_emulator/stats").status_code == 200
