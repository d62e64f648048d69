"""Backfill: copy every record of a type from Aiwyn's listing into the mirror, page by page.

Each page is one transaction: its rows (through the ordering guard, so a webhook applied
meanwhile is never undone by an older page) and the cursor after it. A pass killed half way
resumes from the last committed cursor: only the page in hand is fetched again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from aiwyn_api.client import AiwynUnavailable
from workers.events import InvalidEvent
from workers.mirror import upsert_rows
from workers.sync import state
from workers.sync.listing import EntityType, Page, RecordsListing, SyncError
from workers.sync.rows import SOURCE_BACKFILL, listed_row

log = logging.getLogger(__name__)

# After the API client's own retries give up (5xx, network), a page is tried again this many
# times, waiting longer each time, before the pass stops: an outage of minutes is ridden out.
PAGE_RETRY_DELAYS = (5.0, 15.0, 30.0, 60.0)


@dataclass
class Progress:
    entity_type: str
    done: int
    estimate: int | None
    finished: bool


def build_rows(entity_type: str, records: Sequence[dict[str, Any]], dialect: str, source: str) -> list[dict[str, Any]]:
    """The page's usable rows, one per record id (the last listed wins), in key order."""
    now = datetime.now(UTC)
    rows: dict[str, dict[str, Any]] = {}
    for record in records:
        try:
            row = listed_row(entity_type, record, dialect, now, source)
        except (InvalidEvent, OverflowError, ValueError) as exc:
            log.warning("%s record %r skipped: %s", entity_type, str(record.get("id"))[:60], exc)
            continue
        rows[row["record_id"]] = row
    return [rows[key] for key in sorted(rows)]


def fetch_page(
    listing: RecordsListing, entity_type: EntityType, cursor: str | None, since: datetime | None, page_size: int, sleep: Callable[[float], None]
) -> Page:
    """The page after ``cursor``, riding out an API outage of a few minutes."""
    for delay in (*PAGE_RETRY_DELAYS, None):
        try:
            return listing.page(entity_type, cursor, page_size, since)
        except AiwynUnavailable as exc:
            if delay is None:
                raise SyncError(f"{entity_type.name}: Aiwyn's API kept failing: {exc}") from exc
            log.warning("%s: %s; the page is tried again in %.0fs", entity_type.name, exc, delay)
            sleep(delay)
    raise AssertionError("unreachable")


def step(
    engine: Engine,
    listing: RecordsListing,
    entity_type: EntityType,
    held: state.Pass,
    page_size: int,
    lease_seconds: float,
    on_rows: Callable[[Session, list[dict[str, Any]], set[tuple[str, str]]], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[state.Pass, Progress]:
    """Fetch and commit the next page of a pass; ``state.LeaseLost`` if another process took it.

    ``on_rows``: called in the page's transaction with the rows and those that changed the
    mirror (the custom handlers' hook, when a setting asks for it).
    """
    page = fetch_page(listing, entity_type, held.cursor, held.since, page_size, sleep)
    rows = build_rows(entity_type.name, page.records, engine.dialect.name, SOURCE_BACKFILL)
    with Session(engine) as session, session.begin():
        changed = upsert_rows(session, rows, returning=on_rows is not None)
        if on_rows is not None:
            on_rows(session, rows, changed)
        held = state.advance(session, held, page.next_cursor, len(page.records), page.total, lease_seconds)
    finished = page.next_cursor is None
    return held, Progress(entity_type.name, held.done, page.total if not finished else held.done, finished)


def run(
    engine: Engine,
    listing: RecordsListing,
    types: Sequence[EntityType],
    page_size: int,
    lease_seconds: float,
    since: datetime | None = None,
    progress: Callable[[Progress], None] = lambda _: None,
    on_rows: Callable[[Session, list[dict[str, Any]], set[tuple[str, str]]], None] | None = None,
) -> dict[str, int]:
    """Backfill these types here, one after the other (an operator's command); records per type."""
    done: dict[str, int] = {}
    for entity_type in types:
        held = state.begin(engine, entity_type.name, lease_seconds, since, steal=True)
        assert held is not None  # stealing always succeeds
        progress(Progress(entity_type.name, held.done, None, False))
        try:
            while True:
                held, report = step(engine, listing, entity_type, held, page_size, lease_seconds, on_rows)
                progress(report)
                if report.finished:
                    break
        except BaseException:
            try:
                state.release(engine, held)
            except Exception:  # the original error is the one to show
                log.debug("could not release the lease of %s", entity_type.name)
            raise
        done[entity_type.name] = held.done
    return done
