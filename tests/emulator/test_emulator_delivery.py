"""Signed, retried, at-least-once deliveries (contract §4) and the delivery log."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

EVT_ID = re.compile(r"^evt_[0-9A-HJKMNP-TV-Z]{26}$")
MILLIS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def client(ref: str, **attributes: Any) -> dict[str, Any]:
    return {"type": "client", "systemRef": {"system": "erp", "id": ref}, "attributes": {"name": f"Client {ref}", **attributes}}


def test_a_delivery_is_signed_and_shaped_per_the_contract(api, receiver):
    sub = api.subscribe(receiver.url)
    record_id = api.upsert(client("S-1", industry="ind_04"))["records"][0]["id"]
    (request,) = receiver.wait_for(1)
    assert request.path == "/hook"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["aiwyn-subscription-id"] == sub["id"]
    payload = Webhook(api.secret(sub["id"])).verify(request.body, request.headers)
    assert list(payload) == ["id", "subscriptionId", "entityType", "operation", "occurredAt", "record"]
    assert EVT_ID.match(payload["id"]) and payload["id"] == request.headers["webhook-id"]
    assert payload["subscriptionId"] == sub["id"]
    assert payload["entityType"] == "client" and payload["operation"] == "CREATE"
    assert MILLIS.match(payload["occurredAt"])
    assert payload["record"] == {
        "id": record_id,
        "type": "client",
        "version": 1,
        "active": True,
        "systemRef": {"system": "erp", "id": "S-1"},
        "attributes": {"name": "Client S-1", "industry": "ind_04"},
    }


def test_a_tampered_delivery_does_not_verify(api, receiver):
    sub = api.subscribe(receiver.url)
    api.upsert(client("S-2"))
    (request,) = receiver.wait_for(1)
    tampered = request.body.replace(b"S-2", b"S-3")
    with pytest.raises(WebhookVerificationError):
        Webhook(api.secret(sub["id"])).verify(tampered, request.headers)
    other = api.subscribe(receiver.url)
    with pytest.raises(WebhookVerificationError):
        Webhook(api.secret(other["id"])).verify(request.body, request.headers)


def test_a_v1a_subscription_signs_with_ed25519_and_lists_only_its_public_key(api, receiver):
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    sub = api.subscribe(receiver.url, signatureAlgorithm="v1a")
    [secret] = api.http.get(f"/api/v1/event-subscriptions/{sub['id']}/secret").json()["data"]["secrets"]
    assert secret["algorithm"] == "v1a" and secret["secret"].startswith("whpk_")
    public = Ed25519PublicKey.from_public_bytes(base64.b64decode(secret["secret"][len("whpk_") :]))
    api.upsert(client("S-9"))
    (request,) = receiver.wait_for(1)
    scheme, _, signature = request.headers["webhook-signature"].partition(",")
    assert scheme == "v1a"
    content = f"{request.headers['webhook-id']}.{request.headers['webhook-timestamp']}.".encode() + request.body
    public.verify(base64.b64decode(signature), content)
    with pytest.raises(InvalidSignature):
        public.verify(base64.b64decode(signature), content + b" ")
    rotated = api.http.post(f"/api/v1/event-subscriptions/{sub['id']}/secret/rotate").json()["data"]["secrets"]
    assert [s["algorithm"] for s in rotated] == ["v1a", "v1a"]


def test_update_and_delete_events_carry_versions_and_soft_delete(api, receiver):
    api.subscribe(receiver.url)
    api.upsert(client("S-4"))
    receiver.wait_for(1)
    api.records("PUT", {"type": "client", "systemRef": {"system": "erp", "id": "S-4"}, "attributes": {"phone": "1"}})
    receiver.wait_for(2)
    api.records("DELETE", {"type": "client", "systemRef": {"system": "erp", "id": "S-4"}})
    bodies = [r.json() for r in receiver.wait_for(3)]
    assert [(b["operation"], b["record"]["version"], b["record"]["active"]) for b in bodies] == [
        ("CREATE", 1, True),
        ("UPDATE", 2, True),
        ("DELETE", 3, False),
    ]
    assert bodies[2]["record"]["attributes"] == {"name": "Client S-4", "phone": "1"}


def test_a_500_is_retried_with_the_same_id_and_bytes_until_a_2xx(api, receiver):
    sub = api.subscribe(receiver.url)
    receiver.answer(500, times=2)
    api.upsert(client("R-1"))
    stats = api.wait_idle()
    assert stats["delivered"] == 1 and stats["attempts"] == 3 and stats["pending"] == 0
    requests = receiver.wait_for(3)
    assert len({r.headers["webhook-id"] for r in requests}) == 1
    assert len({r.body for r in requests}) == 1
    secret = api.secret(sub["id"])
    for request in requests:
        Webhook(secret).verify(request.body, request.headers)
    log = api.deliveries(sub["id"])
    assert [(d["attempt"], d["status"], d["error"], d["outcome"]) for d in log] == [
        (1, 500, None, "retrying"),
        (2, 500, None, "retrying"),
        (3, 200, None, "delivered"),
    ]
    assert all(d["eventId"] == requests[0].headers["webhook-id"] for d in log)
    assert all(MILLIS.match(d["at"]) and isinstance(d["durationMs"], int) for d in log)
    # The schedule is 0.1 s then 0.2 s between attempts.
    assert requests[1].at - requests[0].at >= 0.09 and requests[2].at - requests[1].at >= 0.19


def test_a_refused_connection_is_retried_then_dropped(api, closed_port_url):
    sub = api.subscribe(closed_port_url)
    api.upsert(client("R-2"))
    stats = api.wait_idle()
    assert stats == {"pending": 0, "delivered": 0, "dropped": 1, "cancelled": 0, "attempts": 3, "rateLimited": 0}
    log = api.deliveries(sub["id"])
    assert [(d["status"], d["error"], d["outcome"]) for d in log] == [
        (None, "connection refused", "retrying"),
        (None, "connection refused", "retrying"),
        (None, "connection refused", "dropped"),
    ]
    (event,) = api.http.get("/_emulator/events").json()["events"]
    assert event["outcome"] == "dropped" and event["attempts"] == 3


def test_a_receiver_that_keeps_failing_gets_one_try_plus_the_schedule(make_emulator, client_for, receiver):
    api = client_for(make_emulator(retry_schedule=(0.05, 0.05, 0.05)))
    receiver.default_status = 503
    sub = api.subscribe(receiver.url)
    api.upsert(client("R-3"))
    assert api.wait_idle()["dropped"] == 1
    assert len(receiver.received) == 4
    assert [d["outcome"] for d in api.deliveries(sub["id"])] == ["retrying"] * 3 + ["dropped"]


def test_a_slow_receiver_times_out_and_is_retried(api, receiver):
    sub = api.subscribe(receiver.url)
    receiver.answer(200, times=1, sleep=1.0)  # past the 0.5 s delivery timeout
    api.upsert(client("R-4"))
    assert api.wait_idle()["delivered"] == 1
    first, second = api.deliveries(sub["id"])
    assert (first["status"], first["error"], first["outcome"]) == (None, "timeout", "retrying")
    assert first["durationMs"] >= 450
    assert (second["status"], second["outcome"]) == (200, "delivered")


def test_410_gone_deactivates_the_subscription(api, receiver):
    sub = api.subscribe(receiver.url)
    receiver.answer(410)
    api.upsert(client("G-1"))
    stats = api.wait_idle()
    assert stats["dropped"] == 1 and stats["attempts"] == 1
    assert api.http.get(f"/api/v1/event-subscriptions/{sub['id']}").json()["data"]["active"] is False
    assert [d["outcome"] for d in api.deliveries(sub["id"])] == ["dropped"]
    api.upsert(client("G-2"))
    assert api.wait_idle()["attempts"] == 1
    assert len(receiver.received) == 1


def test_one_event_per_matching_active_subscription(api, receiver):
    subs = {
        "all-client": api.subscribe(receiver.url, ["client"]),
        "contact": api.subscribe(receiver.url, ["contact"]),
        "client-delete": api.subscribe(receiver.url, ["client"], ["DELETE"]),
        "star": api.subscribe(receiver.url, ["*"], ["CREATE", "DELETE"]),
        "inactive": api.subscribe(receiver.url, ["client"]),
    }
    api.http.delete(f"/api/v1/event-subscriptions/{subs['inactive']['id']}")
    names = {s["id"]: name for name, s in subs.items()}

    api.upsert(client("F-1"))
    api.wait_idle()
    api.upsert(client("F-1", phone="2"))
    api.wait_idle()
    api.records("DELETE", {"type": "client", "systemRef": {"system": "erp", "id": "F-1"}})
    api.wait_idle()
    got = sorted((r.json()["operation"], names[r.headers["aiwyn-subscription-id"]]) for r in receiver.received)
    assert got == sorted(
        [
            ("CREATE", "all-client"),
            ("CREATE", "star"),
            ("UPDATE", "all-client"),
            ("DELETE", "all-client"),
            ("DELETE", "client-delete"),
            ("DELETE", "star"),
        ]
    )
    events = api.http.get("/_emulator/events").json()["events"]
    assert len(events) == 6 and len({e["id"] for e in events}) == 6
    assert all(e["outcome"] == "delivered" and e["attempts"] == 1 for e in events)


def test_deactivating_a_subscription_stops_its_pending_retries(make_emulator, client_for, receiver):
    api = client_for(make_emulator(retry_schedule=(5, 5)))
    receiver.default_status = 500
    sub = api.subscribe(receiver.url)
    api.upsert(client("C-1"))
    receiver.wait_for(1)
    assert api.stats()["pending"] == 1
    assert api.http.delete(f"/api/v1/event-subscriptions/{sub['id']}").status_code == 204
    stats = api.wait_idle(timeout=2)
    assert stats["cancelled"] == 1 and stats["attempts"] == 1
    (event,) = api.http.get("/_emulator/events").json()["events"]
    assert event["outcome"] == "cancelled"
    assert len(receiver.received) == 1


def test_after_a_rotation_deliveries_carry_both_signatures(api, receiver):
    sub = api.subscribe(receiver.url)
    old = api.secret(sub["id"])
    new = api.http.post(f"/api/v1/event-subscriptions/{sub['id']}/secret/rotate").json()["data"]["secrets"][0]["secret"]
    api.upsert(client("K-1"))
    (request,) = receiver.wait_for(1)
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        Webhook(secret).verify(request.body, request.headers)


def test_the_body_is_compact_utf8_json(api, receiver):
    api.subscribe(receiver.url)
    api.upsert(client("U-1", name="Zürich AG"))
    (request,) = receiver.wait_for(1)
    assert json.loads(request.body.decode("utf-8"))["record"]["attributes"]["name"] == "Zürich AG"
    assert "Zürich".encode() in request.body
