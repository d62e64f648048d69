"""Per-type indexes of records ordered by (updatedAt, id), and the opaque cursor of the listing (contract §5b).

Each type keeps two sorted lists of keys `(updated_at_us, record_id)`: every record, and the
active ones only. A change moves the record's key (remove the old, insert the new), so a page
is a bisect plus a slice: O(log n + page), never a sort of the whole set.
"""

from __future__ import annotations

import base64
import binascii
from bisect import bisect_left, bisect_right, insort
from datetime import UTC, datetime, timedelta

Key = tuple[int, str]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MICROSECOND = timedelta(microseconds=1)
_CURSOR_VERSION = "c1"


def to_micros(moment: datetime) -> int:
    """Whole microseconds since the epoch: exact, unlike float timestamps."""
    return (moment - _EPOCH) // _ONE_MICROSECOND


def from_micros(micros: int) -> datetime:
    """The aware UTC datetime of `to_micros`'s value."""
    return _EPOCH + timedelta(microseconds=micros)


class CursorError(ValueError):
    """A cursor this emulator did not produce."""


def encode_cursor(key: Key) -> str:
    """Opaque, URL-safe text for the position just after `key`."""
    raw = f"{_CURSOR_VERSION}:{key[0]}:{key[1]}".encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> Key:
    """The key `encode_cursor` was given; `CursorError` for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise CursorError("cursor is not one this API returned") from None
    version, _, rest = raw.partition(":")
    micros, _, record_id = rest.partition(":")
    if version != _CURSOR_VERSION or not micros.isdigit() or not record_id:
        raise CursorError("cursor is not one this API returned")
    return int(micros), record_id


class RecordIndex:
    """Every record's listing key, by type, in two orders kept sorted on each change."""

    def __init__(self) -> None:
        self._all: dict[str, list[Key]] = {}
        self._active: dict[str, list[Key]] = {}
        self._indexed: dict[str, tuple[str, Key, bool]] = {}  # record id -> (type, key, active)

    def clear(self) -> None:
        """Forget every key."""
        self._all.clear()
        self._active.clear()
        self._indexed.clear()

    def put(self, record_id: str, entity_type: str, updated_at: datetime, active: bool) -> None:
        """Index the record as it is now, replacing wherever it was before."""
        self.remove(record_id)
        key = (to_micros(updated_at), record_id)
        _insert(self._all.setdefault(entity_type, []), key)
        if active:
            _insert(self._active.setdefault(entity_type, []), key)
        self._indexed[record_id] = (entity_type, key, active)

    def remove(self, record_id: str) -> None:
        """Drop the record's key, if it has one."""
        entry = self._indexed.pop(record_id, None)
        if entry is None:
            return
        entity_type, key, active = entry
        _delete(self._all[entity_type], key)
        if active:
            _delete(self._active[entity_type], key)

    def page(
        self, entity_type: str, *, after: Key | None, since_micros: int | None, limit: int, include_inactive: bool
    ) -> tuple[list[str], Key | None, int]:
        """Ids of at most `limit` records after `after` (and updated at or after `since_micros`); the next
        cursor's key, or None when nothing follows; and how many records the whole listing holds now."""
        keys = (self._all if include_inactive else self._active).get(entity_type, [])
        first = bisect_left(keys, (since_micros, "")) if since_micros is not None else 0
        start = max(first, bisect_right(keys, after)) if after is not None else first
        chunk = keys[start : start + limit]
        more = start + limit < len(keys)
        return [record_id for _, record_id in chunk], (chunk[-1] if more and chunk else None), len(keys) - first


def _insert(keys: list[Key], key: Key) -> None:
    if not keys or keys[-1] < key:
        keys.append(key)  # the usual case: a change gets the newest stamp
    else:
        insort(keys, key)


def _delete(keys: list[Key], key: Key) -> None:
    position = bisect_left(keys, key)
    if position < len(keys) and keys[position] == key:
        del keys[position]
