"""The worker side: RQ job entry points, the event model, handlers, the mirror and the ledger.

What users may import: ``Event`` and ``Record`` (what a handler receives), ``HandlerRegistry``.
"""

from __future__ import annotations

from workers.events import Event, Record
from workers.registry import HandlerRegistry

__all__ = ["Event", "HandlerRegistry", "Record"]
