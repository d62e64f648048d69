"""Custom record types (contract §5): definitions, and an active one behaving like any entity type."""

from __future__ import annotations

from typing import Any

import pytest

from tests.emulator.conftest import STANDARD_TYPES

PROJECT = {
    "name": "project",
    "displayName": "Project",
    "description": "Engagement projects",
    "fields": [
        {"name": "name", "type": "string", "required": True},
        {"name": "client", "type": "reference", "referencedEntityType": "client", "description": "Owner"},
        {"name": "budget", "type": "decimal", "displayName": "Budget (USD)", "rank": 7},
    ],
}


def define(api, body: dict[str, Any] = PROJECT) -> dict[str, Any]:
    response = api.http.post("/api/v1/records/custom", json=body)
    assert response.status_code == 201, response.text
    return response.json()["data"]


def project(ref: str, **attributes: Any) -> dict[str, Any]:
    return {"type": "project", "systemRef": {"system": "erp", "id": ref}, "attributes": {"name": ref, **attributes}}


def type_names(api) -> list[str]:
    return [t["name"] for t in api.http.get("/api/v1/records/types").json()["data"]["entityTypes"]]


def catalog_names(api) -> list[str]:
    return [t["name"] for t in api.http.get("/api/v1/event-subscriptions/catalog").json()["data"]["entityTypes"]]


def test_a_definition_is_created_with_defaults_and_read_back(api):
    created = define(api)
    root = api.base_url
    assert created["id"].startswith("ctype_")
    assert {k: v for k, v in created.items() if k not in ("id", "fields")} == {
        "name": "project",
        "displayName": "Project",
        "description": "Engagement projects",
        "isCustom": True,
        "active": True,
        "recordsUrl": f"{root}/api/v1/records/project",
        "schemaUrl": f"{root}/api/v1/records/schema/project",
    }
    assert created["fields"] == [
        {"name": "name", "displayName": "Name", "type": "string", "required": True, "nullable": False,
         "description": None, "referencedEntityType": None, "rank": 1},
        {"name": "client", "displayName": "Client", "type": "reference", "required": False, "nullable": True,
         "description": "Owner", "referencedEntityType": "client", "rank": 2},
        {"name": "budget", "displayName": "Budget (USD)", "type": "decimal", "required": False, "nullable": True,
         "description": None, "referencedEntityType": None, "rank": 7},
    ]  # fmt: skip
    assert api.http.get("/api/v1/records/custom/project").json()["data"] == created
    assert api.http.get("/api/v1/records/custom").json()["data"] == {"customTypes": [created]}
    minimal = define(api, {"name": "engagementLetter"})
    assert minimal["displayName"] == "Engagement Letter" and minimal["description"] is None and minimal["fields"] == []


def test_an_active_custom_type_is_listed_with_its_schema_and_in_the_catalog(api):
    define(api)
    types = api.http.get("/api/v1/records/types").json()["data"]["entityTypes"]
    assert [t["name"] for t in types] == [*STANDARD_TYPES, "project"]
    assert types[-1] == {
        "name": "project",
        "displayName": "Project",
        "isCustom": True,
        "schemaUrl": f"{api.base_url}/api/v1/records/schema/project",
        "recordsUrl": f"{api.base_url}/api/v1/records/project",
    }
    schema = api.http.get("/api/v1/records/schema/project").json()["data"]
    assert schema["entityType"] == "project" and [f["name"] for f in schema["fields"]] == ["name", "client", "budget"]
    catalog = api.http.get("/api/v1/event-subscriptions/catalog").json()["data"]["entityTypes"]
    assert catalog[-1] == {"name": "project", "operations": ["CREATE", "UPDATE", "DELETE"]}


@pytest.mark.parametrize("name", ["project", "client", "staff", "types", "custom", "schema"])
def test_a_taken_name_is_409_conflict(api, name):
    define(api)
    response = api.http.post("/api/v1/records/custom", json={"name": name})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "CONFLICT"


