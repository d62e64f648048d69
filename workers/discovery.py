"""Finding the handlers of a worker: the built-in mirror, modules named in a setting, entry points.

A handler package declares, in its own ``pyproject.toml``::

    [project.entry-points."aiwyn_receiver.handlers"]
    crm = "crm_sync.handlers"

and every ``@handler`` of that module runs once the package is installed beside this service.
A module that fails to import stops the worker's start: running without a handler the operator
deployed would silently skip its events.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterable
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any

from config import Settings
from workers.handlers import SPEC_ATTRIBUTE, HandlerSpec
from workers.registry import ANY, HandlerRegistry, RegistryError, default_registry, unknown_entity_types

ENTRY_POINT_GROUP = "aiwyn_receiver.handlers"
log = logging.getLogger(__name__)


class HandlerLoadError(Exception):
    """A handler module or entry point could not be imported or registered; the message names it."""


def _register(registry: HandlerRegistry, target: Any, spec: HandlerSpec) -> None:
    registration = registry.register(target, spec.entity_types, spec.operations, name=spec.name, options=spec.options)
    log.info("handler %s registered for %s / %s", registration.name, sorted(registration.entity_types), sorted(registration.operations))


def _register_module(registry: HandlerRegistry, module: ModuleType) -> int:
    found = 0
    for value in vars(module).values():
        spec = getattr(value, SPEC_ATTRIBUTE, None)
        # Only what the module defines: a handler imported from elsewhere is that module's.
        if isinstance(spec, HandlerSpec) and getattr(value, "__module__", None) == module.__name__:
            _register(registry, value, spec)
            found += 1
    return found


def _load(registry: HandlerRegistry, source: str, load: Any) -> None:
    try:
        loaded = load()
    except Exception as exc:
        raise HandlerLoadError(f"handler {source} failed to import: {type(exc).__name__}: {exc}") from exc
    try:
        if isinstance(loaded, ModuleType):
            if not _register_module(registry, loaded):
                raise HandlerLoadError(f"handler {source}: module {loaded.__name__} defines no @handler")
        elif isinstance(getattr(loaded, SPEC_ATTRIBUTE, None), HandlerSpec):
            _register(registry, loaded, getattr(loaded, SPEC_ATTRIBUTE))
        else:
            raise HandlerLoadError(f"handler {source}: {loaded!r} is not a module or an @handler")
    except RegistryError as exc:
        raise HandlerLoadError(f"handler {source}: {exc}") from exc


def load_registry(settings: Settings, *, use_entry_points: bool = True) -> HandlerRegistry:
    """The mirror, then the setting's modules in order, then installed entry points by name."""
    registry = default_registry()
    for name in settings.handler_modules:
        _load(registry, f"module {name} (AIWYN_RECEIVER_HANDLER_MODULES)", lambda name=name: importlib.import_module(name))
    if use_entry_points:
        for point in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda p: p.name):
            _load(registry, f"entry point {point.name} = {point.value} ({ENTRY_POINT_GROUP})", point.load)
    if settings.on_give_up:
        registry.on_give_up = load_hook(settings.on_give_up, "AIWYN_RECEIVER_ON_GIVE_UP")
    return registry


def load_hook(target: str, source: str) -> Any:
    """The function named ``package.module:function``; one that cannot be found stops the start."""
    module_name, _, function_name = target.partition(":")
    try:
        hook = getattr(importlib.import_module(module_name), function_name)
    except Exception as exc:
        raise HandlerLoadError(f"{source}={target} failed to import: {type(exc).__name__}: {exc}") from exc
    if not callable(hook):
        raise HandlerLoadError(f"{source}={target} is not callable")
    return hook


def warn_unknown_entity_types(registry: HandlerRegistry, subscribed: Iterable[str], catalog: Callable[[], Iterable[str]]) -> dict[str, list[str]]:
    """Warn of handlers named for entity types that neither the subscriptions nor Aiwyn's catalog
    know (a typo never matches, and nothing else says so); Aiwyn is asked only when needed."""
    subscribed = set(subscribed)
    unknown = unknown_entity_types(registry, subscribed)
    if not unknown:
        return {}
    try:
        known = subscribed | set(catalog())
    except Exception as exc:  # a check, not a condition of the start: say why it is partial
        log.info("cannot read Aiwyn's entity types to check the handlers' (%s: %s)", type(exc).__name__, exc)
        if ANY in subscribed:
            return {}  # every type is subscribed and none can be listed: nothing to judge by
        known = subscribed
    unknown = unknown_entity_types(registry, known)
    for name, types in unknown.items():
        log.warning(
            "handler %s is registered for entity type(s) %s that neither Aiwyn's catalog nor the subscriptions"
            " (AIWYN_RECEIVER_SUBSCRIPTIONS_FILE) name: it never runs for them (a typo?)", name, ", ".join(types),
        )  # fmt: skip
    return unknown
