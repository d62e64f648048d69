"""Append every change of every record to a JSON-lines file (``AIWYN_AUDIT_LOG``).

Writing a file is a side effect outside the database, so it is at least once: a worker can
die after writing and before its run is marked done. The event id is the idempotency key:
a line already written for this event is not written again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from sqlalchemy.orm import Session

from workers.handlers import Event, handler


@handler("*", "*", name="audit-log", timeout=5)
def audit_log(event: Event, session: Session) -> None:
    path = Path(os.environ.get("AIWYN_AUDIT_LOG", "audit-log.jsonl"))
    if path.exists() and any(json.loads(line)["event"] == event.id for line in path.read_text().splitlines()):
        return
    line = {
        "event": event.id,
        "type": event.entity_type,
        "operation": event.operation,
        "record": event.record.id,
        "version": event.record.version,
        "at": event.occurred_at.isoformat(),
    }
    with path.open("a") as log:
        log.write(json.dumps(line) + "\n")
