"""Wall-clock helpers: every timestamp the emulator shows is UTC ISO-8601 with a trailing Z."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    """The current time as an aware UTC datetime."""
    return datetime.now(UTC)


def iso_seconds(moment: datetime) -> str:
    """`2026-11-23T10:00:00Z`: the precision of the contract's resource timestamps."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_millis(moment: datetime) -> str:
    """`2026-11-23T10:00:00.123Z`: the precision the contract gives an event's `occurredAt`."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
