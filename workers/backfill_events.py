"""Custom handlers for backfilled records, when ``AIWYN_RECEIVER_BACKFILL_RUNS_HANDLERS`` asks for it.

A record a backfill page wrote (new or newer in the mirror) becomes an event of its own, with an
id ``backfill:<type>:<record id>:<version>`` and subscription ``backfill``, ledgered with its
handler runs in the page's transaction, so the runs get the retries, failed list and replay
of any event. The built-in mirror already has the row: only custom handlers run.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from workers import handler_runs, ledger, processing, runs
from workers.events import parse_event
from workers.ledger import Delivery
from workers.runtime import WorkerRuntime

SUBSCRIPTION = "backfill"


def event_body(row: dict[str, Any]) -> tuple[str, bytes]:
    """The synthetic event's id and body for a mirror row written by a backfill."""
    moment = row["occurred_at"] if row["occurred_at"].tzinfo else row["occurred_at"].replace(tzinfo=UTC)
    stamp = row["version"] if row["version"] is not None else moment.strftime("%Y%m%dT%H%M%S%fZ")
    event_id = f"backfill:{row['entity_type']}:{row['record_id']}:{stamp}"[:200]
    body = {
        "id": event_id,
        "subscriptionId": SUBSCRIPTION,
        "entityType": row["entity_type"],
        "operation": "UPDATE" if row["active"] else "DELETE",
        "occurredAt": moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "record": {
            "id": row["record_id"],
            "type": row["entity_type"],
            "version": row["version"],
            "active": row["active"],
            "systemRef": row["system_ref"],
            "attributes": row["attributes"],
        },
    }
    return event_id, json.dumps(body, separators=(",", ":")).encode("utf-8")


class Hook:
    """Called in a page's transaction with its rows; queues the runs once the page is committed."""

    def __init__(self, runtime: WorkerRuntime) -> None:
        self._runtime = runtime
        self._follow_ups = processing.FollowUps()

    def __call__(self, session: Session, rows: list[dict[str, Any]], changed: set[tuple[str, str]]) -> None:
        deliveries, pairs = [], []
        for row in rows:
            if (row["entity_type"], row["record_id"]) not in changed:
                continue
            event_id, body = event_body(row)
            event = parse_event(body, event_id, SUBSCRIPTION)
            custom = [r.name for r in self._runtime.registry.handlers_for(event) if r.batch_handler is None]
            if custom:
                deliveries.append(Delivery(event_id, SUBSCRIPTION, body, event))
                pairs += [(event_id, name) for name in custom]
        new = ledger.record(session, deliveries, dict.fromkeys((d.event_id for d in deliveries), ledger.PENDING))
        runs.add_pending(session, [(event_id, name) for event_id, name in pairs if event_id in new])
        for event_id, name in pairs:
            if event_id in new:
                self._follow_ups.add(name, event_id)
        self._follow_ups.claimed_at = datetime.now(UTC)

    def enqueue(self) -> None:
        handler_runs.enqueue_follow_ups(self._runtime, self._follow_ups)
