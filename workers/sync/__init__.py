"""Reading Aiwyn's records (contract §5b, assumed) into the mirror: backfill and reconcile.

Everything here writes through ``workers.mirror.upsert_rows``, the same ordering guard as the
events, so a page read before a change can never undo the change's delivery.
"""

from __future__ import annotations
