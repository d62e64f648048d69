"""Reading records (contract §5b): the per-type listing, its cursor, filters and the single read."""

from __future__ import annotations

import re
import time
from datetime import datetime
from typing import Any

import pytest

ISO_MILLIS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def client(ref: str, **attributes: Any) -> dict[str, Any]:
    return {"type": "client", "systemRef": {"system": "erp", "id": ref}, "attributes": {"name": ref, **attributes}}


def full_pass(api, entity_type: str = "client", limit: int = 500, cursor: str | None = None, **params: Any) -> list[dict[str, Any]]:
    """Every record of a pass from `cursor` (the start by default), page after page, in the order they came."""
    seen: list[dict[str, Any]] = []
    while True:
        data = api.page(entity_type, limit=limit, **({"cursor": cursor} if cursor else {}), **params)
        seen.extend(data["records"])
        cursor = data["nextCursor"]
        if cursor is None:
            return seen


def key(record: dict[str, Any]) -> tuple[str, str]:
    return record["updatedAt"], record["id"]


def test_a_record_has_the_event_fields_plus_timestamps(api):
    api.upsert(client("C-1", phone="1"))
    data = api.page("client")
    (record,) = data["records"]
    assert data["nextCursor"] is None
    assert set(record) == {"id", "type", "version", "active", "systemRef", "attributes", "createdAt", "updatedAt"}
    assert (record["type"], record["version"], record["active"]) == ("client", 1, True)
    assert record["systemRef"] == {"system": "erp", "id": "C-1"} and record["attributes"] == {"name": "C-1", "phone": "1"}
    assert ISO_MILLIS.match(record["createdAt"]) and ISO_MILLIS.match(record["updatedAt"])
    assert api.page("contact") == {"records": [], "nextCursor": None, "total": 0}


def test_pages_follow_updated_at_then_id_and_the_last_page_has_no_cursor(api):
    api.seed("client", 10)
    first = api.page("client", limit=4)
    second = api.page("client", limit=4, cursor=first["nextCursor"])
    third = api.page("client", limit=4, cursor=second["nextCursor"])
    assert [len(p["records"]) for p in (first, second, third)] == [4, 4, 2]
    assert first["nextCursor"] and second["nextCursor"] and third["nextCursor"] is None
    listed = first["records"] + second["records"] + third["records"]
    assert [r["systemRef"]["id"] for r in listed] == [f"client-{n}" for n in range(1, 11)]
    assert [key(r) for r in listed] == sorted(key(r) for r in listed)
    # A page that ends exactly at the last record says so.
    assert api.page("client", limit=5, cursor=api.page("client", limit=5)["nextCursor"])["nextCursor"] is None


def test_the_default_limit_is_100_and_bad_limits_are_400(api):
    api.seed("client", 101)
    data = api.page("client")
    assert len(data["records"]) == 100 and data["nextCursor"]
    assert len(api.page("client", limit=500)["records"]) == 101
    for limit in ("0", "501", "ten", "-1", ""):
        response = api.http.get("/api/v1/records/client", params={"limit": limit})
        assert response.status_code == 400, limit
        assert response.json()["error"]["details"]["fields"] == {"limit": "must be a whole number from 1 to 500"}


def test_a_record_changed_mid_listing_shows_up_again_and_a_pass_misses_nothing(api):
    api.seed("client", 10)
    first = api.page("client", limit=4)
    early, late = first["records"][1], api.stored("client")[7]
    # Change one record already listed and one not listed yet, through both write paths.
    api.records("PUT", {"type": "client", "systemRef": early["systemRef"], "attributes": {"phone": "2"}})
    api.http.put(f"/_emulator/records/{late['id']}", json={"attributes": {"phone": "3"}, "deliver": False})
    rest = full_pass(api, limit=4, cursor=first["nextCursor"])
    seen = first["records"] + rest
    assert [r["id"] for r in rest].count(early["id"]) == 1 and rest[-2]["id"] == early["id"]
    assert [r["id"] for r in seen].count(late["id"]) == 1 and rest[-1]["id"] == late["id"]
    latest = {r["id"]: r for r in seen}  # the last sighting of each record wins
    assert {i: (r["version"], r["attributes"]) for i, r in latest.items()} == {
        r["id"]: (r["version"], r["attributes"]) for r in api.stored("client")
    }
    assert latest[early["id"]]["version"] == 2 and latest[late["id"]]["attributes"]["phone"] == "3"


