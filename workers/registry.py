"""Which handlers run for which events: registered for entity types and operations.

A handler is any callable ``handler(event, session)``; ``"*"`` matches every entity type or
operation. Handlers run in registration order, the built-in mirror first. (Per-handler
isolation, retries and replay will hang off ``Registration``; its name is its stable key.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from workers.events import OPERATIONS, Event

Handler = Callable[[Event, Session], Any]
ANY = "*"


class RegistryError(ValueError):
    """A handler was registered with a bad name, entity type or operation."""


@dataclass(frozen=True)
class Registration:
    name: str
    handler: Handler
    entity_types: frozenset[str]
    operations: frozenset[str]

    def matches(self, event: Event) -> bool:
        return (ANY in self.entity_types or event.entity_type in self.entity_types) and (
            ANY in self.operations or event.operation in self.operations
        )


class HandlerRegistry:
    """The handlers of one worker process."""

    def __init__(self) -> None:
        self._registrations: list[Registration] = []

    def register(
        self,
        handler: Handler,
        entity_types: Iterable[str] = (ANY,),
        operations: Iterable[str] = (ANY,),
        *,
        name: str | None = None,
    ) -> Registration:
        """Add a handler; its name (default: module and function) must be unique."""
        name = name or f"{getattr(handler, '__module__', '?')}.{getattr(handler, '__qualname__', repr(handler))}"
        types, ops = frozenset(entity_types), frozenset(operations)
        if not types or not ops:
            raise RegistryError(f"handler {name}: give at least one entity type and one operation")
        unknown = ops - set(OPERATIONS) - {ANY}
        if unknown:
            raise RegistryError(f"handler {name}: unknown operations {sorted(unknown)}")
        if any(r.name == name for r in self._registrations):
            raise RegistryError(f"handler {name} is registered twice")
        registration = Registration(name, handler, types, ops)
        self._registrations.append(registration)
        return registration

    def handlers_for(self, event: Event) -> list[Registration]:
        return [r for r in self._registrations if r.matches(event)]

    def __len__(self) -> int:
        return len(self._registrations)


def default_registry() -> HandlerRegistry:
    """A registry holding the built-in mirror handler for every entity type and operation."""
    from workers.mirror import mirror_record

    registry = HandlerRegistry()
    registry.register(mirror_record, name="mirror")
    return registry
