"""Keep an audit log of every change of every record: a row in ``aiwyn_audit_log`` (a table of
this package's own, made by its migration), and optionally each delivery's body, byte for byte,
in an archive directory (``AIWYN_AUDIT_ARCHIVE``, e.g. a mounted volume).

The row commits together with the run, so it is written exactly once. The archive file is
outside the database (at least once): it is named by the event id and simply overwritten.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from sqlalchemy import JSON, BigInteger, Boolean, Column, DateTime, Integer, MetaData, String, Table
from sqlalchemy.orm import Session

from workers import Event, Failure, Retry, handler

log = logging.getLogger(__name__)

audit_log_table = Table(
    "aiwyn_audit_log",
    MetaData(),
    Column("event_id", String(200), primary_key=True),
    Column("entity_type", String(100), nullable=False),
    Column("operation", String(10), nullable=False),
    Column("record_id", String(200), nullable=False),
    Column("version", BigInteger),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("replay", Boolean, nullable=False),
    Column("change", JSON, nullable=False),
)


def report_give_up(failure: Failure) -> None:
    """Called once a change could not be logged after every attempt: say so where an operator looks."""
    log.error("audit log: gave up on event %s after %d attempt(s): %s", failure.event_id, failure.attempts, failure.error)
    give_ups = os.environ.get("AIWYN_AUDIT_GIVE_UPS")  # a file that a pager or a cron job watches
    if give_ups:
        with open(give_ups, "a") as file:
            file.write(json.dumps({"event": failure.event_id, "attempts": failure.attempts, "error": failure.error}) + "\n")


@handler(
    "*", "*",
    name="audit-log",  # the key of its runs: explicit, so that renaming the function keeps its history
    timeout=5,
    attempts=3,
    retry_on=(OSError,),  # a full or unmounted disk may come back; any other error is a bug: no retry
    on_give_up=report_give_up,
)  # fmt: skip
def audit_log(event: Event, session: Session) -> None:
    archive = os.environ.get("AIWYN_AUDIT_ARCHIVE")
    if archive:
        directory = Path(archive)
        if not directory.is_dir():
            raise Retry(after=1, reason=f"the archive {directory} is not mounted")
        (directory / f"{event.id.replace('/', '_')}.json").write_bytes(event.raw)
    session.execute(
        audit_log_table.insert().values(
            event_id=event.id,
            entity_type=event.entity_type,
            operation=event.operation,
            record_id=event.record.id,
            version=event.record.version,
            occurred_at=event.occurred_at,
            attempt=event.attempt,
            replay=event.replay,
            change=event.as_dict(),
        )
    )
