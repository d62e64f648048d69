"""Aiwyn's records listing (contract §5b, assumed) as the sync reads it: types, pages, and the
one clear error for an API that lacks it.

Errors::

    SyncError                 a backfill or reconcile cannot go on; the message says why
     └── ListingUnavailable   the API answers the listing with 404 or another shape
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiwyn_api.client import AiwynAPIError, AiwynClient

MAX_PAGE_SIZE = 500  # the contract's largest ``limit``
_ASSUMED = "Backfill and reconcile need it (contract §5b, assumed); the webhook path is not affected."


class SyncError(Exception):
    """A backfill or reconcile cannot go on; the message is the one line to show."""


class ListingUnavailable(SyncError):
    """The live API does not offer the records listing this service assumes."""


@dataclass(frozen=True)
class EntityType:
    name: str
    records_url: str


@dataclass(frozen=True)
class Page:
    records: list[dict[str, Any]]
    next_cursor: str | None
    total: int | None  # only where the API says how many the listing holds


class RecordsListing:
    """Reads types and pages of records through the shared API client."""

    def __init__(self, client: AiwynClient) -> None:
        self._client = client

    def types(self, wanted: Iterable[str]) -> list[EntityType]:
        """The subscribed types (``*`` = every type Aiwyn lists, custom ones too) with their listing URLs."""
        wanted = list(dict.fromkeys(wanted))
        try:
            offered = self._client.record_types()
        except AiwynAPIError as exc:
            raise SyncError(f"cannot read Aiwyn's entity types: {exc}") from exc
        urls = {str(t["name"]): str(t.get("recordsUrl") or self._client.wire.records_path(str(t["name"]))) for t in offered}
        names = list(urls) if "*" in wanted else [name for name in wanted if name in urls]
        return [EntityType(name, urls[name]) for name in names]

    def schema(self, entity_type: str) -> list[dict[str, Any]]:
        """The type's fields from ``/records/schema/{type}`` (published in §5)."""
        try:
            return self._client.record_schema(entity_type)
        except AiwynAPIError as exc:
            raise SyncError(f"cannot read the schema of {entity_type}: {exc}") from exc

    def page(self, entity_type: EntityType, cursor: str | None, limit: int, since: datetime | None = None) -> Page:
        """One page of the type's records, inactive ones included, after ``cursor``."""
        params = {"limit": str(min(limit, MAX_PAGE_SIZE)), "includeInactive": "true"}
        if cursor:
            params["cursor"] = cursor
        if since is not None:
            params["updatedSince"] = since.isoformat().replace("+00:00", "Z")
        url = entity_type.records_url
        try:
            data = self._client.list_records(url, params)
        except AiwynAPIError as exc:
            if exc.status in (404, 405, 501):
                raise ListingUnavailable(f"Aiwyn's records listing is not available: GET {url} answered {exc.status} {exc.code}. {_ASSUMED}") from exc
            raise
        return _page_of(data, url)


def _page_of(data: Any, url: str) -> Page:
    records = data.get("records") if isinstance(data, dict) else None
    cursor = data.get("nextCursor") if isinstance(data, dict) else None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records) or not isinstance(cursor, (str, type(None))):
        seen = sorted(data)[:8] if isinstance(data, dict) else type(data).__name__
        raise ListingUnavailable(
            f"Aiwyn's records listing answered in another shape: GET {url} gave data {seen}, not 'records' (a list) and 'nextCursor'. {_ASSUMED}"
        )
    total = data.get("total")
    return Page(records, cursor or None, total if isinstance(total, int) and not isinstance(total, bool) else None)
