"""Event subscriptions (contract §3): catalog, CRUD, validation, secrets and rotation."""

from __future__ import annotations

import base64
import re

import pytest

from tests.emulator.conftest import STANDARD_TYPES

SUB_ID = re.compile(r"^sub_[0-9A-HJKMNP-TV-Z]{12}$")
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
STANDARD = set(STANDARD_TYPES)
VALID = {"name": "mirror", "url": "https://hooks.example.com/webhooks/aiwyn", "entityTypes": ["client"], "operations": ["CREATE"]}


def test_catalog_lists_every_standard_type_with_all_operations(api):
    response = api.http.get("/api/v1/event-subscriptions/catalog")
    assert response.status_code == 200
    types = response.json()["data"]["entityTypes"]
    assert {t["name"] for t in types} == STANDARD
    assert all(t["operations"] == ["CREATE", "UPDATE", "DELETE"] for t in types)


def test_create_answers_201_with_the_contract_shape(api):
    response = api.http.post("/api/v1/event-subscriptions", json={**VALID, "entityTypes": ["client", "contact"]})
    assert response.status_code == 201
    body = response.json()
    assert body["error"] is None and body["meta"]["success"] is True and body["meta"]["version"] == "1.0.0"
    sub = body["data"]
    assert list(sub) == ["id", "name", "url", "entityTypes", "operations", "description", "active", "createdAt", "updatedAt"]
    assert SUB_ID.match(sub["id"])
    assert STAMP.match(sub["createdAt"]) and STAMP.match(sub["updatedAt"])
    assert sub["entityTypes"] == ["client", "contact"] and sub["operations"] == ["CREATE"]
    assert sub["active"] is True and sub["description"] is None
    assert api.http.get(f"/api/v1/event-subscriptions/{sub['id']}").json()["data"] == sub


def test_wildcard_and_explicit_v1_are_accepted(api):
    response = api.http.post(
        "/api/v1/event-subscriptions", json={**VALID, "entityTypes": ["*"], "signatureAlgorithm": "v1", "description": "all"}
    )
    assert response.status_code == 201
    assert response.json()["data"]["entityTypes"] == ["*"]
    assert response.json()["data"]["description"] == "all"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        pytest.param({"name": None}, "name", id="name-missing"),
        pytest.param({"name": "  "}, "name", id="name-blank"),
        pytest.param({"name": 5}, "name", id="name-not-string"),
        pytest.param({"url": "ftp://example.com/x"}, "url", id="url-ftp"),
        pytest.param({"url": "/webhooks/aiwyn"}, "url", id="url-relative"),
        pytest.param({"url": None}, "url", id="url-missing"),
        pytest.param({"entityTypes": []}, "entityTypes", id="types-empty"),
        pytest.param({"entityTypes": ["client", "invoice"]}, "entityTypes", id="types-unknown"),
        pytest.param({"entityTypes": ["*", "client"]}, "entityTypes", id="types-star-mixed"),
        pytest.param({"entityTypes": "client"}, "entityTypes", id="types-not-list"),
        pytest.param({"operations": []}, "operations", id="ops-empty"),
        pytest.param({"operations": ["CREATE", "PATCH"]}, "operations", id="ops-unknown"),
        pytest.param({"operations": ["create"]}, "operations", id="ops-lowercase"),
        pytest.param({"signatureAlgorithm": "v2"}, "signatureAlgorithm", id="algorithm-unknown"),
        pytest.param({"description": 5}, "description", id="description-not-string"),
    ],
)
def test_create_rejects_bad_fields_with_a_400_envelope(api, change, field):
    body = {**VALID, **change}
    body = {k: v for k, v in body.items() if v is not None}
    response = api.http.post("/api/v1/event-subscriptions", json=body)
    assert response.status_code == 400
    envelope = response.json()
    assert envelope["data"] is None and envelope["meta"]["success"] is False
    assert envelope["error"]["code"] == "VALIDATION_ERROR"
    assert list(envelope["error"]["details"]["fields"]) == [field]
    listed = api.http.get("/api/v1/event-subscriptions", params={"includeInactive": "true"}).json()["data"]
    assert listed["subscriptions"] == []


