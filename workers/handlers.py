"""The API for writing a handler: ``@handler(...)`` and ``DoNotRetry``.

    from workers.handlers import DoNotRetry, handler

    @handler("client", ["CREATE", "UPDATE"], timeout=10)
    def notify_crm(event, session):
        ...

The decorator only labels the function (or class); the worker registers every labelled
object of each module named by ``AIWYN_RECEIVER_HANDLER_MODULES`` or by the entry point
group ``aiwyn_receiver.handlers``. So the decorated function stays a plain function that a
test can call directly.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from workers.events import Event, Record
from workers.registry import ANY
from workers.timeouts import HandlerTimeout

__all__ = ["ANY", "DoNotRetry", "Event", "HandlerSpec", "HandlerTimeout", "Record", "handler"]

SPEC_ATTRIBUTE = "__aiwyn_handler__"
T = TypeVar("T")


class DoNotRetry(Exception):
    """Raised by a handler when retrying cannot help: the run goes to the failed list at once."""


@dataclass(frozen=True)
class HandlerSpec:
    entity_types: str | tuple[str, ...]
    operations: str | tuple[str, ...]
    name: str | None
    timeout: float | None
    attempts: int | None
    retry_delay: float | None
    ordered: bool


def handler(
    entity_types: str | Iterable[str] = ANY,
    operations: str | Iterable[str] = ANY,
    *,
    name: str | None = None,
    timeout: float | None = None,
    attempts: int | None = None,
    retry_delay: float | None = None,
    ordered: bool = False,
) -> Any:
    """Label a function ``f(event, session)`` or a class with ``handle(event, session)`` as a handler.

    ``timeout`` (seconds), ``attempts`` and ``retry_delay`` (first back-off, seconds) override
    the worker's settings for this handler. ``ordered=True`` makes the handler see the changes
    of one record only in increasing order (older ones arriving late are skipped).
    """

    def label(target: T) -> T:
        setattr(
            target,
            SPEC_ATTRIBUTE,
            HandlerSpec(
                entity_types if isinstance(entity_types, str) else tuple(entity_types),
                operations if isinstance(operations, str) else tuple(operations),
                name,
                timeout,
                attempts,
                retry_delay,
                ordered,
            ),
        )
        return target

    return label
