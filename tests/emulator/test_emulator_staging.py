"""Staging records for tests: upserts without systemRef, bulk seeding, changes without deliveries, hard deletes."""

from __future__ import annotations

import time
from typing import Any

import pytest


def client(ref: str, **attributes: Any) -> dict[str, Any]:
    return {"type": "client", "systemRef": {"system": "erp", "id": ref}, "attributes": {"name": ref, **attributes}}


def events(api) -> list[dict[str, Any]]:
    return api.http.get("/_emulator/events").json()["events"]


def test_an_upsert_without_system_ref_always_creates_and_carries_null(api, receiver):
    api.subscribe(receiver.url)
    data = api.upsert(
        {"type": "client", "systemRef": None, "attributes": {"name": "A"}},
        {"type": "client", "attributes": {"name": "A"}},
        {"type": "client", "attributes": {"name": "A"}},
    )
    assert [(r["status"], r["systemRef"], r["error"]) for r in data["records"]] == [("CREATED", None, None)] * 3
    assert len({r["id"] for r in data["records"]}) == 3
    bodies = [r.json() for r in receiver.wait_for(3)]
    assert [b["record"]["systemRef"] for b in bodies] == [None, None, None]
    assert [r["systemRef"] for r in api.page("client")["records"]] == [None, None, None]


def test_update_and_delete_still_require_system_ref(api):
    for method in ("PUT", "DELETE"):
        for item in ({"type": "client", "systemRef": None}, {"type": "client"}):
            result = api.records(method, item).json()["data"]["records"][0]
            assert (result["status"], result["error"]["code"]) == ("FAILED", "VALIDATION_ERROR"), (method, item)


def test_seed_creates_numbered_records_from_a_template(api):
    response = api.http.post("/_emulator/seed", json={"type": "client", "count": 3, "attributes": {"industry": "ind_1"}})
    assert response.status_code == 200 and response.json() == {"created": 3}
    api.seed("client", 2, name="Acme")
    records = api.stored("client")
    assert [r["systemRef"] for r in records] == [{"system": "seed", "id": f"client-{n}"} for n in range(1, 6)]
    assert [r["attributes"] for r in records] == [
        {"industry": "ind_1", "name": "Seed client 1"},
        {"industry": "ind_1", "name": "Seed client 2"},
        {"industry": "ind_1", "name": "Seed client 3"},
        {"name": "Acme 4"},
        {"name": "Acme 5"},
    ]
    assert {(r["version"], r["active"]) for r in records} == {(1, True)}
    # Seeded records are ordinary ones: an upsert with their systemRef updates them.
    again = api.upsert({"type": "client", "systemRef": {"system": "seed", "id": "client-2"}, "attributes": {"phone": "1"}})
    assert again["records"][0]["status"] == "UPDATED"


def test_seed_fans_out_create_events_like_a_normal_create(api, receiver):
    sub = api.subscribe(receiver.url, ["client"], ["CREATE"])
    api.seed("client", 4)
    api.seed("office", 2)
    bodies = [r.json() for r in receiver.wait_for(4)]
    assert {(b["subscriptionId"], b["operation"], b["record"]["systemRef"]["system"]) for b in bodies} == {(sub["id"], "CREATE", "seed")}
    api.wait_idle()
    assert len(receiver.received) == 4  # the office records matched no subscription


@pytest.mark.parametrize(
    "body",
    [
        {"type": "invoice", "count": 1},
        {"count": 1},
        {"type": "client", "count": 0},
        {"type": "client", "count": 200_001},
        {"type": "client", "count": "3"},
        {"type": "client", "count": True},
        {"type": "client", "count": 1, "attributes": []},
    ],
)
def test_bad_seed_bodies_are_400(api, body):
    response = api.http.post("/_emulator/seed", json=body)
    assert response.status_code == 400 and response.json()["error"]["code"] == "VALIDATION_ERROR"
    assert api.stored("client") == []


