"""Records (contract §5): upsert/update/delete with partial success, versions, limits, types and schemas."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.emulator.conftest import STANDARD_TYPES

REC_ID = re.compile(r"^rec_[0-9A-HJKMNP-TV-Z]{26}$")
FIELD_TYPES = {"string", "text", "integer", "decimal", "boolean", "date", "datetime", "email", "phone", "reference"}


def client(ref: str, system: str = "erp", **attributes: Any) -> dict[str, Any]:
    return {"type": "client", "systemRef": {"system": system, "id": ref}, "attributes": {"name": f"Client {ref}", **attributes}}


def ref(ref_id: str, entity_type: str = "client", system: str = "erp") -> dict[str, Any]:
    return {"type": entity_type, "systemRef": {"system": system, "id": ref_id}}


def stored(api, record_id: str) -> dict[str, Any]:
    (record,) = [r for r in api.http.get("/_emulator/records").json()["records"] if r["id"] == record_id]
    return record


def test_upsert_creates_then_updates_by_system_ref_with_merged_attributes(api):
    created = api.upsert(client("C-1", industry="ind_04"))
    assert created["summary"] == {"total": 1, "succeeded": 1, "failed": 0}
    (item,) = created["records"]
    assert item["index"] == 0 and item["status"] == "CREATED" and item["error"] is None
    assert REC_ID.match(item["id"]) and item["systemRef"] == {"system": "erp", "id": "C-1"}
    assert stored(api, item["id"])["version"] == 1

    updated = api.upsert({"type": "client", "systemRef": {"system": "erp", "id": "C-1"}, "attributes": {"name": "Acme LLP"}})
    assert updated["records"][0]["status"] == "UPDATED"
    assert updated["records"][0]["id"] == item["id"]
    record = stored(api, item["id"])
    assert record["version"] == 2 and record["active"] is True
    assert record["attributes"] == {"name": "Acme LLP", "industry": "ind_04"}


def test_system_ref_match_needs_type_system_and_id(api):
    ids = {
        r["id"]
        for r in api.upsert(
            client("X-1"),
            client("X-1", system="crm"),
            {"type": "contact", "systemRef": {"system": "erp", "id": "X-1"}, "attributes": {"name": "Ann"}},
        )["records"]
    }
    assert len(ids) == 3
    assert api.upsert(client("X-1", system="crm"))["records"][0]["status"] == "UPDATED"


def test_each_item_succeeds_or_fails_on_its_own(api):
    data = api.upsert(
        client("P-1"),
        {"type": "invoice", "systemRef": {"system": "erp", "id": "I-1"}, "attributes": {}},
        {"type": "client", "systemRef": "erp/P-2", "attributes": {"name": "string ref"}},
        {"type": "client", "systemRef": {"system": "erp", "id": 7}, "attributes": {"name": "numeric ref"}},
        "not an object",
        client("P-3"),
    )
    assert data["summary"] == {"total": 6, "succeeded": 2, "failed": 4}
    statuses = [(r["index"], r["status"], r["error"] and r["error"]["code"]) for r in data["records"]]
    assert statuses == [
        (0, "CREATED", None),
        (1, "FAILED", "UNKNOWN_ENTITY_TYPE"),
        (2, "FAILED", "VALIDATION_ERROR"),  # systemRef must be an object (or null on upsert)
        (3, "FAILED", "VALIDATION_ERROR"),  # systemRef.id must be a string
        (4, "FAILED", "VALIDATION_ERROR"),
        (5, "CREATED", None),
    ]
    assert data["records"][1]["id"] is None
    assert {r["systemRef"]["id"] for r in api.stored("client")} == {"P-1", "P-3"}


def test_attributes_are_stored_as_given_without_schema_enforcement(api):
    record_id = api.upsert({"type": "client", "systemRef": {"system": "erp", "id": "A-1"}, "attributes": {"n": 0}})["records"][0]["id"]
    assert stored(api, record_id)["attributes"] == {"n": 0}
    api.upsert({"type": "client", "systemRef": {"system": "erp", "id": "A-1"}})
    assert stored(api, record_id)["attributes"] == {"n": 0} and stored(api, record_id)["version"] == 2


def test_update_requires_an_existing_record(api):
    record_id = api.upsert(client("U-1"))["records"][0]["id"]
    response = api.records(
        "PUT",
        {"type": "client", "systemRef": {"system": "erp", "id": "U-1"}, "attributes": {"phone": "+1 555"}},
        {"type": "client", "systemRef": {"system": "erp", "id": "missing"}, "attributes": {"phone": "+1 555"}},
        {"type": "client", "attributes": {"phone": "+1 555"}},
    )
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["summary"] == {"total": 3, "succeeded": 1, "failed": 2}
    assert [r["status"] for r in data["records"]] == ["UPDATED", "FAILED", "FAILED"]
    assert data["records"][1]["error"]["code"] == "RECORD_NOT_FOUND"
    assert data["records"][2]["error"]["code"] == "VALIDATION_ERROR"
    record = stored(api, record_id)
    assert record["version"] == 2 and record["attributes"] == {"name": "Client U-1", "phone": "+1 555"}
    assert len(api.stored("client")) == 1


def test_delete_is_soft_and_answers_204_when_all_succeed(api):
    record_id = api.upsert(client("D-1", phone="1"))["records"][0]["id"]
    response = api.records("DELETE", ref("D-1"))
    assert response.status_code == 204 and response.content == b""
    record = stored(api, record_id)
    assert record["active"] is False and record["version"] == 2
    assert record["attributes"] == {"name": "Client D-1", "phone": "1"}
    # Deleting again changes nothing; upserting brings the record back as a new version.
    assert api.records("DELETE", ref("D-1")).status_code == 204
    assert stored(api, record_id)["version"] == 2
    assert api.upsert(client("D-1"))["records"][0] == {
        "index": 0,
        "status": "UPDATED",
        "id": record_id,
        "systemRef": {"system": "erp", "id": "D-1"},
        "error": None,
    }
    record = stored(api, record_id)
    assert record["active"] is True and record["version"] == 3


def test_delete_with_a_failure_answers_200_with_the_summary(api):
    api.upsert(client("D-2"))
    response = api.records("DELETE", ref("D-2"), ref("nope"))
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["summary"] == {"total": 2, "succeeded": 1, "failed": 1}
    assert [(r["status"], r["error"] and r["error"]["code"]) for r in data["records"]] == [
        ("DELETED", None),
        ("FAILED", "RECORD_NOT_FOUND"),
    ]


def test_versions_grow_by_one_with_every_change(api):
    record_id = api.upsert(client("V-1"))["records"][0]["id"]
    for n in range(2, 6):
        api.records("PUT", {**ref("V-1"), "attributes": {"employeeCount": n}})
        assert stored(api, record_id)["version"] == n
    api.records("DELETE", ref("V-1"))
    assert stored(api, record_id)["version"] == 6


def test_more_than_100_records_is_413_and_nothing_is_applied(api):
    response = api.records("POST", *[client(f"L-{n}") for n in range(101)])
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "TOO_MANY_RECORDS"
    assert api.stored("client") == []
    assert api.upsert(*[client(f"L-{n}") for n in range(100)])["summary"]["succeeded"] == 100


@pytest.mark.parametrize(
    "body",
    [pytest.param({"records": []}, id="empty"), pytest.param({"records": {}}, id="not-list"), pytest.param({}, id="missing")],
)
def test_a_body_without_a_records_list_is_400(api, body):
    response = api.http.post("/api/v1/records", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"


def test_types_list_the_eleven_standard_types(api):
    response = api.http.get("/api/v1/records/types")
    assert response.status_code == 200
    types = response.json()["data"]["entityTypes"]
    assert [t["name"] for t in types] == STANDARD_TYPES
    business = types[2]
    assert business["displayName"] == "Client Business Entity" and business["isCustom"] is False
    assert business["schemaUrl"] == f"{api.base_url}/api/v1/records/schema/clientBusinessEntity"
    assert business["recordsUrl"] == f"{api.base_url}/api/v1/records/clientBusinessEntity"


def test_every_schema_is_well_formed(api):
    names = [t["name"] for t in api.http.get("/api/v1/records/types").json()["data"]["entityTypes"]]
    for name in names:
        response = api.http.get(f"/api/v1/records/schema/{name}")
        assert response.status_code == 200, name
        schema = response.json()["data"]
        assert schema["entityType"] == name
        fields = schema["fields"]
        assert [f["rank"] for f in fields] == list(range(1, len(fields) + 1))
        assert any(f["required"] for f in fields), name
        for field in fields:
            assert set(field) == {"name", "displayName", "type", "required", "nullable", "description", "referencedEntityType", "rank"}
            assert field["type"] in FIELD_TYPES
            assert field["nullable"] is (not field["required"])
            if field["type"] == "reference":
                assert field["referencedEntityType"] in names
            else:
                assert field["referencedEntityType"] is None


def test_schema_of_an_unknown_type_is_404(api):
    response = api.http.get("/api/v1/records/schema/invoice")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "UNKNOWN_ENTITY_TYPE"


def test_unknown_paths_and_methods_get_envelopes(api):
    missing = api.http.get("/api/v1/nothing-here")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "NOT_FOUND"
    wrong = api.http.patch("/api/v1/records", json={})
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "METHOD_NOT_ALLOWED"
    assert "POST" in wrong.headers["Allow"]
