"""Reconcile: compare a complete listing of a type with the mirror and repair the drift.

``plan_page`` says what a page's records mean for the mirror (missing, behind), without I/O;
``reconcile_type`` reads every page, applies the plan through the ordering guard, and at the
end marks the rows Aiwyn no longer lists (inactive, with a reason: never a hard delete). Only
rows last written before the pass began can be "gone": one written meanwhile by an event is
newer than the listing's view of it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from workers.database import now_for
from workers.mirror import upsert_rows
from workers.models import MirroredRecord
from workers.sync import state
from workers.sync.backfill import build_rows, fetch_page
from workers.sync.listing import EntityType, RecordsListing
from workers.sync.rows import SOURCE_RECONCILE

EXAMPLES = 20  # record ids named per kind of drift in the report
_CHUNK = 500  # ids per IN list


@dataclass
class Drift:
    """What one type's pass found (and, unless a dry run, repaired)."""

    entity_type: str
    missing: list[str] = field(default_factory=list)
    behind: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    listed: int = 0

    def summary(self) -> str:
        return f"missing {len(self.missing)}, behind {len(self.behind)}, gone {len(self.gone)}"


def plan_page(rows: Sequence[dict[str, Any]], mirror: dict[str, tuple[int | None, datetime]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split a page's rows into (missing from the mirror, behind Aiwyn) by the ordering rule's keys."""
    missing, behind = [], []
    for row in rows:
        held = mirror.get(row["record_id"])
        if held is None:
            missing.append(row)
            continue
        version, occurred_at = held
        if row["version"] is not None and version is not None:
            if row["version"] > version:
                behind.append(row)
        elif row["occurred_at"] > occurred_at:
            behind.append(row)
    return missing, behind


def _mirrored(session: Session, entity_type: str, ids: list[str]) -> dict[str, tuple[int | None, datetime]]:
    table = MirroredRecord
    found = session.execute(
        select(table.record_id, table.version, table.occurred_at).where(table.entity_type == entity_type, table.record_id.in_(ids))
    )
    return {record_id: (version, occurred_at) for record_id, version, occurred_at in found}


def reconcile_type(
    engine: Engine,
    listing: RecordsListing,
    entity_type: EntityType,
    page_size: int,
    dry_run: bool = False,
    on_page: Callable[[], None] = lambda: None,
    sleep: Callable[[float], None] = time.sleep,
) -> Drift:
    """One complete pass over the type's listing; repairs unless ``dry_run``."""
    dialect = engine.dialect.name
    began = now_for(engine)
    drift = Drift(entity_type.name)
    seen: set[str] = set()
    cursor: str | None = None
    while True:
        page = fetch_page(listing, entity_type, cursor, None, page_size, sleep)
        rows = build_rows(entity_type.name, page.records, dialect, SOURCE_RECONCILE)
        drift.listed += len(page.records)
        seen.update(row["record_id"] for row in rows)
        with Session(engine) as session, session.begin():
            missing, behind = plan_page(rows, _mirrored(session, entity_type.name, [row["record_id"] for row in rows]))
            if not dry_run:
                upsert_rows(session, sorted(missing + behind, key=lambda row: row["record_id"]))
        drift.missing += [row["record_id"] for row in missing]
        drift.behind += [row["record_id"] for row in behind]
        on_page()
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    drift.gone = _mark_gone(engine, entity_type.name, seen, began, dry_run)
    if not dry_run:
        with Session(engine) as session, session.begin():
            state.reconciled(session, entity_type.name, drift.summary())
    return drift


def _mark_gone(engine: Engine, entity_type: str, seen: set[str], began: datetime, dry_run: bool) -> list[str]:
    """Rows of the type that the complete listing did not show, last written before the pass."""
    table = MirroredRecord
    with Session(engine) as session, session.begin():
        known = session.scalars(
            select(table.record_id).where(table.entity_type == entity_type, table.inactive_reason.is_(None), table.updated_at < began)
        ).all()
        gone = sorted(set(known) - seen)
        if dry_run or not gone:
            return gone
        now = now_for(engine)
        reason = f"not listed by Aiwyn at reconcile {now:%Y-%m-%dT%H:%M:%SZ}"
        for start in range(0, len(gone), _CHUNK):
            session.execute(
                update(table)
                .where(table.entity_type == entity_type, table.record_id.in_(gone[start : start + _CHUNK]), table.updated_at < began)
                .values(active=False, inactive_reason=reason, source=SOURCE_RECONCILE, updated_at=now)
            )
    return gone
