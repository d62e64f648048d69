"""The audit log's table: one row per change, written by the ``audit-log`` handler.

Revision ID: audit_log_0001
Revises:
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "audit_log_0001"
down_revision = None  # the first of its own branch: it needs none of the service's tables
branch_labels = ("aiwyn_audit_log",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "aiwyn_audit_log",
        sa.Column("event_id", sa.String(200), primary_key=True),
        sa.Column("entity_type", sa.String(100), nullable=False),
        sa.Column("operation", sa.String(10), nullable=False),
        sa.Column("record_id", sa.String(200), nullable=False),
        sa.Column("version", sa.BigInteger),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("replay", sa.Boolean, nullable=False),
        sa.Column("change", sa.JSON, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("aiwyn_audit_log")
