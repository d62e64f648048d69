"""The tables this service owns: the mirror of Aiwyn's records and the ledger of events."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Index, Integer, MetaData, String, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Named constraints keep Alembic migrations identical on SQLite and PostgreSQL.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class Base(DeclarativeBase):
    metadata = metadata


class MirroredRecord(Base):
    """The newest known state of one Aiwyn record; DELETE keeps the row with ``active`` false."""

    __tablename__ = "aiwyn_records"
    __table_args__ = (UniqueConstraint("entity_type", "record_id"), Index("ix_aiwyn_records_entity_type_active", "entity_type", "active"))

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    entity_type: Mapped[str] = mapped_column(String(100))
    record_id: Mapped[str] = mapped_column(String(200))
    system_ref: Mapped[dict[str, Any] | None] = mapped_column(JSON().with_variant(JSONB(), "postgresql"))
    # JSONB on PostgreSQL: the typed views and their filters read fields without re-parsing text.
    attributes: Mapped[dict[str, Any] | None] = mapped_column(JSON().with_variant(JSONB(), "postgresql"))
    active: Mapped[bool] = mapped_column(Boolean)
    version: Mapped[int | None] = mapped_column(BigInteger)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    event_id: Mapped[str | None] = mapped_column(String(200))  # null when a backfill or reconcile wrote the row
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Who wrote the row last: an event, or a read of Aiwyn's records listing (``workers.sync``).
    source: Mapped[str] = mapped_column(String(20), default="event", server_default="event")
    # Why a row is inactive though no DELETE arrived: reconcile found Aiwyn no longer lists it.
    inactive_reason: Mapped[str | None] = mapped_column(Text)


class SyncState(Base):
    """Per entity type: the backfill's resumable cursor and lease, and when each sync last completed."""

    __tablename__ = "aiwyn_sync_state"

    entity_type: Mapped[str] = mapped_column(String(100), primary_key=True)
    backfill_cursor: Mapped[str | None] = mapped_column(Text)  # the listing's cursor after the last committed page
    backfill_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # the pass's updatedSince
    backfill_started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    backfill_completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # of a full pass
    backfill_records: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    backfill_estimate: Mapped[int | None] = mapped_column(BigInteger)
    # Who may fetch the next page: one process at a time per type, a dead one's lease runs out.
    lease_token: Mapped[str | None] = mapped_column(String(40))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    reconcile_completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    reconcile_summary: Mapped[str | None] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ViewDefinition(Base):
    """The columns of a typed view as last made (``workers.sync.views``): what a schema change is compared with."""

    __tablename__ = "aiwyn_views"

    view_name: Mapped[str] = mapped_column(String(100), primary_key=True)
    entity_type: Mapped[str] = mapped_column(String(100))
    columns: Mapped[str] = mapped_column(Text)  # JSON: [[column, field, kind], ...]
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class LedgerEntry(Base):
    """One row per event id: what arrived, and whether its handlers have run."""

    __tablename__ = "aiwyn_events"

    event_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    subscription_id: Mapped[str] = mapped_column(String(200))
    entity_type: Mapped[str | None] = mapped_column(String(100), index=True)
    operation: Mapped[str | None] = mapped_column(String(20))
    record_id: Mapped[str | None] = mapped_column(String(200))
    occurred_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    processed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class HandlerRun(Base):
    """One handler's work on one event: its outcome, attempts and last error (the failed list).

    ``lease_token``/``lease_until`` mark a run that a worker is executing: another worker may
    take it over only once the lease has passed (the first worker died or hung).
    """

    __tablename__ = "aiwyn_handler_runs"

    event_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    handler: Mapped[str] = mapped_column(String(200), primary_key=True)
    status: Mapped[str] = mapped_column(String(20), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # all of them, for the record
    # Attempts made before the latest replay or redelivery: the policy counts the ones after.
    attempt_base: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    lease_token: Mapped[str | None] = mapped_column(String(40))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class HandlerCursor(Base):
    """The newest change of one record an ordered handler has seen; older ones are skipped."""

    __tablename__ = "aiwyn_handler_cursors"

    handler: Mapped[str] = mapped_column(String(200), primary_key=True)
    entity_type: Mapped[str] = mapped_column(String(100), primary_key=True)
    record_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    version: Mapped[int | None] = mapped_column(BigInteger)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    event_id: Mapped[str] = mapped_column(String(200))
