"""Building realistic event bodies for tests, as Aiwyn's contract describes them."""

from __future__ import annotations

import json
from typing import Any


def event_body(
    event_id: str,
    *,
    record_id: str = "rec_1",
    entity_type: str = "client",
    operation: str = "UPDATE",
    version: int | None = 1,
    occurred_at: str = "2026-11-23T10:00:00.000Z",
    attributes: dict[str, Any] | None = None,
    active: bool = True,
) -> bytes:
    record: dict[str, Any] = {
        "id": record_id,
        "type": entity_type,
        "active": active,
        "systemRef": {"system": "erp", "id": f"ref-{record_id}"},
        "attributes": attributes if attributes is not None else {"name": f"name at {event_id}"},
    }
    if version is not None:
        record["version"] = version
    return json.dumps(
        {"id": event_id, "subscriptionId": "sub_1", "entityType": entity_type, "operation": operation,
         "occurredAt": occurred_at, "record": record}
    ).encode()  # fmt: skip
