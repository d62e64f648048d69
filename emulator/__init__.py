"""A local Aiwyn: the contract's auth, subscriptions and records, with signed at-least-once deliveries.

Run it with `python -m emulator`; tests build it with `create_app` or `EmulatorServer`.
It imports nothing from the rest of the project.
"""

from __future__ import annotations

from .app import create_app
from .server import EmulatorServer
from .settings import Settings, SettingsError

__all__ = ["EmulatorServer", "Settings", "SettingsError", "create_app"]
