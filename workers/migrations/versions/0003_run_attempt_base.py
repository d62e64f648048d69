"""A replayed or redelivered run gets a fresh set of attempts: ``attempt_base``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("aiwyn_handler_runs") as table:
        table.add_column(sa.Column("attempt_base", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("aiwyn_handler_runs") as table:
        table.drop_column("attempt_base")
