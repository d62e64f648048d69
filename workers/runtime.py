"""What a worker process builds once at start and every job of it shares."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from sqlalchemy import Engine

from config import Settings, load_settings
from workers.database import make_engine
from workers.registry import HandlerRegistry, default_registry


@dataclass(frozen=True)
class WorkerRuntime:
    settings: Settings
    engine: Engine
    registry: HandlerRegistry


_lock = threading.Lock()
_current: WorkerRuntime | None = None


def start_runtime(settings: Settings, registry: HandlerRegistry | None = None) -> WorkerRuntime:
    """Build this process's runtime (engine, handlers); called once by the worker command."""
    global _current
    with _lock:
        _current = WorkerRuntime(settings, make_engine(settings.database_url), registry or default_registry())
        return _current


def current_runtime() -> WorkerRuntime:
    """The process's runtime, built from the environment on first use under a plain ``rq worker``."""
    if _current is None:
        return start_runtime(load_settings())
    return _current
