"""Typed views per entity type (``aiwyn_client``, ...) over ``aiwyn_records``, from Aiwyn's schema API.

``plan`` compares the schemas with the views made before (``aiwyn_views`` keeps each view's
columns) and says what changes, without I/O; ``apply`` drops and creates the views that
changed, in one transaction. The SQL of a view is built by ``view_columns`` for the
database at hand, from the same definitions on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Dialect, Engine, select, text
from sqlalchemy.orm import Session

from workers.database import dialect_insert
from workers.models import ViewDefinition, metadata
from workers.schema_lock import schema_lock
from workers.sync.listing import EntityType, RecordsListing
from workers.sync.view_columns import FIELD_NAME, FIXED, KINDS, fixed_columns, snake, typed_column

log = logging.getLogger(__name__)
COLLISION_SUFFIX = "_field"


@dataclass(frozen=True)
class Column:
    name: str  # in the view (snake_case, suffixed on a collision)
    field: str  # in Aiwyn's schema and the record's attributes
    kind: str  # Aiwyn's field type


@dataclass(frozen=True)
class View:
    entity_type: str
    name: str
    columns: tuple[Column, ...]

    def describe(self) -> str:
        return json.dumps([[c.name, c.field, c.kind] for c in self.columns])


@dataclass(frozen=True)
class Change:
    view: View
    action: str  # create | replace | unchanged
    details: tuple[str, ...] = ()

    def line(self) -> str:
        what = {"create": f"create ({len(self.view.columns)} fields)", "replace": "replace: " + "; ".join(self.details), "unchanged": "unchanged"}
        return f"{self.view.name} ({self.view.entity_type}): {what[self.action]}"


def view_for(entity_type: str, fields: Iterable[dict[str, object]]) -> View:
    """The view of one type: its fields in schema order (``rank`` first), each name snake_case,
    ``_field`` appended where it would collide with a fixed column or an earlier field."""
    if not FIELD_NAME.match(entity_type):
        raise ValueError(f"entity type {entity_type!r} is not a plain name: no view")
    taken = set(FIXED)
    columns = []
    ordered = sorted(enumerate(fields), key=lambda item: (item[1].get("rank") if isinstance(item[1].get("rank"), int) else 1 << 30, item[0]))
    for _, field in ordered:
        name, kind = str(field.get("name")), str(field.get("type"))
        if not FIELD_NAME.match(name):
            log.warning("%s: field %r left out of the view: not a plain name", entity_type, name[:60])
            continue
        column = snake(name)
        while column in taken:
            column += COLLISION_SUFFIX
        taken.add(column)
        columns.append(Column(column, name, kind if kind in KINDS else "string"))
    return View(entity_type, f"aiwyn_{snake(entity_type)}", tuple(columns))


def plan(views: Iterable[View], before: dict[str, str]) -> list[Change]:
    """What to do with each view, given the column lists made before (by view name)."""
    changes = []
    for view in views:
        if view.name not in before:
            changes.append(Change(view, "create"))
            continue
        old = {name: (field, kind) for name, field, kind in json.loads(before[view.name])}
        new = {c.name: (c.field, c.kind) for c in view.columns}
        details = [f"field added {new[n][0]} ({new[n][1]})" for n in new if n not in old]
        details += [f"field removed {old[n][0]}" for n in old if n not in new]
        details += [f"type changed {new[n][0]}: {old[n][1]} -> {new[n][1]}" for n in new if n in old and old[n] != new[n]]
        if not details and list(old) != list(new):
            details.append("columns reordered")
        changes.append(Change(view, "replace", tuple(details)) if details else Change(view, "unchanged"))
    return changes


def create_sql(view: View, dialect: Dialect) -> str:
    """``CREATE VIEW`` for this database; names were checked to be plain (``FIELD_NAME``) before."""
    columns = fixed_columns(dialect.name) + [typed_column(c.field, c.kind, dialect.name).label(c.name) for c in view.columns]
    query = select(*columns).select_from(text("aiwyn_records")).where(text(f"aiwyn_records.entity_type = '{view.entity_type}'"))
    return f'CREATE VIEW "{view.name}" AS {query.compile(dialect=dialect, compile_kwargs={"literal_binds": True})}'


def refresh(engine: Engine, listing: RecordsListing, types: Iterable[EntityType], dry_run: bool = False) -> list[Change]:
    """Fetch each type's schema and create or replace the views whose fields changed (all, planned, when ``dry_run``)."""
    views = []
    for entity_type in types:
        try:
            views.append(view_for(entity_type.name, listing.schema(entity_type.name)))
        except ValueError as exc:
            log.warning("%s", exc)
    if dry_run:
        return plan(views, stored(engine))
    with schema_lock(engine):  # release on several hosts, or beside a worker's check: one at a time
        changes = plan(views, stored(engine))
        apply(engine, changes)
    return changes


def stored(engine: Engine) -> dict[str, str]:
    with Session(engine) as session:
        return dict(session.execute(select(ViewDefinition.view_name, ViewDefinition.columns)).all())


def apply(engine: Engine, changes: Iterable[Change]) -> list[Change]:
    """Create or replace the views that changed, in one transaction; the changes made."""
    made = [c for c in changes if c.action != "unchanged"]
    tables = set(metadata.tables)
    now = datetime.now(UTC)
    with Session(engine) as session, session.begin():
        for change in made:
            view = change.view
            if view.name in tables:
                raise ValueError(f"entity type {view.entity_type} would make a view named like the table {view.name}")
            connection = session.connection()
            connection.exec_driver_sql(f'DROP VIEW IF EXISTS "{view.name}"')
            connection.exec_driver_sql(create_sql(view, engine.dialect))
            row = {"view_name": view.name, "entity_type": view.entity_type, "columns": view.describe(), "updated_at": now}
            insert = dialect_insert(session, ViewDefinition.__table__).values(**row)
            session.execute(insert.on_conflict_do_update(index_elements=["view_name"], set_=row))
    for change in made:
        log.info("view %s", change.line())
    return made
