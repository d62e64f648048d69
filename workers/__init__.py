"""The worker side: RQ job entry points, the event model, handlers, the mirror and the ledger.

What a handler author imports from here (the rest can change freely)::

    from workers import DoNotRetry, Event, Retry, handler
    from workers import call_handler, make_event  # in the handler's tests
"""

from __future__ import annotations

from workers.events import Event, Record
from workers.handlers import ANY, CommitRefused, DoNotRetry, Failure, HandlerOptions, HandlerTimeout, Retry, handler
from workers.registry import HandlerRegistry
from workers.testing import call_handler, make_event

__all__ = [
    "ANY", "CommitRefused", "DoNotRetry", "Event", "Failure", "HandlerOptions", "HandlerRegistry", "HandlerTimeout", "Record", "Retry",
    "call_handler", "handler", "make_event",
]  # fmt: skip
