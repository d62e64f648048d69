"""Per-handler outcomes (aiwyn_handler_runs) and ordered handlers' cursors.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "aiwyn_handler_runs",
        sa.Column("event_id", sa.String(200), nullable=False),
        sa.Column("handler", sa.String(200), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("lease_token", sa.String(40), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("event_id", "handler", name="pk_aiwyn_handler_runs"),
    )
    op.create_index("ix_aiwyn_handler_runs_status", "aiwyn_handler_runs", ["status"])
    op.create_table(
        "aiwyn_handler_cursors",
        sa.Column("handler", sa.String(200), nullable=False),
        sa.Column("entity_type", sa.String(100), nullable=False),
        sa.Column("record_id", sa.String(200), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_id", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("handler", "entity_type", "record_id", name="pk_aiwyn_handler_cursors"),
    )


def downgrade() -> None:
    op.drop_table("aiwyn_handler_cursors")
    op.drop_table("aiwyn_handler_runs")
