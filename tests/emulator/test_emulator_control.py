"""The emulator's own `/_emulator` paths: faults, events, records, stats and reset."""

from __future__ import annotations

import time
from typing import Any

import pytest


def client(ref: str, **attributes: Any) -> dict[str, Any]:
    return {"type": "client", "systemRef": {"system": "erp", "id": ref}, "attributes": {"name": f"Client {ref}", **attributes}}


def test_faults_are_off_by_default_and_change_field_by_field(api):
    defaults = {"duplicate": False, "reorder": False, "reorderWindowMs": 200, "delayMs": 0, "rateLimitPerSecond": 0, "dialect": "standard",
                "noSubscriptionHeader": False, "timestampMillis": False, "integerIds": False, "snakeCase": False,
                "pastTenseOperations": False, "separateMessageId": False}  # fmt: skip
    assert api.http.get("/_emulator/faults").json() == defaults
    response = api.http.put("/_emulator/faults", json={"delayMs": 50})
    assert response.status_code == 200
    assert response.json() == {**defaults, "delayMs": 50}
    assert api.http.get("/_emulator/faults").json()["delayMs"] == 50


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"duplicate": "yes"}, id="bool-as-string"),
        pytest.param({"delayMs": -1}, id="negative"),
        pytest.param({"delayMs": True}, id="int-as-bool"),
        pytest.param({"explode": True}, id="unknown"),
        pytest.param([1], id="not-object"),
    ],
)
def test_bad_faults_are_400_and_change_nothing(api, body):
    response = api.http.put("/_emulator/faults", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"
    assert api.http.get("/_emulator/faults").json()["delayMs"] == 0


def test_duplicate_fault_sends_every_event_twice(api, receiver):
    sub = api.subscribe(receiver.url)
    api.http.put("/_emulator/faults", json={"duplicate": True})
    api.upsert(client("D-1"), client("D-2"))
    stats = api.wait_idle()
    assert stats["delivered"] == 4 and stats["attempts"] == 4
    requests = receiver.wait_for(4)
    by_id: dict[str, set[bytes]] = {}
    for request in requests:
        by_id.setdefault(request.headers["webhook-id"], set()).add(request.body)
    assert len(by_id) == 2 and all(len(bodies) == 1 for bodies in by_id.values())
    assert sorted(d["eventId"] for d in api.deliveries(sub["id"])) == sorted(r.headers["webhook-id"] for r in requests)


def test_reorder_fault_sends_each_window_in_reverse(api, receiver):
    api.subscribe(receiver.url)
    api.http.put("/_emulator/faults", json={"reorder": True, "reorderWindowMs": 150})
    started = time.monotonic()
    api.upsert(*[client(f"O-{n}") for n in range(5)])
    requests = receiver.wait_for(5)
    assert requests[0].at - started >= 0.14  # held for the window
    refs = [r.json()["record"]["systemRef"]["id"] for r in requests]
    assert refs == ["O-4", "O-3", "O-2", "O-1", "O-0"]
    # A newer change can now overtake an older one of the same record.
    api.upsert(client("O-0", phone="1"))
    api.records("PUT", {"type": "client", "systemRef": {"system": "erp", "id": "O-0"}, "attributes": {"phone": "2"}})
    versions = [r.json()["record"]["version"] for r in receiver.wait_for(7)[5:]]
    assert versions == [3, 2]


def test_delay_fault_waits_before_each_attempt(api, receiver):
    api.subscribe(receiver.url)
    api.http.put("/_emulator/faults", json={"delayMs": 300})
    started = time.monotonic()
    api.upsert(client("W-1"))
    (request,) = receiver.wait_for(1)
    assert request.at - started >= 0.29


def test_events_list_every_event_with_its_outcome(api, receiver, closed_port_url):
    good = api.subscribe(receiver.url)
    bad = api.subscribe(closed_port_url)
    api.upsert(client("E-1"))
    api.wait_idle()
    events = api.http.get("/_emulator/events").json()["events"]
    assert {(e["subscriptionId"], e["outcome"], e["attempts"]) for e in events} == {(good["id"], "delivered", 1), (bad["id"], "dropped", 3)}
    only_good = api.http.get("/_emulator/events", params={"subscriptionId": good["id"]}).json()["events"]
    assert [e["subscriptionId"] for e in only_good] == [good["id"]]
    assert only_good[0]["body"].encode() == receiver.received[0].body


def test_records_view_filters_by_type(api):
    api.upsert(client("T-1"), {"type": "office", "systemRef": {"system": "erp", "id": "O-1"}, "attributes": {"name": "HQ"}})
    assert [r["type"] for r in api.http.get("/_emulator/records").json()["records"]] == ["client", "office"]
    (office,) = api.stored("office")
    assert office["attributes"] == {"name": "HQ"} and office["version"] == 1 and office["active"] is True
    assert api.http.get("/_emulator/records", params={"type": "nope"}).status_code == 400


def test_deliveries_of_an_unknown_subscription_is_404(api):
    response = api.http.get("/_emulator/subscriptions/sub_000000000000/deliveries")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"


def test_reset_forgets_everything_and_restores_faults(api, receiver):
    api.subscribe(receiver.url)
    api.upsert(client("Z-1"))
    api.wait_idle()
    api.http.put("/_emulator/faults", json={"duplicate": True})
    assert api.http.post("/_emulator/reset").status_code == 204
    assert api.stats() == {"pending": 0, "delivered": 0, "dropped": 0, "cancelled": 0, "attempts": 0, "rateLimited": 0}
    assert api.http.get("/_emulator/events").json()["events"] == []
    assert api.http.get("/_emulator/records").json()["records"] == []
    assert api.http.get("/api/v1/event-subscriptions", params={"includeInactive": "true"}).json()["data"]["subscriptions"] == []
    assert api.http.get("/_emulator/faults").json()["duplicate"] is False
    # The token still works, and a record with the old systemRef is new again.
    assert api.upsert(client("Z-1"))["records"][0]["status"] == "CREATED"


def test_reset_drops_waiting_retries(make_emulator, client_for, receiver):
    api = client_for(make_emulator(retry_schedule=(0.3,)))
    receiver.default_status = 500
    api.subscribe(receiver.url)
    api.upsert(client("Z-2"))
    receiver.wait_for(1)
    api.http.post("/_emulator/reset")
    time.sleep(0.5)
    assert len(receiver.received) == 1
    assert api.stats()["attempts"] == 0
