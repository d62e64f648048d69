"""Typed views: ``aiwyn_views`` (their columns as made), JSONB and the indexes their filters use on
PostgreSQL, and the safe date and time casts the views call there.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# A value shaped like a date but not one (2026-02-30) must read as NULL, not fail the whole query.
_FUNCTIONS = """
CREATE OR REPLACE FUNCTION aiwyn_try_date(value text) RETURNS date LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN RETURN value::date; EXCEPTION WHEN others THEN RETURN NULL; END $$;
CREATE OR REPLACE FUNCTION aiwyn_try_timestamptz(value text) RETURNS timestamptz LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
  IF value ~ '(Z|z|[+-][0-9]{2}(:?[0-9]{2})?)$' THEN RETURN value::timestamptz; END IF;
  RETURN value::timestamp AT TIME ZONE 'UTC';  -- no zone given: UTC, whatever the session's TimeZone
EXCEPTION WHEN others THEN RETURN NULL; END $$;
"""


def upgrade() -> None:
    op.create_table(
        "aiwyn_views",
        sa.Column("view_name", sa.String(100), nullable=False),
        sa.Column("entity_type", sa.String(100), nullable=False),
        sa.Column("columns", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("view_name", name="pk_aiwyn_views"),
    )
    op.create_index("ix_aiwyn_records_entity_type_active", "aiwyn_records", ["entity_type", "active"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE aiwyn_records ALTER COLUMN attributes TYPE jsonb USING attributes::jsonb")
        op.execute("ALTER TABLE aiwyn_records ALTER COLUMN system_ref TYPE jsonb USING system_ref::jsonb")
        op.execute("CREATE INDEX ix_aiwyn_records_attributes ON aiwyn_records USING gin (attributes jsonb_path_ops)")
        op.execute(_FUNCTIONS)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS aiwyn_try_date(text); DROP FUNCTION IF EXISTS aiwyn_try_timestamptz(text)")
        op.execute("DROP INDEX IF EXISTS ix_aiwyn_records_attributes")
        op.execute("ALTER TABLE aiwyn_records ALTER COLUMN attributes TYPE json USING attributes::json")
        op.execute("ALTER TABLE aiwyn_records ALTER COLUMN system_ref TYPE json USING system_ref::json")
    op.drop_index("ix_aiwyn_records_entity_type_active", "aiwyn_records")
    op.drop_table("aiwyn_views")