def test_every_write_path_keeps_the_order_and_each_record_once(api):
    api.upsert(*[client(f"W-{n}") for n in range(6)])
    api.upsert(client("W-2", phone="x"))  # upsert update
    api.records("PUT", client("W-0", phone="y"))  # update
    api.records("DELETE", {"type": "client", "systemRef": {"system": "erp", "id": "W-4"}})  # soft delete
    api.upsert(client("W-4"))  # reactivation
    api.seed("client", 2)
    listed = full_pass(api, limit=3)
    assert [r["systemRef"]["id"] for r in listed] == ["W-1", "W-3", "W-5", "W-2", "W-0", "W-4", "client-1", "client-2"]
    assert [key(r) for r in listed] == sorted(key(r) for r in listed)


def test_inactive_records_only_with_include_inactive(api):
    api.upsert(client("A-1"), client("A-2"))
    api.records("DELETE", {"type": "client", "systemRef": {"system": "erp", "id": "A-1"}})
    assert [r["systemRef"]["id"] for r in full_pass(api)] == ["A-2"]
    everything = full_pass(api, includeInactive="true")
    assert [(r["systemRef"]["id"], r["active"]) for r in everything] == [("A-2", True), ("A-1", False)]


def test_updated_since_keeps_records_updated_at_or_after_it(api):
    api.upsert(client("U-1"), client("U-2"))
    time.sleep(0.005)
    api.upsert(client("U-3"))
    third = api.page("client")["records"][2]
    since = full_pass(api, updatedSince=third["updatedAt"])
    assert [r["systemRef"]["id"] for r in since] == ["U-3"]  # the displayed millisecond is <= the stored time
    assert len(full_pass(api, updatedSince="2000-01-01T00:00:00Z")) == 3
    assert full_pass(api, updatedSince="2999-01-01T00:00:00.000Z") == []
    naive = datetime.fromisoformat(third["updatedAt"].replace("Z", "")).isoformat()
    assert [r["systemRef"]["id"] for r in full_pass(api, updatedSince=naive)] == ["U-3"]  # read as UTC
    response = api.http.get("/api/v1/records/client", params={"updatedSince": "yesterday"})
    assert response.status_code == 400 and "updatedSince" in response.json()["error"]["details"]["fields"]


def test_total_counts_the_whole_listing_with_its_filters_on_every_page(api):
    api.upsert(client("T-1"), client("T-2"), client("T-3"))
    api.records("DELETE", {"type": "client", "systemRef": {"system": "erp", "id": "T-1"}})
    first = api.page("client", limit=1, includeInactive="true")
    assert first["total"] == 3
    assert api.page("client", limit=1, includeInactive="true", cursor=first["nextCursor"])["total"] == 3
    assert api.page("client")["total"] == 2
    assert api.page("client", updatedSince="2999-01-01T00:00:00Z")["total"] == 0


@pytest.mark.parametrize("cursor", ["not-a-cursor", "YWJj", "", "Yz E6"])
def test_a_cursor_the_api_did_not_give_is_400(api, cursor):
    api.seed("client", 3)
    response = api.http.get("/api/v1/records/client", params={"cursor": cursor})
    if cursor == "":
        assert response.status_code == 200  # an empty cursor is the first page
        return
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"


def test_an_unknown_type_is_404(api):
    for path in ("/api/v1/records/invoice", "/api/v1/records/invoice/rec_1"):
        response = api.http.get(path)
        assert response.status_code == 404 and response.json()["error"]["code"] == "UNKNOWN_ENTITY_TYPE", path


def test_a_single_read_returns_the_record_inactive_ones_too(api):
    record_id = api.upsert(client("R-1"))["records"][0]["id"]
    api.records("DELETE", {"type": "client", "systemRef": {"system": "erp", "id": "R-1"}})
    response = api.http.get(f"/api/v1/records/client/{record_id}")
    assert response.status_code == 200
    record = response.json()["data"]
    assert (record["id"], record["active"], record["version"]) == (record_id, False, 2)
    assert record == full_pass(api, includeInactive="true")[0]
    for path in (f"/api/v1/records/contact/{record_id}", "/api/v1/records/client/rec_nothing"):
        missing = api.http.get(path)
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "RECORD_NOT_FOUND", path


def test_types_publish_a_records_url_that_lists_that_type(api):
    api.upsert(client("T-1"))
    types = api.http.get("/api/v1/records/types").json()["data"]["entityTypes"]
    url = next(t["recordsUrl"] for t in types if t["name"] == "client")
    data = api.http.get(url).json()["data"]
    assert [r["systemRef"]["id"] for r in data["records"]] == ["T-1"]


def test_a_backfill_of_50000_records_pages_quickly(api):
    api.seed("client", 50_000)
    started = time.monotonic()
    listed = full_pass(api, limit=500)
    elapsed = time.monotonic() - started
    assert len(listed) == 50_000 and len({r["id"] for r in listed}) == 50_000
    assert elapsed < 15, f"listing 50,000 records took {elapsed:.1f} s"
    calls = api.http.get("/_emulator/api-calls").json()["calls"]
    assert calls["GET /api/v1/records/<entity_type>"] == 100
