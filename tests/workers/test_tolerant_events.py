"""Tolerant parsing: what a reasonable sender sends becomes the same event, needing no setting."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from workers.events import InvalidEvent, parse_event

WHEN = datetime(2026, 11, 23, 10, 0, 0, 123000, tzinfo=UTC)
CONTRACT = {"id": "evt_1", "subscriptionId": "sub_1", "entityType": "client", "operation": "UPDATE", "occurredAt": "2026-11-23T10:00:00.123Z",
            "record": {"id": "rec_1", "type": "client", "version": 7, "active": True, "systemRef": {"system": "erp", "id": "C-1"},
                       "attributes": {"name": "Acme", "tax_id": 1}}}  # fmt: skip


def variant(**changes: object) -> dict[str, object]:
    body = json.loads(json.dumps(CONTRACT))
    record = changes.pop("record", {})
    body.update(changes)
    body["record"].update(record)
    return body


SNAKE = {"id": "evt_1", "subscription_id": "sub_1", "entity_type": "client", "operation": "UPDATE", "occurred_at": "2026-11-23T10:00:00.123Z",
         "record": {"id": "rec_1", "type": "client", "version": 7, "active": True, "system_ref": {"system": "erp", "id": "C-1"},
                    "attributes": {"name": "Acme", "tax_id": 1}}}  # fmt: skip


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(CONTRACT, id="contract"),
        pytest.param(SNAKE, id="snake-case"),
        pytest.param(variant(operation="update"), id="operation-lower-case"),
        pytest.param(variant(operation="UPDATED"), id="operation-past-tense"),
        pytest.param(variant(operation="Updated"), id="operation-past-tense-mixed-case"),
        pytest.param(variant(occurredAt=int(WHEN.timestamp() * 1000)), id="occurred-at-milliseconds"),
        pytest.param(variant(occurredAt=str(int(WHEN.timestamp() * 1000))), id="occurred-at-milliseconds-string"),
        pytest.param(variant(record={"version": "7"}), id="version-numeric-string"),
        pytest.param(variant(id="evt_SOMETHING_ELSE"), id="body-id-differs"),
    ],
)
def test_variants_parse_to_the_contracts_event(body: dict[str, object]) -> None:
    event = parse_event(json.dumps(body).encode(), "evt_1", "sub_1")
    assert (event.id, event.subscription_id, event.entity_type, event.operation) == ("evt_1", "sub_1", "client", "UPDATE")
    assert (event.record.id, event.record.version, event.record.active) == ("rec_1", 7, True)
    assert dict(event.record.system_ref) == {"system": "erp", "id": "C-1"}
    assert dict(event.record.attributes) == {"name": "Acme", "tax_id": 1}  # attribute names are the user's: never renamed
    assert abs((event.occurred_at - WHEN).total_seconds()) < 0.001


def test_unix_seconds_and_integer_ids() -> None:
    body = variant(subscriptionId=12, occurredAt=int(WHEN.timestamp()), record={"id": 4711})
    event = parse_event(json.dumps(body).encode(), "9", "12")
    assert (event.id, event.subscription_id, event.record.id) == ("9", "12", "4711")
    assert event.occurred_at == WHEN.replace(microsecond=0)


@pytest.mark.parametrize(("operation", "expected"), [("created", "CREATE"), ("DELETED", "DELETE"), ("delete", "DELETE")])
def test_every_operation_spelling(operation: str, expected: str) -> None:
    event = parse_event(json.dumps(variant(operation=operation)).encode(), "evt_1", "sub_1")
    assert event.operation == expected
    assert event.record.active is (expected != "DELETE")


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        pytest.param(variant(operation="MERGE"), "operation is not one of", id="unknown-operation"),
        pytest.param(variant(record={"version": "seven"}), "record.version is not an integer", id="version-words"),
        pytest.param(variant(record={"id": True}), "record.id is missing", id="boolean-id"),
        pytest.param(variant(occurredAt="yesterday"), "occurredAt is not a time", id="time-words"),
    ],
)
def test_what_no_reasonable_sender_sends_stays_invalid(body: dict[str, object], problem: str) -> None:
    with pytest.raises(InvalidEvent, match=problem):
        parse_event(json.dumps(body).encode(), "evt_1", "sub_1")