def test_seeding_20000_records_takes_well_under_two_seconds(api):
    started = time.monotonic()
    api.seed("contact", 20_000)
    elapsed = time.monotonic() - started
    assert elapsed < 2, f"seeding 20,000 records took {elapsed:.2f} s"
    assert len(api.page("contact", limit=500)["records"]) == 500


def test_a_silent_change_makes_a_new_version_without_an_event(api, receiver):
    api.subscribe(receiver.url)
    record_id = api.upsert(client("S-1", phone="0"))["records"][0]["id"]
    receiver.wait_for(1)
    before = api.http.get(f"/api/v1/records/client/{record_id}").json()["data"]
    time.sleep(0.002)
    response = api.http.put(f"/_emulator/records/{record_id}", json={"attributes": {"phone": "1"}, "deliver": False})
    assert response.status_code == 200
    changed = response.json()
    assert changed["version"] == 2 and changed["attributes"] == {"name": "S-1", "phone": "1"}
    assert changed["updatedAt"] > before["updatedAt"] and changed["createdAt"] == before["createdAt"]
    assert api.http.get(f"/api/v1/records/client/{record_id}").json()["data"] == changed
    assert len(events(api)) == 1 and api.wait_idle()["delivered"] == 1

    deactivated = api.http.put(f"/_emulator/records/{record_id}", json={"active": False, "deliver": False}).json()
    assert (deactivated["version"], deactivated["active"]) == (3, False) and len(events(api)) == 1


def test_a_change_with_delivery_fans_out_update_or_delete(api, receiver):
    api.subscribe(receiver.url)
    record_id = api.upsert(client("S-2"))["records"][0]["id"]
    api.http.put(f"/_emulator/records/{record_id}", json={"attributes": {"phone": "1"}})
    api.http.put(f"/_emulator/records/{record_id}", json={"active": False, "deliver": True})
    bodies = sorted((r.json() for r in receiver.wait_for(3)), key=lambda b: b["record"]["version"])
    assert [(b["operation"], b["record"]["version"], b["record"]["active"]) for b in bodies] == [
        ("CREATE", 1, True),
        ("UPDATE", 2, True),
        ("DELETE", 3, False),
    ]


@pytest.mark.parametrize("body", [{"attributes": []}, {"active": "no"}, {"deliver": "false"}, []])
def test_bad_silent_changes_are_400_and_unknown_records_404(api, body):
    record_id = api.upsert(client("S-3"))["records"][0]["id"]
    assert api.http.put(f"/_emulator/records/{record_id}", json=body).status_code == 400
    assert api.http.put("/_emulator/records/rec_nothing", json={"deliver": False}).status_code == 404


def test_a_hard_delete_forgets_the_record_without_an_event(api, receiver):
    api.subscribe(receiver.url)
    gone, kept = (r["id"] for r in api.upsert(client("H-1"), client("H-2"))["records"])
    receiver.wait_for(2)
    assert api.http.delete(f"/_emulator/records/{gone}").status_code == 400  # hard=true is required
    assert api.http.delete(f"/_emulator/records/{gone}", params={"hard": "true"}).status_code == 204
    assert [r["id"] for r in api.stored("client")] == [kept]
    assert [r["id"] for r in api.page("client", includeInactive="true")["records"]] == [kept]
    assert api.http.get(f"/api/v1/records/client/{gone}").json()["error"]["code"] == "RECORD_NOT_FOUND"
    assert api.http.delete(f"/_emulator/records/{gone}", params={"hard": "true"}).status_code == 404
    assert api.wait_idle()["delivered"] == 2 and len(events(api)) == 2
    # Its systemRef is free: an upsert creates a new record, a PUT finds none.
    assert api.records("PUT", client("H-1")).json()["data"]["records"][0]["error"]["code"] == "RECORD_NOT_FOUND"
    recreated = api.upsert(client("H-1"))["records"][0]
    assert recreated["status"] == "CREATED" and recreated["id"] != gone
