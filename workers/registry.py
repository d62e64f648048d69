"""Which handlers run for which events, and each handler's run policy.

A handler is a callable ``handler(event, session)``, or an object with a ``handle(event,
session)`` method; ``"*"`` matches every entity type or operation. Each registration carries
its own ``HandlerOptions`` (timeout, attempts, retry delay, ordering, which errors to retry,
a give-up hook), whose unset fields default to the worker's settings.
The name is the handler's stable key in the ledger (``aiwyn_handler_runs.handler``): renaming
a handler orphans its history, so give long-lived handlers an explicit name.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy.orm import Session

from workers.events import OPERATIONS, Event
from workers.handlers import ANY, GiveUpHook, HandlerOptions

Handler = Callable[[Event, Session], Any]
BatchHandler = Callable[[Sequence[Event], Session], Any]


class RegistryError(ValueError):
    """A handler was registered with a bad name, entity type, operation or option."""


@dataclass(frozen=True)
class Registration:
    name: str
    handler: Handler
    entity_types: frozenset[str]
    operations: frozenset[str]
    options: HandlerOptions = HandlerOptions()
    # The built-in mirror applies a whole batch in one statement; custom handlers run per event.
    batch_handler: BatchHandler | None = None

    def matches(self, event: Event) -> bool:
        return (ANY in self.entity_types or event.entity_type in self.entity_types) and (
            ANY in self.operations or event.operation in self.operations
        )


def _names(value: str | Iterable[str]) -> frozenset[str]:
    return frozenset([value] if isinstance(value, str) else value)


def as_callable(handler: Any) -> Handler:
    """A function as it is; a class is instantiated once; an object with ``handle`` gives that method."""
    if isinstance(handler, type):
        try:
            handler = handler()
        except Exception as exc:  # the class's own error: reported at start-up, naming the class
            raise RegistryError(f"handler class {handler.__module__}.{handler.__qualname__} failed to start: {type(exc).__name__}: {exc}") from exc
    method = getattr(handler, "handle", None)
    if callable(method):
        return method
    if callable(handler):
        return handler
    raise RegistryError(f"{handler!r} is neither a function nor an object with a handle(event, session) method")


class HandlerRegistry:
    """The handlers of one worker process, in registration order (the mirror first)."""

    def __init__(self) -> None:
        self._registrations: dict[str, Registration] = {}
        self.on_give_up: GiveUpHook | None = None  # every handler's, beside its own (AIWYN_RECEIVER_ON_GIVE_UP)

    def register(
        self,
        handler: Any,
        entity_types: str | Iterable[str] = ANY,
        operations: str | Iterable[str] = ANY,
        *,
        name: str | None = None,
        options: HandlerOptions | None = None,
        batch_handler: BatchHandler | None = None,
        **option_fields: Any,
    ) -> Registration:
        """Add a handler; its name (default: module and qualified name) must be unique.

        ``options``, or its fields as keywords (``timeout=5, attempts=3``, see ``HandlerOptions``).
        """
        name = name or f"{getattr(handler, '__module__', '?')}.{getattr(handler, '__qualname__', type(handler).__qualname__)}"
        types, ops = _names(entity_types), _names(operations)
        if not types or not ops:
            raise RegistryError(f"handler {name}: give at least one entity type and one operation")
        unknown = ops - set(OPERATIONS) - {ANY}
        if unknown:
            raise RegistryError(f"handler {name}: unknown operations {sorted(unknown)}")
        if name in self._registrations:
            raise RegistryError(f"handler {name} is registered twice")
        try:
            options = replace(options or HandlerOptions(), **option_fields)
        except TypeError as exc:
            raise RegistryError(f"handler {name}: {exc}") from exc
        _check(name, options)
        registration = Registration(name, as_callable(handler), types, ops, options, batch_handler)
        self._registrations[name] = registration
        return registration

    def handlers_for(self, event: Event) -> list[Registration]:
        return [r for r in self._registrations.values() if r.matches(event)]

    def get(self, name: str) -> Registration | None:
        return self._registrations.get(name)

    def __iter__(self):  # noqa: ANN204 - an iterator of Registration
        return iter(self._registrations.values())

    def __len__(self) -> int:
        return len(self._registrations)


def _check(name: str, options: HandlerOptions) -> None:
    timeout, attempts, retry_delay = options.timeout, options.attempts, options.retry_delay
    if timeout is not None and timeout <= 0 or attempts is not None and attempts < 1 or retry_delay is not None and retry_delay < 0:
        raise RegistryError(f"handler {name}: timeout and attempts must be positive, retry_delay not negative")
    for kind in ("retry_on", "no_retry_on"):
        if not all(isinstance(error, type) and issubclass(error, BaseException) for error in getattr(options, kind)):
            raise RegistryError(f"handler {name}: {kind} takes exception classes")
    if options.on_give_up is not None and not callable(options.on_give_up):
        raise RegistryError(f"handler {name}: on_give_up is not callable")


def unknown_entity_types(registry: HandlerRegistry, known: Collection[str]) -> dict[str, list[str]]:
    """Handlers named for entity types outside ``known`` (a typo never matches): handler -> those types."""
    found = {}
    for registration in registry:
        unknown = sorted(registration.entity_types - set(known) - {ANY})
        if unknown:
            found[registration.name] = unknown
    return found


MIRROR = "mirror"


def default_registry() -> HandlerRegistry:
    """A registry holding the built-in mirror handler for every entity type and operation."""
    from workers.mirror import mirror_record, mirror_records

    registry = HandlerRegistry()
    registry.register(mirror_record, name=MIRROR, batch_handler=mirror_records)
    return registry
