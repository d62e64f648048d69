"""Reading Aiwyn's records and schemas into the mirror: backfill, reconcile (contract §5b, assumed) and the typed views.

Everything here writes through ``workers.mirror.upsert_rows``, the same ordering guard as the
events, so a page read before a change can never undo the change's delivery. Internal: users
run it through ``python -m workers backfill|reconcile|sync-status|views`` and the worker.
"""

from __future__ import annotations
