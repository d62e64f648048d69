"""Backfill and reconcile: ``aiwyn_sync_state``, and rows of ``aiwyn_records`` written without an event.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("aiwyn_records") as table:
        table.alter_column("event_id", existing_type=sa.String(200), nullable=True)
        table.add_column(sa.Column("source", sa.String(20), nullable=False, server_default="event"))
        table.add_column(sa.Column("inactive_reason", sa.Text(), nullable=True))
    op.create_table(
        "aiwyn_sync_state",
        sa.Column("entity_type", sa.String(100), nullable=False),
        sa.Column("backfill_cursor", sa.Text(), nullable=True),
        sa.Column("backfill_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("backfill_started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("backfill_completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("backfill_records", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("backfill_estimate", sa.BigInteger(), nullable=True),
        sa.Column("lease_token", sa.String(40), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reconcile_completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reconcile_summary", sa.String(200), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("entity_type", name="pk_aiwyn_sync_state"),
    )


def downgrade() -> None:
    op.drop_table("aiwyn_sync_state")
    with op.batch_alter_table("aiwyn_records") as table:
        table.drop_column("inactive_reason")
        table.drop_column("source")
        table.alter_column("event_id", existing_type=sa.String(200), nullable=False)