@pytest.mark.parametrize(
    ("body", "bad"),
    [
        pytest.param({"name": "Project"}, {"name"}, id="upper-first"),
        pytest.param({"name": "p"}, {"name"}, id="too-short"),
        pytest.param({"name": "pro-ject"}, {"name"}, id="dash"),
        pytest.param({"name": "p" * 64}, {"name"}, id="too-long"),
        pytest.param({}, {"name"}, id="missing"),
        pytest.param({"name": "project", "fields": {}}, {"fields"}, id="fields-not-list"),
        pytest.param({"name": "project", "fields": [{"name": "x", "type": "money"}]}, {"fields[0].type"}, id="field-type"),
        pytest.param({"name": "project", "fields": [{"type": "string"}]}, {"fields[0].name"}, id="field-name"),
        pytest.param(
            {"name": "project", "fields": [{"name": "owner", "type": "reference"}]},
            {"fields[0].referencedEntityType"},
            id="reference-without-target",
        ),
        pytest.param(
            {"name": "project", "fields": [{"name": "a", "type": "string"}, {"name": "a", "type": "text"}]},
            {"fields[1].name"},
            id="duplicate-field",
        ),
        pytest.param({"name": "project", "active": "yes", "displayName": ""}, {"active", "displayName"}, id="flags"),
    ],
)
def test_a_bad_definition_is_400_naming_each_bad_field(api, body, bad):
    response = api.http.post("/api/v1/records/custom", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR" and set(error["details"]["fields"]) == bad
    assert api.http.get("/api/v1/records/custom", params={"includeInactive": "true"}).json()["data"]["customTypes"] == []


def test_put_changes_only_the_given_fields(api):
    created = define(api)
    response = api.http.put("/api/v1/records/custom/project", json={"description": "Changed", "fields": [{"name": "name", "type": "string"}]})
    assert response.status_code == 200
    updated = response.json()["data"]
    assert updated["description"] == "Changed" and updated["displayName"] == created["displayName"]
    assert [f["name"] for f in updated["fields"]] == ["name"] and updated["id"] == created["id"]
    assert api.http.put("/api/v1/records/custom/project", json={"name": "other"}).status_code == 400
    assert api.http.put("/api/v1/records/custom/project", json={"fields": [{"name": "x"}]}).status_code == 400
    for method in ("GET", "PUT", "DELETE"):
        missing = api.http.request(method, "/api/v1/records/custom/nothing", json={})
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "UNKNOWN_ENTITY_TYPE"


def test_records_of_a_custom_type_are_written_and_delivered_to_named_and_star_subscriptions(api, receiver):
    define(api)
    named = api.subscribe(receiver.url, ["project"], name="named")
    star = api.subscribe(receiver.url, ["*"], name="star")
    api.subscribe(receiver.url, ["client"], name="clients-only")
    data = api.upsert(project("P-1"))
    assert data["records"][0]["status"] == "CREATED"
    bodies = [r.json() for r in receiver.wait_for(2)]
    assert {b["subscriptionId"] for b in bodies} == {named["id"], star["id"]}
    assert {(b["entityType"], b["operation"], b["record"]["type"]) for b in bodies} == {("project", "CREATE", "project")}
    assert api.records("PUT", project("P-1", budget=5)).json()["data"]["summary"]["succeeded"] == 1
    assert api.records("DELETE", {"type": "project", "systemRef": {"system": "erp", "id": "P-1"}}).status_code == 204
    api.wait_idle()
    assert sorted(r.json()["operation"] for r in receiver.received) == ["CREATE", "CREATE", "DELETE", "DELETE", "UPDATE", "UPDATE"]


def test_a_deactivated_type_leaves_types_catalog_writes_and_deliveries_but_keeps_its_records(api, receiver):
    define(api)
    api.subscribe(receiver.url, ["*"])
    record_id = api.upsert(project("P-1"))["records"][0]["id"]
    receiver.wait_for(1)
    assert api.http.delete("/api/v1/records/custom/project").status_code == 204
    assert api.http.delete("/api/v1/records/custom/project").status_code == 204  # already inactive: same answer

    assert "project" not in type_names(api) and "project" not in catalog_names(api)
    assert api.http.get("/api/v1/records/custom").json()["data"]["customTypes"] == []
    listed = api.http.get("/api/v1/records/custom", params={"includeInactive": "true"}).json()["data"]["customTypes"]
    assert [(t["name"], t["active"]) for t in listed] == [("project", False)]
    assert api.http.get("/api/v1/records/custom/project").json()["data"]["active"] is False
    assert api.http.get("/api/v1/records/schema/project").status_code == 404
    assert api.http.get("/api/v1/records/project").json()["error"]["code"] == "UNKNOWN_ENTITY_TYPE"
    for method, item in (("POST", project("P-2")), ("PUT", project("P-1")), ("DELETE", project("P-1"))):
        result = api.records(method, item).json()["data"]["records"][0]
        assert (result["status"], result["error"]["code"]) == ("FAILED", "UNKNOWN_ENTITY_TYPE"), method
    refused = api.http.post("/api/v1/event-subscriptions", json={"name": "x", "url": receiver.url, "entityTypes": ["project"], "operations": ["CREATE"]})
    assert refused.status_code == 400 and "entityTypes" in refused.json()["error"]["details"]["fields"]
    assert [r["id"] for r in api.stored("project")] == [record_id]
    api.wait_idle()
    assert len(receiver.received) == 1

    reactivated = api.http.put("/api/v1/records/custom/project", json={"active": True}).json()["data"]
    assert reactivated["active"] is True and "project" in type_names(api) and "project" in catalog_names(api)
    assert api.upsert(project("P-1", budget=1))["records"][0] == {
        "index": 0, "status": "UPDATED", "id": record_id, "systemRef": {"system": "erp", "id": "P-1"}, "error": None,
    }  # fmt: skip
    second = receiver.wait_for(2)[1].json()
    assert (second["operation"], second["record"]["version"]) == ("UPDATE", 2)


def test_subscriptions_may_name_an_active_custom_type_on_create_and_update(api, receiver):
    sub = api.subscribe(receiver.url, ["client"])
    assert api.http.put(f"/api/v1/event-subscriptions/{sub['id']}", json={"entityTypes": ["project"]}).status_code == 400
    define(api)
    response = api.http.put(f"/api/v1/event-subscriptions/{sub['id']}", json={"entityTypes": ["client", "project"]})
    assert response.status_code == 200 and response.json()["data"]["entityTypes"] == ["client", "project"]
    assert api.subscribe(receiver.url, ["project"])["entityTypes"] == ["project"]


def test_reset_forgets_custom_types(api):
    define(api)
    api.upsert(project("P-1"))
    assert api.http.post("/_emulator/reset").status_code == 204
    assert api.http.get("/api/v1/records/custom", params={"includeInactive": "true"}).json()["data"]["customTypes"] == []
    assert type_names(api) == STANDARD_TYPES
    assert api.http.get("/_emulator/records", params={"type": "project"}).status_code == 400
    define(api)  # the name is free again