def test_create_rejects_a_body_that_is_not_an_object(api):
    response = api.http.post("/api/v1/event-subscriptions", content=b"[1, 2]", headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"


def test_duplicate_names_are_allowed(api):
    first = api.subscribe("http://127.0.0.1:1/a", name="same")
    second = api.subscribe("http://127.0.0.1:1/a", name="same")
    assert first["id"] != second["id"]
    names = [s["name"] for s in api.http.get("/api/v1/event-subscriptions").json()["data"]["subscriptions"]]
    assert names == ["same", "same"]


def test_read_of_an_unknown_id_is_404(api):
    response = api.http.get("/api/v1/event-subscriptions/sub_000000000000")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"


def test_update_changes_only_the_given_fields(api):
    sub = api.subscribe("http://127.0.0.1:1/a", entity_types=["client"], operations=["CREATE"], description="d")
    response = api.http.put(f"/api/v1/event-subscriptions/{sub['id']}", json={"name": "renamed", "operations": ["DELETE"]})
    assert response.status_code == 200
    updated = response.json()["data"]
    assert updated["name"] == "renamed" and updated["operations"] == ["DELETE"]
    unchanged = {k: v for k, v in sub.items() if k not in ("name", "operations", "updatedAt")}
    assert {k: updated[k] for k in unchanged} == unchanged


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"url": "mailto:x@example.com"}, id="url"),
        pytest.param({"active": "no"}, id="active-not-bool"),
        pytest.param({"entityTypes": ["nope"]}, id="types"),
    ],
)
def test_update_validates_like_create(api, change):
    sub = api.subscribe("http://127.0.0.1:1/a")
    response = api.http.put(f"/api/v1/event-subscriptions/{sub['id']}", json=change)
    assert response.status_code == 400
    assert list(response.json()["error"]["details"]["fields"]) == list(change)
    assert api.http.get(f"/api/v1/event-subscriptions/{sub['id']}").json()["data"] == sub


def test_update_of_an_unknown_id_is_404(api):
    response = api.http.put("/api/v1/event-subscriptions/sub_000000000000", json={"name": "x"})
    assert response.status_code == 404


def test_deactivated_subscriptions_are_listed_only_on_request(api):
    kept = api.subscribe("http://127.0.0.1:1/a", name="kept")
    deleted = api.subscribe("http://127.0.0.1:1/a", name="deleted")
    paused = api.subscribe("http://127.0.0.1:1/a", name="paused")
    response = api.http.delete(f"/api/v1/event-subscriptions/{deleted['id']}")
    assert response.status_code == 204 and response.content == b""
    assert api.http.put(f"/api/v1/event-subscriptions/{paused['id']}", json={"active": False}).json()["data"]["active"] is False

    active = api.http.get("/api/v1/event-subscriptions").json()["data"]["subscriptions"]
    assert [s["id"] for s in active] == [kept["id"]]
    everything = api.http.get("/api/v1/event-subscriptions", params={"includeInactive": "true"}).json()["data"]["subscriptions"]
    assert {s["id"]: s["active"] for s in everything} == {kept["id"]: True, deleted["id"]: False, paused["id"]: False}
    assert api.http.get(f"/api/v1/event-subscriptions/{deleted['id']}").json()["data"]["active"] is False
    assert api.http.delete("/api/v1/event-subscriptions/sub_000000000000").status_code == 404


def test_signing_secret_has_the_contract_shape(api):
    sub = api.subscribe("http://127.0.0.1:1/a")
    response = api.http.get(f"/api/v1/event-subscriptions/{sub['id']}/secret")
    assert response.status_code == 200
    (secret,) = response.json()["data"]["secrets"]
    assert set(secret) == {"secret", "algorithm", "createdAt", "expiresAt"}
    assert secret["algorithm"] == "v1" and secret["expiresAt"] is None and STAMP.match(secret["createdAt"])
    assert secret["secret"].startswith("whsec_")
    assert len(base64.b64decode(secret["secret"][len("whsec_") :], validate=True)) == 32
    other = api.subscribe("http://127.0.0.1:1/a")
    assert api.secret(other["id"]) != secret["secret"]


def test_rotation_puts_a_new_secret_first_and_keeps_the_old_one_for_the_grace(api):
    sub = api.subscribe("http://127.0.0.1:1/a")
    old = api.secret(sub["id"])
    response = api.http.post(f"/api/v1/event-subscriptions/{sub['id']}/secret/rotate")
    assert response.status_code == 200
    new, kept = response.json()["data"]["secrets"]
    assert new["secret"] != old and new["expiresAt"] is None
    assert kept["secret"] == old and STAMP.match(kept["expiresAt"])
    assert api.http.get(f"/api/v1/event-subscriptions/{sub['id']}/secret").json()["data"]["secrets"] == [new, kept]


def test_rotation_without_grace_retires_the_old_secret_at_once(make_emulator, client_for):
    api = client_for(make_emulator(secret_grace=0))
    sub = api.subscribe("http://127.0.0.1:1/a")
    old = api.secret(sub["id"])
    secrets = api.http.post(f"/api/v1/event-subscriptions/{sub['id']}/secret/rotate").json()["data"]["secrets"]
    assert len(secrets) == 1 and secrets[0]["secret"] != old
