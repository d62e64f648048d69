"""The mirror (aiwyn_records) and the event ledger (aiwyn_events).

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "aiwyn_records",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("entity_type", sa.String(100), nullable=False),
        sa.Column("record_id", sa.String(200), nullable=False),
        sa.Column("system_ref", sa.JSON(), nullable=True),
        sa.Column("attributes", sa.JSON(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_id", sa.String(200), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_aiwyn_records"),
        sa.UniqueConstraint("entity_type", "record_id", name="uq_aiwyn_records_entity_type_record_id"),
    )
    op.create_table(
        "aiwyn_events",
        sa.Column("event_id", sa.String(200), nullable=False),
        sa.Column("subscription_id", sa.String(200), nullable=False),
        sa.Column("entity_type", sa.String(100), nullable=True),
        sa.Column("operation", sa.String(20), nullable=True),
        sa.Column("record_id", sa.String(200), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("event_id", name="pk_aiwyn_events"),
    )
    op.create_index("ix_aiwyn_events_entity_type", "aiwyn_events", ["entity_type"])
    op.create_index("ix_aiwyn_events_status", "aiwyn_events", ["status"])


def downgrade() -> None:
    op.drop_table("aiwyn_events")
    op.drop_table("aiwyn_records")
