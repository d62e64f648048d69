"""A schema field of Aiwyn's as a typed column over ``aiwyn_records.attributes``, on SQLite and PostgreSQL.

One function builds every column for both databases, so the views cannot drift apart. A value
that reads as the field's type (``"120"`` in an integer field) casts; one that does not
(``"many"``) reads as NULL, never as an error for the whole query: each cast is guarded by a
shape test, and on PostgreSQL a date or time that has the shape but not the calendar (Feb 30)
goes through ``aiwyn_try_date`` / ``aiwyn_try_timestamptz`` (migration 0005), which answer NULL.
"""

from __future__ import annotations

import re

from sqlalchemy import BigInteger, Boolean, Date, DateTime, Numeric, Text
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.expression import literal_column
from sqlalchemy.types import TypeEngine

# Aiwyn's field types (contract §5) by the SQL type of their column.
KINDS: dict[str, TypeEngine] = {
    "string": Text(), "text": Text(), "email": Text(), "phone": Text(), "reference": Text(),
    "integer": BigInteger(), "decimal": Numeric(), "boolean": Boolean(), "date": Date(), "datetime": DateTime(timezone=True),
}  # fmt: skip
FIELD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,62}$")  # anything else is left out of the view, with a warning
_TRUE, _FALSE = "('true', 't', '1', 'yes')", "('false', 'f', '0', 'no')"


def snake(name: str) -> str:
    """``employeeCount`` -> ``employee_count``, ``taxID`` -> ``tax_id``, ``address2`` -> ``address2``."""
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def _postgresql(field: str, kind: str) -> str:
    # JSON numbers take a fast path by jsonb_typeof (no regular expression per row): an equality
    # filter on an integer field of 100,000 records stays in tens of milliseconds.
    j, v = f"(aiwyn_records.attributes -> '{field}')", f"(aiwyn_records.attributes ->> '{field}')"
    t = f"btrim({v})"
    if kind == "integer":
        return (
            f"CASE jsonb_typeof({j}) WHEN 'number' THEN CASE WHEN translate({v}, '0123456789-', '') = '' AND length({v}) <= 18 THEN {v}::bigint END"
            rf" WHEN 'string' THEN CASE WHEN {t} ~ '^-?[0-9]{{1,18}}$' THEN {t}::bigint END END"
        )
    if kind == "decimal":
        return (
            f"CASE jsonb_typeof({j}) WHEN 'number' THEN {v}::numeric"
            rf" WHEN 'string' THEN CASE WHEN {t} ~ '^-?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]{{1,4}})?$' THEN {t}::numeric END END"
        )
    if kind == "boolean":
        return f"CASE WHEN lower({t}) IN {_TRUE} THEN true WHEN lower({t}) IN {_FALSE} THEN false END"
    if kind == "date":
        return rf"CASE WHEN {t} ~ '^[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}$' THEN aiwyn_try_date({t}) END"
    if kind == "datetime":
        return rf"CASE WHEN {t} ~ '^[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}[T ][0-9]{{2}}:[0-9]{{2}}' THEN aiwyn_try_timestamptz({t}) END"
    return v


def _sqlite(field: str, kind: str) -> str:
    j, kind_of = f"json_extract(aiwyn_records.attributes, '$.{field}')", f"json_type(aiwyn_records.attributes, '$.{field}')"
    t = f"trim({j})"
    if kind == "integer":
        digits = f"(ltrim({t}, '-') <> '' AND ltrim({t}, '-') NOT GLOB '*[^0-9]*' AND instr(substr({t}, 2), '-') = 0 AND length({t}) <= 19)"
        return f"CASE WHEN {kind_of} = 'integer' THEN {j} WHEN {kind_of} = 'text' AND {digits} THEN CAST({t} AS INTEGER) END"
    if kind == "decimal":
        number = (
            f"({t} GLOB '*[0-9]*' AND ltrim({t}, '-') NOT GLOB '*[^0-9.]*' AND instr(substr({t}, 2), '-') = 0"
            f" AND length({t}) - length(replace({t}, '.', '')) <= 1)"
        )
        return f"CASE WHEN {kind_of} IN ('integer', 'real') THEN {j} WHEN {kind_of} = 'text' AND {number} THEN CAST({t} AS REAL) END"
    if kind == "boolean":
        return (
            f"CASE WHEN {kind_of} = 'true' THEN 1 WHEN {kind_of} = 'false' THEN 0 WHEN {kind_of} = 'integer' AND {j} IN (0, 1) THEN {j}"
            f" WHEN {kind_of} = 'text' AND lower({t}) IN {_TRUE} THEN 1 WHEN {kind_of} = 'text' AND lower({t}) IN {_FALSE} THEN 0 END"
        )
    if kind == "date":
        # With a modifier, date() rolls Feb 30 over to March: no longer equal, so NULL.
        return f"CASE WHEN {kind_of} = 'text' AND date({t}, '+0 days') = {t} THEN {t} END"
    if kind == "datetime":
        return f"CASE WHEN {kind_of} = 'text' AND {t} GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9][T ][0-9][0-9]:[0-9][0-9]*' THEN strftime('%Y-%m-%dT%H:%M:%fZ', {t}) END"
    return f"CASE {kind_of} WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' ELSE CAST({j} AS TEXT) END"


def typed_column(field: str, kind: str, dialect: str) -> ColumnElement:
    """The attribute ``field`` (a checked name: it is written into the SQL) cast to its kind's type."""
    if not FIELD_NAME.match(field):
        raise ValueError(f"field name {field!r} is not a plain name")
    build = _postgresql if dialect == "postgresql" else _sqlite
    return literal_column(build(field, kind), KINDS.get(kind, Text()))


def fixed_columns(dialect: str) -> list[ColumnElement]:
    """The columns every view starts with, in order."""
    ref = (
        ("(aiwyn_records.system_ref ->> 'system')", "(aiwyn_records.system_ref ->> 'id')")
        if dialect == "postgresql"
        else ("json_extract(aiwyn_records.system_ref, '$.system')", "json_extract(aiwyn_records.system_ref, '$.id')")
    )
    return [
        literal_column("aiwyn_records.record_id", Text()).label("record_id"),
        literal_column("aiwyn_records.active", Boolean()).label("active"),
        literal_column("aiwyn_records.version", BigInteger()).label("version"),
        literal_column(ref[0], Text()).label("system_ref_system"),
        literal_column(ref[1], Text()).label("system_ref_id"),
        literal_column("aiwyn_records.occurred_at", DateTime(timezone=True)).label("occurred_at"),
        literal_column("aiwyn_records.updated_at", DateTime(timezone=True)).label("updated_at"),
    ]


FIXED = ("record_id", "active", "version", "system_ref_system", "system_ref_id", "occurred_at", "updated_at")
