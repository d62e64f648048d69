"""The wire variants the emulator speaks on demand: svix headers, and the header and body faults."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import pytest

from emulator.settings import Settings, SettingsError


def client(ref: str) -> dict[str, Any]:
    return {"type": "client", "systemRef": {"system": "erp", "id": ref}, "attributes": {"name": f"Client {ref}"}}


def signature_ok(secret: str, message_id: str, timestamp: str, body: bytes, header: str) -> bool:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = base64.b64encode(hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()).decode()
    return f"v1,{expected}" in header.split(" ")


def test_the_svix_dialect_renames_the_headers_and_signs_the_same(api, receiver):
    sub = api.subscribe(receiver.url)
    assert api.http.put("/_emulator/faults", json={"dialect": "svix"}).json()["dialect"] == "svix"
    api.upsert(client("D-1"))
    (request,) = receiver.wait_for(1)
    headers = request.headers
    assert "webhook-id" not in headers and headers["aiwyn-subscription-id"] == sub["id"]
    assert signature_ok(api.secret(sub["id"]), headers["svix-id"], headers["svix-timestamp"], request.body, headers["svix-signature"])


def test_header_faults(api, receiver):
    sub = api.subscribe(receiver.url)
    faults = {"noSubscriptionHeader": True, "timestampMillis": True, "separateMessageId": True}
    api.http.put("/_emulator/faults", json=faults)
    api.upsert(client("D-2"))
    (request,) = receiver.wait_for(1)
    headers, body = request.headers, json.loads(request.body)
    assert "aiwyn-subscription-id" not in headers and body["subscriptionId"] == sub["id"]
    assert len(headers["webhook-timestamp"]) == 13 and abs(int(headers["webhook-timestamp"]) / 1000 - time.time()) < 60
    assert headers["webhook-id"].startswith("msg_") and body["id"].startswith("evt_") and headers["webhook-id"][4:] == body["id"][4:]
    assert signature_ok(api.secret(sub["id"]), headers["webhook-id"], headers["webhook-timestamp"], request.body, headers["webhook-signature"])


def test_body_faults(api, receiver):
    api.subscribe(receiver.url)
    api.http.put("/_emulator/faults", json={"integerIds": True, "snakeCase": True, "pastTenseOperations": True})
    first = api.upsert(client("D-3"))["records"][0]["id"]
    api.upsert(client("D-4"))
    api.records("DELETE", {"type": "client", "systemRef": {"system": "erp", "id": "D-3"}})
    bodies = [json.loads(r.body) for r in receiver.wait_for(3)]
    assert {b["operation"] for b in bodies} == {"CREATED", "DELETED"}
    assert all({"subscription_id", "entity_type", "occurred_at"} <= set(b) and "system_ref" in b["record"] for b in bodies)
    ids = sorted({b["record"]["id"] for b in bodies})
    assert ids == [1, 2]  # integers, one per record, the same on every event of it
    assert first not in json.dumps(bodies)
    events = api.http.get("/_emulator/events").json()["events"]
    assert sorted(json.loads(e["body"])["record"]["id"] for e in events) == [1, 1, 2]


def test_the_dialect_is_a_setting_and_unknown_values_are_refused(api):
    assert Settings.from_env({"EMULATOR_DIALECT": "svix"}).dialect == "svix"
    with pytest.raises(SettingsError, match="EMULATOR_DIALECT"):
        Settings.from_env({"EMULATOR_DIALECT": "soap"})
    assert api.http.put("/_emulator/faults", json={"dialect": "soap"}).status_code == 400
