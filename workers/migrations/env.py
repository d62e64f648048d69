"""Alembic environment: the URL comes from the caller (``workers.migrate``), never from a file."""

from __future__ import annotations

from alembic import context

from workers.database import make_engine
from workers.models import metadata

config = context.config
engine = make_engine(config.get_main_option("sqlalchemy.url"))

with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
