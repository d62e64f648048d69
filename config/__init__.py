"""Settings, logging and the default subscriptions: the part every other part may import.

What users may import: ``load_settings``, ``Settings``, ``SettingsError``, ``from_env``. The
modules (settings, wire, job and metrics contracts, states, logs) are the project's own
agreements between its parts: internal, they may change between versions.
"""

from __future__ import annotations

import os

from config.settings import Settings, SettingsError, from_env


def load_settings() -> Settings:
    """The settings of this process, from its environment (the one place that reads it)."""
    return from_env(os.environ)


__all__ = ["Settings", "SettingsError", "from_env", "load_settings"]
